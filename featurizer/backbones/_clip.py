"""Image-text models (CLIP): one name, two towers, read from the model's files without loading weights.

A Hugging Face CLIP model (``hf/openai/clip-vit-base-patch32``, or a local folder ``hf/./my-clip``
whose ``config.json`` says ``"model_type": "clip"``) is one backbone with two towers: images go
through the vision tower, texts through the text tower. Each tower has the same layer names:
``embeddings``, ``layer.0`` ... (token states), ``pooled`` (the tower's pooled output) and
``embeds`` (its projection into the space the two towers share; the default layer). Vectors of
``embeds`` from the image tower and from the text tower can be compared: that is what zero-shot
classification of images from class names needs. The spec's modality says which tower made them.

Models of the ``open_clip`` package (``open_clip/ViT-B-32/laion2b_s34b_b79k``: architecture, then
its pretrained tag; or ``open_clip/ARCH`` with ``--weights`` a local checkpoint) offer the shared
space only: their one layer is ``embeds``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from featurizer.backbones._base import (
    Backbone,
    Description,
    Family,
    from_hf,
    load_checkpoint,
    nn,
    quiet_transformers,
    register_family,
    require,
    torch,
)
from featurizer.backbones._text import TextBackbone
from featurizer.base import InputError, MissingPackageError
from featurizer.inputs import read_json, text_preprocessing
from featurizer.spec import (
    IMAGE,
    SHARED_LAYER,
    TEXT,
    BackboneConfig,
    Layer,
    WeightsRef,
    not_cached,
    offline,
    register_name_rule,
)

# OpenAI CLIP's pixel statistics: the default when a folder has no preprocessor_config.json
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes in Hugging Face image processor configs


def clip_description(model_config: dict, processor: dict, tokenizer: dict, modality: str):
    """(layers, preprocessing) of one tower, from the model's ``config.json`` and its image processor
    and tokenizer configs (dicts; empty when absent)."""
    tower = model_config.get("vision_config" if modality == IMAGE else "text_config") or {}
    depth, width = tower.get("num_hidden_layers"), tower.get("hidden_size")
    shared = model_config.get("projection_dim")
    if not all(isinstance(x, int) for x in (depth, width, shared)):
        raise InputError("a CLIP config.json needs num_hidden_layers and hidden_size in each tower, and projection_dim")
    layers = (
        Layer("embeddings", width),
        *(Layer(f"layer.{i}", width) for i in range(depth)),
        Layer("pooled", width),
        Layer(SHARED_LAYER, shared),
    )
    if modality == IMAGE:
        size = int(tower.get("image_size", 224))
        crop = processor.get("crop_size", size)
        crop = int(crop.get("height", size) if isinstance(crop, dict) else crop)
        short = processor.get("size", size)
        short = int(short.get("shortest_edge", crop) if isinstance(short, dict) else short)
        prep = {
            "input_size": [3, crop, crop],
            "resize": short,
            "interpolation": _RESAMPLE.get(processor.get("resample", 3), "bicubic"),
            "mean": list(processor.get("image_mean", CLIP_MEAN)),
            "std": list(processor.get("image_std", CLIP_STD)),
        }
    else:
        limits = [tower.get("max_position_embeddings", 77), tokenizer.get("model_max_length", 10**9)]
        prep = {"max_length": int(min(limits)), "lowercase": True}
    return layers, prep


def open_clip_parts(arch: str) -> tuple[str, str | None]:
    """(architecture, pretrained tag or None) of an ``open_clip/`` name."""
    name, _, tag = arch.partition("/")
    return name, tag or None


def open_clip_description(arch: str, modality: str):
    """(layers, preprocessing) of a tower of an open_clip model, from the package's model config."""
    import open_clip

    name, tag = open_clip_parts(arch)
    config = open_clip.get_model_config(name)
    if config is None:
        raise InputError(f"open_clip has no model {name!r} (see open_clip.list_models())")
    layers = (Layer(SHARED_LAYER, int(config["embed_dim"])),)
    if modality == IMAGE:
        size = config["vision_cfg"].get("image_size", 224)
        size = int(size[0] if isinstance(size, list | tuple) else size)
        pretrained = open_clip.get_pretrained_cfg(name, tag) if tag else {}
        prep = {
            "input_size": [3, size, size],
            "resize": size,
            "interpolation": "bicubic",
            "mean": list(pretrained.get("mean") or CLIP_MEAN),
            "std": list(pretrained.get("std") or CLIP_STD),
        }
    else:
        length = int(config["text_cfg"].get("context_length", 77))
        prep = {"tokenizer": f"open_clip:{name}", "max_length": length, "lowercase": True}
    return layers, prep


