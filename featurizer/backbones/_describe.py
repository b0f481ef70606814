"""Describing a backbone without its weights (layers, preprocessing), and loading one described.

Layers and preprocessing come from the registry, or from the backbone's family (a Hugging Face
folder's files, or a skeleton of a zoo model on PyTorch's meta device: no weights, no download).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from featurizer.backbones._base import Backbone, build_backbone, family_of, skeleton
from featurizer.spec import TEXT, BackboneConfig, WeightsRef, get_config, resolve_layers, resolve_weights


def load_backbone(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """The backbone ``config`` names with ``weights``, frozen, on the CPU (an image-text tower
    described first: its preprocessing comes from the model's files)."""
    return build_backbone(describe(config, weights) if config.image_text else config, weights)


def describe(config: BackboneConfig, weights: WeightsRef) -> BackboneConfig:
    """``config`` with its layers and preprocessing filled in, loading no weights."""
    if config.layers and config.preprocessing is not None:
        return config
    layers, prep = family_of(config).describe(config, weights)
    return replace(config, layers=config.layers or layers, preprocessing=config.preprocessing or prep)


@dataclass(frozen=True)
class LayerRow:
    """One line of ``xfer layers``."""

    index: int
    name: str
    shape: str  # of one item's raw output, e.g. 1280x7x7, or tokens x 384
    dim: int | None  # of the pooled vector
    default: bool


def describe_layers(model: str, weights: str | os.PathLike | None = None) -> list[LayerRow]:
    """The layers of ``model`` with their raw output shapes and pooled sizes, from the architecture alone."""
    config = get_config(model)
    weights_ref = resolve_weights(config, weights)
    config = describe(config, weights_ref)
    if config.modality == TEXT or config.image_text:
        vectors = ("pooled", "embeds") if config.image_text else ()
        shapes = {n.name: str(n.dim) if n.name in vectors else f"tokens x {n.dim}" for n in config.layers}
    else:
        shapes = {k: "x".join(map(str, v)) for k, v in skeleton(config, weights_ref).layer_shapes().items()}
    default = resolve_layers(config.layers, None, config.default_layer or "-1")[0]
    return [
        LayerRow(i, layer.name, shapes.get(layer.name, "?"), layer.dim, layer.name == default)
        for i, layer in enumerate(config.layers)
    ]
