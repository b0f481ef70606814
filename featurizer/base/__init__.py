"""Below every room: the errors a user can act on, the version, heavy libraries imported on first use."""

from featurizer.base._errors import (
    FeaturizerError,
    InputError,
    ItemError,
    MissingPackageError,
    UnknownLayerError,
    UnknownModelError,
)
from featurizer.base._interrupt import catching_interrupts, interrupted, raise_if_interrupted
from featurizer.base._lazy import lazy_module
from featurizer.base._version import __version__

__all__ = [
    "FeaturizerError",
    "InputError",
    "ItemError",
    "MissingPackageError",
    "UnknownLayerError",
    "UnknownModelError",
    "__version__",
    "catching_interrupts",
    "interrupted",
    "lazy_module",
    "raise_if_interrupted",
]
