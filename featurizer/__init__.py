"""featurizer: frozen pretrained backbones turned into cached feature vectors."""

from featurizer._errors import (
    FeaturizerError,
    InputError,
    ItemError,
    MissingPackageError,
    UnknownLayerError,
    UnknownModelError,
)
from featurizer._extract import Extractor, FeaturizeReport, featurize
from featurizer._featurefile import FeatureFile, FeatureFileWriter
from featurizer._inputs import Inputs, ReadOptions, read_inputs
from featurizer._registry import DEFAULT_MODELS, BackboneConfig, Layer, default_model, get_config, list_models, register
from featurizer._resolve import FeatureOptions, RunOptions, resolve_spec
from featurizer._spec import FeatureSpec
from featurizer._version import __version__ as __version__


def __getattr__(name: str):
    # Featurizer pulls in scikit-learn (about a second): imported on first use, so that the CLI's
    # featurize path, and a fully cached run above all, starts fast.
    if name == "Featurizer":
        from featurizer._transformer import Featurizer

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
