"""Frozen backbones behind one interface: build from a registry config, list layers, forward.

Every backbone answers ``forward(batch, layers) -> {layer: raw output}`` in one pass. timm
models use timm's own ``forward_intermediates`` / ``forward_head(pre_logits=True)`` contract;
torchvision models, which have no such contract, are tapped with forward hooks; Hugging Face
encoders return their hidden states.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featurizer.backbones._clip import open_clip_parts
from featurizer.backbones._pooling import pool
from featurizer.backbones._runtime import (
    autocast,
    conv_norm_pairs,
    fold_batch_norms,
    kernel_flags,
    quantize,
    set_threads,
)
from featurizer.base import FeaturizerError, InputError, MissingPackageError, UnknownModelError, lazy_module
from featurizer.inputs import image_sizes, text_preprocessing
from featurizer.spec import BackboneConfig, ComputeMode, Layer, WeightsRef, not_cached, offline, validate

torch = lazy_module("torch")  # imported when a network is built: a cached run never needs it
nn = lazy_module("torch.nn")
log = logging.getLogger(__name__)


class Backbone:
    """A frozen network in eval mode with named layers and the preprocessing it was trained with."""

    modality = "image"

    def __init__(self, config: BackboneConfig, weights: WeightsRef, model: nn.Module, preprocessing: dict):
        self.config = config
        self.weights = weights
        self.model = model.eval().requires_grad_(False)
        self.preprocessing = preprocessing
        self.device = torch.device("cpu")
        self.dtype = torch.float32  # of the weights, and so of float inputs
        self.mode: ComputeMode | None = None  # set by ``to``; None: plain fp32
        self.layers: tuple[Layer, ...] = config.layers or self._probe_layers()

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def to(self, device: torch.device | str, mode: ComputeMode | None = None) -> Backbone:
        """Move to ``device`` and run in ``mode`` (weight dtype, autocast, quantisation).

        CNNs get their batch norms folded and use channels_last (faster convolutions on CPU and GPU).
        ``bf16`` casts the weights (10-15% faster than autocasting fp32 weights on this project's CPU,
        same accuracy); ``fp16`` keeps fp32 weights and autocasts, which guards against fp16 overflow;
        ``int8`` quantises the Linear layers.
        """

        set_threads()
        device = torch.device(device)
        mode = mode or validate("fp32", "torch", self.modality, device.type)
        self.device, self.mode = device, mode
        if self.modality == "image":
            self._fold_batch_norms()
        self.dtype = getattr(torch, mode.weight_dtype)
        self.model.to(self.device, self.dtype)
        if self.modality == "image":
            self.model.to(memory_format=torch.channels_last)
        if mode.quantize:
            self.model = quantize(self.model, self.device)
        return self

    def pooled(self, batch, layers: Sequence[str], pooling: Sequence[str]) -> dict[str, np.ndarray]:
        """One float32 vector per item for each of ``layers``, pooled as asked, from one pass over ``batch``."""

        with torch.inference_mode(), autocast(self.device, self.mode), kernel_flags(self.device, self.mode):
            on_device = self.on_device(batch)
            mask = on_device.get("attention_mask") if isinstance(on_device, dict) else None
            raw = self.forward(on_device, layers)
            return {name: pool(raw[name], how, mask).cpu().numpy() for name, how in zip(layers, pooling)}

    def on_device(self, batch):
        """``batch`` (tensors or numpy arrays) on this backbone's device, float tensors in the weights' dtype.

        Image batches come out channels_last, the layout the convolutions were set to. On a GPU,
        arrays are copied through pinned memory without blocking.
        """
        if isinstance(batch, dict):
            return {k: self.on_device(v) for k, v in batch.items()}
        on_gpu = self.device.type == "cuda"
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
            if on_gpu:
                batch = batch.pin_memory()
        dtype = self.dtype if batch.is_floating_point() else None
        batch = batch.to(self.device, dtype, non_blocking=on_gpu)
        if self.modality == "image" and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _fold_batch_norms(self) -> None:
        """Fold batch norms into the convolutions before them, if every layer's output stays the same."""

        if not conv_norm_pairs(self.model):
            return
        original, folded = self.model, copy.deepcopy(self.model)
        n = fold_batch_norms(folded)
        x = torch.randn(self.example_batch().shape, generator=torch.Generator().manual_seed(0))
        x = torch.cat([x, x.flip(-1)])
        with torch.inference_mode():
            before = self._forward(x, self.layer_names())
            self.model = folded
            after = self._forward(x, self.layer_names())
        worst = max(float((after[k] - v).abs().max() / v.abs().max().clamp_min(1e-6)) for k, v in before.items())
        if worst > 1e-4:
            log.warning("%s: folded batch norms changed outputs by %.1e; running unfolded", self.config.name, worst)
            self.model = original
        else:
            log.debug("%s: folded %d batch norms into convolutions (outputs within %.1e)", self.config.name, n, worst)

    def forward(self, batch, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Raw outputs of ``layers`` for one batch of inputs, all from one pass through the network."""
        return self._forward(batch, layers)

    def _forward(self, batch, layers: Sequence[str]) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def example_batch(self):
        """A one-item batch of the right shape, for probing layer shapes."""
        _, crop = image_sizes(self.preprocessing)
        return torch.zeros(1, 3, crop, crop)

    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Raw output shape of every layer for one item (without the batch dimension)."""
        with torch.inference_mode():
            out = self._forward(self.on_device(self.example_batch()), self.layer_names())
        return {name: tuple(t.shape[1:]) for name, t in out.items()}

    def _probe_layers(self) -> tuple[Layer, ...]:
        self.layers = tuple(Layer(n) for n in self._layer_names())
        with torch.inference_mode():
            batch = self.example_batch()
            out = self._forward(batch, self.layer_names())
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        return tuple(
            Layer(n, int(pool(out[n], "mean" if out[n].ndim == 3 else "avg", mask).shape[1]))
            for n in self.layer_names()
        )

    def _layer_names(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class TimmBackbone(Backbone):
    """A timm image model: its feature stages, the final feature map and the pre-logits vector."""

    def _stage_names(self) -> list[str]:
        return [info["module"] for info in self.model.feature_info]

    def _layer_names(self) -> list[str]:
        stages = self._stage_names() if hasattr(self.model, "forward_intermediates") else []
        return [*stages, "features", "pre_logits"]

    def _forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        stages = self._stage_names()
        wanted = sorted(stages.index(name) for name in layers if name in stages)
        need_final = any(name in ("features", "pre_logits") for name in layers)
        out: dict[str, torch.Tensor] = {}
        final = None
        if wanted:
            result = self.model.forward_intermediates(
                x, indices=wanted, intermediates_only=not need_final, stop_early=not need_final
            )
            final, maps = result if need_final else (None, result)
            out.update({stages[i]: t for i, t in zip(wanted, maps)})
        elif need_final:
            final = self.model.forward_features(x)
        if "features" in layers:
            out["features"] = final
        if "pre_logits" in layers:
            out["pre_logits"] = self.model.forward_head(final, pre_logits=True)
        return out


class TorchvisionBackbone(Backbone):
    """A torchvision classifier tapped with hooks: its top-level blocks and the classifier's input."""

    def __init__(self, config: BackboneConfig, weights: WeightsRef, model: nn.Module, preprocessing: dict):
        self._captured: dict[str, torch.Tensor] = {}
        self._wanted: set[str] = set()
        head_name, self._blocks = _torchvision_blocks(model, config.name)
        for name, module in self._blocks.items():
            module.register_forward_hook(self._capture_output(name))
        head = model.get_submodule(head_name)
        head.register_forward_pre_hook(lambda _m, args: self._keep("pre_logits", args[0].flatten(1)))
        super().__init__(config, weights, model, preprocessing)

    def _layer_names(self) -> list[str]:
        return [*self._blocks, "pre_logits"]

    def _capture_output(self, name: str):
        return lambda _m, _args, output: self._keep(name, output)

    def _keep(self, name: str, value: torch.Tensor) -> None:
        if name in self._wanted:
            self._captured[name] = value

    def _forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        self._wanted, self._captured = set(layers), {}
        try:
            self.model(x)
            return {name: self._captured[name] for name in layers}
        finally:
            self._wanted, self._captured = set(), {}


def _torchvision_blocks(model: nn.Module, name: str) -> tuple[str, dict[str, nn.Module]]:
    """The classifier's name and the blocks before it (children with weights; ``features`` split)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise FeaturizerError(f"{name} has no linear classifier to take pre-logits from")
    head = linears[-1]
    blocks: dict[str, nn.Module] = {}
    for child_name, child in model.named_children():
        if head == child_name or head.startswith(child_name + "."):
            break
        split = child_name == "features" and isinstance(child, nn.Sequential)
        for sub, module in child.named_children() if split else [("", child)]:
            if any(True for _ in module.parameters()):
                blocks[f"{child_name}.{sub}" if sub else child_name] = module
    return head, blocks


class TextBackbone(Backbone):
    """A Hugging Face encoder: the embedding output and every transformer layer's token states."""

    modality = "text"

    def __init__(self, config, weights, model, preprocessing, tokenizer):
        self.tokenizer = tokenizer
        super().__init__(config, weights, model, preprocessing)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated at the model's maximum length, unpadded."""
        return self.tokenize_counting(texts)[0]

    def tokenize_counting(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Token ids per text and the number of texts that were longer than the maximum length."""
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.preprocessing["max_length"],
            add_special_tokens=True,
            return_overflowing_tokens=True,
        )
        rows = encoded.get("overflow_to_sample_mapping")
        if rows is None:  # slow tokenizers: no mapping, one row per text
            return encoded["input_ids"], 0
        first: dict[int, list[int]] = {}
        for ids, sample in zip(encoded["input_ids"], rows):
            first.setdefault(int(sample), ids)
        truncated = int((np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(texts)) > 1).sum())
        return [first[i] for i in range(len(texts))], truncated

    def _layer_names(self) -> list[str]:
        return ["embeddings", *(f"layer.{i}" for i in range(self.model.config.num_hidden_layers))]

    def example_batch(self) -> dict[str, torch.Tensor]:
        ids = torch.tensor([self.tokenize(["an example"])[0]])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def _forward(self, batch: dict[str, torch.Tensor], layers: Sequence[str]) -> dict[str, torch.Tensor]:
        out = self.model(**batch, output_hidden_states=True, return_dict=True)
        names = self._layer_names()
        return {name: out.hidden_states[names.index(name)] for name in layers}


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


# --- Building -----------------------------------------------------------------------------


def build_backbone(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """Build the backbone of ``config`` with ``weights``, frozen and in eval mode, on the CPU."""
    return _builder(config)(config, weights)


def _builder(config: BackboneConfig):
    if config.library == "open_clip":
        return _build_open_clip
    return _build_clip if config.image_text else _BUILDERS[config.library]


def describe_image_model(config: BackboneConfig, weights: WeightsRef) -> tuple[tuple[Layer, ...], dict]:
    """Layers (with pooled sizes) and preprocessing of a zoo image model, from a weightless skeleton."""
    backbone = _skeleton(config, weights)
    return backbone.layers, backbone.preprocessing


def skeleton_layer_shapes(config: BackboneConfig, weights: WeightsRef) -> dict[str, tuple[int, ...]]:
    """Raw output shape of every layer for one item, from a weightless skeleton."""
    return _skeleton(config, weights).layer_shapes()


def _skeleton(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """The backbone's architecture on PyTorch's meta device: no weights downloaded or allocated; its
    layers are probed by a forward pass of shapes only."""
    with torch.device("meta"):
        backbone = _builder(config)(config, WeightsRef("skeleton", weights.location))
    backbone.device = torch.device("meta")
    return backbone


def hub_text_config(weights: WeightsRef) -> tuple[dict, dict]:
    """(model config, preprocessing) of a Hugging Face hub encoder, from its config and tokenizer files only."""
    source = weights.location.removeprefix("hf:")
    tokenizer, model_config = _from_hf(weights, "AutoTokenizer", "AutoConfig")
    return model_config.to_dict(), _hub_text_preprocessing(source, tokenizer, model_config)


def _hub_text_preprocessing(source: str, tokenizer, model_config) -> dict:
    limit = min(tokenizer.model_max_length, getattr(model_config, "max_position_embeddings", 512))
    return {
        "tokenizer": f"hf:{source}",
        "max_length": int(limit),
        "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
    }


def _build_timm(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    pretrained = weights.kind == "pretrained"
    if pretrained:
        offline()  # decided once, before timm reads it; offline, timm reads only its local cache
    timm = _import("timm", "timm")
    try:
        model = timm.create_model(config.arch, pretrained=pretrained)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise UnknownModelError(f"timm has no model {config.arch!r} (see timm.list_models())") from None
        raise
    except OSError as err:
        raise not_cached(f"the weights of timm/{config.arch}", err) from None
    if weights.kind == "file":
        _load_checkpoint(model, weights.location, by_order=config.extra.get("checkpoint_format") is not None)
    prep = config.preprocessing or _plain(timm.data.resolve_model_data_config(model))
    return TimmBackbone(config, weights, model, prep)


def _build_torchvision(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    from torchvision import models

    try:
        enum = models.get_model_weights(config.arch)
    except (ValueError, KeyError):
        raise UnknownModelError(
            f"torchvision has no model {config.arch!r} (see torchvision.models.list_models())"
        ) from None
    pretrained = weights.kind == "pretrained"
    if pretrained and offline() and not _torch_hub_has(enum.DEFAULT.url):
        raise not_cached(f"the weights of torchvision/{config.arch}")
    try:
        model = models.get_model(config.arch, weights=enum.DEFAULT if pretrained else None)
    except OSError as err:  # urllib errors are OSErrors
        raise not_cached(f"the weights of torchvision/{config.arch}", err) from None
    if weights.kind == "file":
        _load_checkpoint(model, weights.location)
    tf = enum.DEFAULT.transforms()
    prep = config.preprocessing or {
        "input_size": [3, tf.crop_size[0], tf.crop_size[0]],
        "resize": tf.resize_size[0],
        "interpolation": tf.interpolation.value,
        "mean": list(tf.mean),
        "std": list(tf.std),
        "weights": str(enum.DEFAULT),
    }
    return TorchvisionBackbone(config, weights, model, prep)


def _build_text(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    source = weights.location.removeprefix("hf:")
    tokenizer, model = _from_hf(weights, "AutoTokenizer", "AutoModel")
    if weights.kind == "folder":
        prep = text_preprocessing(source)
    else:
        prep = _hub_text_preprocessing(source, tokenizer, model.config)
    return TextBackbone(config, weights, model, prep, tokenizer)


def _build_clip(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """The tower of a CLIP model that ``config.modality`` names (the whole model is loaded: the towers
    share one checkpoint)."""
    prep = config.preprocessing  # described by load_backbone
    if weights.kind == "skeleton":
        transformers = _quiet_transformers()
        model = transformers.CLIPModel(transformers.AutoConfig.from_pretrained(weights.location.removeprefix("hf:")))
        return ClipImageBackbone(config, weights, model, prep)
    if config.modality == "text":
        tokenizer, model = _from_hf(weights, "AutoTokenizer", "CLIPModel")
        return ClipTextBackbone(config, weights, model, prep, tokenizer)
    (model,) = _from_hf(weights, "CLIPModel")
    return ClipImageBackbone(config, weights, model, prep)


def _build_open_clip(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """The tower ``config.modality`` names of an open_clip model: its pretrained tag (downloaded by
    open_clip, from its cache offline) or a local checkpoint."""
    open_clip = _import("open_clip", "open_clip_torch")
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
        _load_checkpoint(model, weights.location)  # never unpickles code
    if config.modality == "text":
        return OpenClipTextBackbone(config, weights, model, prep, open_clip.get_tokenizer(name))
    return OpenClipImageBackbone(config, weights, model, prep)


def hub_clip_configs(weights: WeightsRef) -> tuple[dict, dict, dict]:
    """(model config, image processor config, tokenizer config) of a hub CLIP model, without its weights."""
    source = weights.location.removeprefix("hf:")
    (model_config,) = _from_hf(weights, "AutoConfig")
    transformers = _quiet_transformers()
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source).to_dict()
        tokenizer = {"model_max_length": transformers.AutoTokenizer.from_pretrained(source).model_max_length}
    except OSError as err:
        raise not_cached(f"Hugging Face model {source!r}", err) from None
    return model_config.to_dict(), processor, tokenizer


_BUILDERS = {"timm": _build_timm, "torchvision": _build_torchvision, "hf": _build_text}


def _from_hf(weights: WeightsRef, *classes: str) -> list:
    """``transformers.<class>.from_pretrained`` for each class, never running remote code; a hub model
    that cannot be had offline fails at once with one line."""
    pretrained = weights.kind == "pretrained"
    if pretrained:
        offline()  # decided once, before transformers reads it; offline, it reads only its local cache
    transformers = _quiet_transformers()
    source = weights.location.removeprefix("hf:")
    try:
        return [getattr(transformers, name).from_pretrained(source, trust_remote_code=False) for name in classes]
    except OSError as err:
        if pretrained:
            raise not_cached(f"Hugging Face model {source!r}", err) from None
        raise InputError(f"cannot load Hugging Face model {source!r}: {str(err).splitlines()[0]}") from None


def _quiet_transformers():
    transformers = _import("transformers", "transformers")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def _torch_hub_has(url: str) -> bool:
    """Whether torch.hub already holds the file that ``url`` downloads."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint file, never unpickling code (safetensors or ``weights_only``)."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InputError(f"cannot load checkpoint {path} safely (weights_only=True): {err}") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _load_checkpoint(model: nn.Module, path: str, by_order: bool = False) -> None:
    state = read_checkpoint(path)
    if by_order:
        state = _rename_by_order(state, model.state_dict(), path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InputError(
            f"checkpoint {path} does not fit the model: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )


def _rename_by_order(state: dict, target: dict, path: str) -> dict:
    """Map a checkpoint with other key names onto ``target`` tensor by tensor, in order.

    Used for the EfficientNet-PyTorch checkpoints of the built-in EfficientNet-Lite models,
    whose tensors match timm's one to one in order and shape.
    """
    src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst) or any(a.shape != b.shape for (_, a), (_, b) in zip(src, dst)):
        raise InputError(f"checkpoint {path} does not match the model's tensors in order and shape")
    return {dk: sv for (_, sv), (dk, _) in zip(src, dst)}


def _plain(data_config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}


def _import(module: str, package: str):
    try:
        return __import__(module)
    except ImportError:
        raise MissingPackageError(f"this model needs {package}: pip install {package}") from None
