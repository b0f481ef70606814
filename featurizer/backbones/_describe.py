"""Describing a backbone without its weights (layers, preprocessing), and loading one described.

Layers and preprocessing come from the registry, from a Hugging Face folder's files, or from a
skeleton of a zoo model built on PyTorch's meta device (no weights, no download).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from featurizer.backbones._backbones import (
    Backbone,
    build_backbone,
    describe_image_model,
    hub_clip_configs,
    hub_text_config,
    skeleton_layer_shapes,
)
from featurizer.backbones._clip import clip_description, open_clip_description
from featurizer.base import InputError, MissingPackageError
from featurizer.inputs import read_json, text_preprocessing
from featurizer.spec import TEXT, BackboneConfig, Layer, WeightsRef, get_config, resolve_layers, resolve_weights


def load_backbone(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """The backbone ``config`` names with ``weights``, frozen, on the CPU (an image-text tower
    described first: its preprocessing comes from the model's files)."""
    return build_backbone(describe(config, weights) if config.image_text else config, weights)


def describe(config: BackboneConfig, weights: WeightsRef) -> BackboneConfig:
    """``config`` with its layers and preprocessing filled in, loading no weights."""
    if config.layers and config.preprocessing is not None:
        return config
    if config.image_text:
        layers, prep = _describe_clip(config, weights)
    elif config.modality == TEXT:
        layers, prep = _describe_text(config, weights)
    else:
        layers, prep = describe_image_model(config, weights)
    return replace(config, layers=config.layers or layers, preprocessing=config.preprocessing or prep)


def _describe_clip(config: BackboneConfig, weights: WeightsRef) -> tuple[tuple[Layer, ...], dict]:
    """Layers and preprocessing of the tower ``config.modality`` names, from the model's config files."""
    if config.library == "open_clip":
        _require("open_clip", "open_clip_torch")
        return open_clip_description(config.arch, config.modality)
    if weights.kind == "folder":
        folder = Path(weights.location)
        names = ("config.json", "preprocessor_config.json", "tokenizer_config.json")
        files = [read_json(folder / name) for name in names]
        tokenizer_id = text_preprocessing(folder)["tokenizer"]
    else:
        files = hub_clip_configs(weights)
        tokenizer_id = weights.location
    layers, prep = clip_description(*files, config.modality)
    return layers, ({"tokenizer": tokenizer_id, **prep} if config.modality == TEXT else prep)


def _require(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(f"this model needs {package}: pip install 'featurizer[clip]' (or {package})")


def _describe_text(config: BackboneConfig, weights: WeightsRef) -> tuple[tuple[Layer, ...], dict]:
    if weights.kind == "folder":
        model_config = read_json(Path(weights.location) / "config.json")
        prep = text_preprocessing(weights.location)
    else:
        model_config, prep = hub_text_config(weights)
    depth, width = model_config.get("num_hidden_layers"), model_config.get("hidden_size")
    if not isinstance(depth, int):
        raise InputError(f"{config.name}: its config.json has no num_hidden_layers (not a BERT-family encoder?)")
    layers = (Layer("embeddings", width), *(Layer(f"layer.{i}", width) for i in range(depth)))
    return layers, prep


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
        shapes = {k: "x".join(map(str, v)) for k, v in skeleton_layer_shapes(config, weights_ref).items()}
    default = resolve_layers(config.layers, None, config.default_layer or "-1")[0]
    return [
        LayerRow(i, layer.name, shapes.get(layer.name, "?"), layer.dim, layer.name == default)
        for i, layer in enumerate(config.layers)
    ]
