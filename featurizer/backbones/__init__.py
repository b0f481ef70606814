"""Frozen networks: building and describing each family, runtimes (torch, ONNX), the resolver."""

from featurizer.backbones._backbones import _rename_by_order, read_checkpoint
from featurizer.backbones._describe import describe_layers, load_backbone
from featurizer.backbones._onnx import load_onnx
from featurizer.backbones._resolve import (
    FeatureOptions,
    Resolved,
    RunOptions,
    last_distinct_layers,
    layer_dims,
    resolve,
    resolve_spec,
    weights_for_spec,
    with_default_layers,
)
from featurizer.backbones._runtime import is_out_of_memory, resolve_device

__all__ = [
    "FeatureOptions",
    "Resolved",
    "RunOptions",
    "_rename_by_order",
    "describe_layers",
    "is_out_of_memory",
    "last_distinct_layers",
    "layer_dims",
    "load_backbone",
    "load_onnx",
    "read_checkpoint",
    "resolve",
    "resolve_device",
    "resolve_spec",
    "weights_for_spec",
    "with_default_layers",
]
