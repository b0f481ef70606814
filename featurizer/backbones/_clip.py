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

from featurizer.base import InputError
from featurizer.spec import IMAGE, SHARED_LAYER, Layer

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
