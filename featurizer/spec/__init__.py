"""What made a vector: the registry of backbones, the feature spec, compute modes and weights."""

from featurizer.spec._modes import MODES, ComputeMode, auto_device_type, check_device_name, check_spec_mode, validate
from featurizer.spec._network import not_cached, offline
from featurizer.spec._registry import (
    DEFAULT_MODELS,
    IMAGE,
    SHARED_LAYER,
    TEXT,
    TUNED_FILE,
    BackboneConfig,
    Layer,
    default_model,
    get_config,
    list_models,
    model_table,
    register,
)
from featurizer.spec._spec import FeatureSpec, check_compatible, resolve_layers, resolve_pooling, spec_differences
from featurizer.spec._weights import WeightsRef, default_weights, resolve_weights

__all__ = [
    "DEFAULT_MODELS",
    "IMAGE",
    "MODES",
    "SHARED_LAYER",
    "TEXT",
    "TUNED_FILE",
    "BackboneConfig",
    "ComputeMode",
    "FeatureSpec",
    "Layer",
    "WeightsRef",
    "auto_device_type",
    "check_compatible",
    "check_device_name",
    "check_spec_mode",
    "default_model",
    "default_weights",
    "get_config",
    "list_models",
    "model_table",
    "not_cached",
    "offline",
    "register",
    "resolve_layers",
    "resolve_pooling",
    "resolve_weights",
    "spec_differences",
    "validate",
]
