"""featurizer: frozen pretrained backbones turned into cached feature vectors."""

from featurizer._errors import (
    FeaturizerError,
    InputError,
    ItemError,
    MissingPackageError,
    UnknownLayerError,
    UnknownModelError,
)
from featurizer._extract import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, Extractor, FeaturizeReport, featurize
from featurizer._featurefile import FeatureFile, FeatureFileWriter
from featurizer._inputs import Inputs, read_inputs
from featurizer._registry import BackboneConfig, Layer, get_config, list_models, register
from featurizer._spec import FeatureSpec, LayerSpec
from featurizer._transformer import Featurizer

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_TEXT_MODEL",
    "BackboneConfig",
    "Extractor",
    "FeatureFile",
    "FeatureFileWriter",
    "FeatureSpec",
    "FeaturizeReport",
    "Featurizer",
    "FeaturizerError",
    "InputError",
    "Inputs",
    "ItemError",
    "Layer",
    "LayerSpec",
    "MissingPackageError",
    "UnknownLayerError",
    "UnknownModelError",
    "featurize",
    "get_config",
    "list_models",
    "read_inputs",
    "register",
]