# --- Naming -------------------------------------------------------------------------------

CLIP_MODEL_TYPES = ("clip",)


def is_clip(arch: str) -> bool:
    """Whether the ``hf/`` model ``arch`` is a CLIP model: a folder's config says so, a hub id names it."""
    config = Path(arch).expanduser() / "config.json"
    if config.parent.is_dir():
        return (json.loads(config.read_text()) if config.is_file() else {}).get("model_type") in CLIP_MODEL_TYPES
    return "clip" in arch.lower()


def _hf_clip_config(name: str, arch: str, modality: str | None) -> BackboneConfig | None:
    if not is_clip(arch):
        return None  # a text encoder: the registry's own hf/ rule
    return BackboneConfig(name, modality or IMAGE, "hf", arch, default_layer=SHARED_LAYER, extra={"towers": "clip"})


def _open_clip_config(name: str, arch: str, modality: str | None) -> BackboneConfig:
    """open_clip/ARCH/PRETRAINED: an image-text model of the open_clip package."""
    towers = {"towers": "clip"}
    return BackboneConfig(name, modality or IMAGE, "open_clip", arch, default_layer=SHARED_LAYER, extra=towers)


# --- Towers -------------------------------------------------------------------------------


class ClipImageBackbone(Backbone):
    """The image tower of a CLIP model (``featurizer._clip``): its encoder layers' token states, the
    pooled class token, and ``embeds``, its projection into the space shared with texts."""

    def _layer_names(self) -> list[str]:
        depth = self.model.config.vision_config.num_hidden_layers
        return ["embeddings", *(f"layer.{i}" for i in range(depth)), "pooled", "embeds"]

    def _forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        out = self.model.vision_model(pixel_values=x, output_hidden_states=True, return_dict=True)
        return _clip_outputs(self._layer_names(), out, self.model.visual_projection, layers)


class ClipTextBackbone(TextBackbone):
    """The text tower of a CLIP model: as ``ClipImageBackbone``, for texts."""

    def _layer_names(self) -> list[str]:
        depth = self.model.config.text_config.num_hidden_layers
        return ["embeddings", *(f"layer.{i}" for i in range(depth)), "pooled", "embeds"]

    def _forward(self, batch: dict[str, torch.Tensor], layers: Sequence[str]) -> dict[str, torch.Tensor]:
        out = self.model.text_model(**batch, output_hidden_states=True, return_dict=True)
        return _clip_outputs(self._layer_names(), out, self.model.text_projection, layers)


class OpenClipImageBackbone(Backbone):
    """The image tower of an open_clip model: its embedding in the space shared with texts."""

    def _layer_names(self) -> list[str]:
        return ["embeds"]

    def _forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"embeds": self.model.encode_image(x)}


