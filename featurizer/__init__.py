"""featurizer: frozen pretrained backbones turned into cached feature vectors."""

from featurizer._moved import MOVED, alias_moved_modules
from featurizer.backbones import FeatureOptions, RunOptions, resolve_spec
from featurizer.base import (
    FeaturizerError,
    InputError,
    ItemError,
    MissingPackageError,
    UnknownLayerError,
    UnknownModelError,
)
from featurizer.base import __version__ as __version__
from featurizer.cache import FeatureFile, FeatureFileWriter
from featurizer.engine import Extractor, FeaturizeReport, featurize
from featurizer.inputs import Inputs, ReadOptions, read_inputs
from featurizer.spec import (
    DEFAULT_MODELS,
    BackboneConfig,
    FeatureSpec,
    Layer,
    default_model,
    get_config,
    list_models,
    register,
)

alias_moved_modules(MOVED)  # models saved before the rooms name their classes by the old paths


def __getattr__(name: str):
    # Featurizer pulls in scikit-learn (about a second): imported on first use, so that the CLI's
    # featurize path, and a fully cached run above all, starts fast.
    if name == "Featurizer":
        from featurizer.transformer import Featurizer

        return Featurizer
    raise AttributeError(f"module 'featurizer' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODELS",
    "BackboneConfig",
    "Extractor",
    "FeatureFile",
    "FeatureFileWriter",
    "FeatureOptions",
    "FeatureSpec",
    "FeaturizeReport",
    "Featurizer",
    "FeaturizerError",
    "InputError",
    "Inputs",
    "ItemError",
    "Layer",
    "MissingPackageError",
    "ReadOptions",
    "RunOptions",
    "UnknownLayerError",
    "UnknownModelError",
    "default_model",
    "featurize",
    "get_config",
    "list_models",
    "read_inputs",
    "register",
    "resolve_spec",
]
