"""Frozen networks: building and describing each family, runtimes (torch, ONNX), the resolver."""

# each family module registers itself (its builder, its describer, the names it claims) when imported
from featurizer.backbones import _clip, _static, _text, _timm, _torchvision  # noqa: F401
from featurizer.backbones._base import (
    Backbone,
    Family,
    family_of,
    read_checkpoint,
    register_family,
    rename_by_order,
)
from featurizer.backbones._clip import (
    ClipImageBackbone,
    ClipTextBackbone,
    OpenClipImageBackbone,
    OpenClipTextBackbone,
)
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
from featurizer.backbones._static import StaticBackbone, load_static
from featurizer.backbones._text import TextBackbone
from featurizer.backbones._timm import TimmBackbone
from featurizer.backbones._torchvision import TorchvisionBackbone

__all__ = [
    "Backbone",
    "ClipImageBackbone",
    "ClipTextBackbone",
    "Family",
    "FeatureOptions",
    "OpenClipImageBackbone",
    "OpenClipTextBackbone",
    "Resolved",
    "RunOptions",
    "StaticBackbone",
    "TextBackbone",
    "TimmBackbone",
    "TorchvisionBackbone",
    "describe_layers",
    "family_of",
    "is_out_of_memory",
    "last_distinct_layers",
    "layer_dims",
    "load_backbone",
    "load_onnx",
    "load_static",
    "read_checkpoint",
    "register_family",
    "rename_by_order",
    "resolve",
    "resolve_device",
    "resolve_spec",
    "weights_for_spec",
    "with_default_layers",
]