class OpenClipTextBackbone(TextBackbone):
    """The text tower of an open_clip model, with the package's tokenizer (ids padded with 0)."""

    @property
    def pad_id(self) -> int:
        return 0

    def _layer_names(self) -> list[str]:
        return ["embeds"]

    def tokenize_counting(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        rows = self.tokenizer(list(texts)).tolist()  # context length, truncated with the end token kept
        ids = [row[: max(i for i, t in enumerate(row) if t) + 1] for row in rows]
        return ids, sum(1 for row in rows if row[-1] != 0)

    def _forward(self, batch: dict[str, torch.Tensor], layers: Sequence[str]) -> dict[str, torch.Tensor]:
        ids = batch["input_ids"]
        context = self.preprocessing["max_length"]
        return {"embeds": self.model.encode_text(torch.nn.functional.pad(ids, (0, context - ids.shape[1])))}


def _clip_outputs(names: list[str], out, projection: nn.Module, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    found = dict(zip(names[:-2], out.hidden_states))
    found["pooled"] = out.pooler_output
    if "embeds" in layers:
        found["embeds"] = projection(out.pooler_output)
    return {name: found[name] for name in layers}


# --- Building and describing --------------------------------------------------------------


def build_clip(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """The tower of a CLIP model that ``config.modality`` names (the whole model is loaded: the towers
    share one checkpoint)."""
    prep = config.preprocessing  # described by load_backbone
    if weights.kind == "skeleton":
        transformers = quiet_transformers()
        model = transformers.CLIPModel(transformers.AutoConfig.from_pretrained(weights.location.removeprefix("hf:")))
        return ClipImageBackbone(config, weights, model, prep)
    if config.modality == "text":
        tokenizer, model = from_hf(weights, "AutoTokenizer", "CLIPModel")
        return ClipTextBackbone(config, weights, model, prep, tokenizer)
    (model,) = from_hf(weights, "CLIPModel")
    return ClipImageBackbone(config, weights, model, prep)


def build_open_clip(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """The tower ``config.modality`` names of an open_clip model: its pretrained tag (downloaded by
    open_clip, from its cache offline) or a local checkpoint."""
    open_clip = require("open_clip", "open_clip_torch")
    prep = config.preprocessing  # described by load_backbone
    name, tag = open_clip_parts(config.arch)
    if weights.kind == "pretrained":
        offline()
    logging.disable(logging.ERROR)  # open_clip logs a failed download to the root logger; the error below says it
    try:
        model = open_clip.create_model(name, pretrained=tag if weights.kind == "pretrained" else None, device="cpu")
    except (OSError, RuntimeError) as err:
        raise not_cached(f"the open_clip weights {name}/{tag}", err) from None
    finally:
        logging.disable(logging.NOTSET)
    if weights.kind == "file":
        load_checkpoint(model, weights.location)  # never unpickles code
    if config.modality == "text":
        return OpenClipTextBackbone(config, weights, model, prep, open_clip.get_tokenizer(name))
    return OpenClipImageBackbone(config, weights, model, prep)


def hub_clip_configs(weights: WeightsRef) -> tuple[dict, dict, dict]:
    """(model config, image processor config, tokenizer config) of a hub CLIP model, without its weights."""
    source = weights.location.removeprefix("hf:")
    (model_config,) = from_hf(weights, "AutoConfig")
    transformers = quiet_transformers()
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source).to_dict()
        tokenizer = {"model_max_length": transformers.AutoTokenizer.from_pretrained(source).model_max_length}
    except OSError as err:
        raise not_cached(f"Hugging Face model {source!r}", err) from None
    return model_config.to_dict(), processor, tokenizer


def describe_clip(config: BackboneConfig, weights: WeightsRef) -> Description:
    """Layers and preprocessing of the tower ``config.modality`` names, from the model's config files."""
    if config.library == "open_clip":
        require_installed("open_clip", "open_clip_torch")
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


def require_installed(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(f"this model needs {package}: pip install 'featurizer[clip]' (or {package})")


register_name_rule("hf", _hf_clip_config)
register_name_rule("open_clip", _open_clip_config)
register_family(Family("clip", lambda c: c.image_text and c.library == "hf", build_clip, describe_clip))
register_family(Family("open_clip", lambda c: c.library == "open_clip", build_open_clip, describe_clip))
