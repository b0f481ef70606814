"""What every backbone is, and the registry of backbone families.

Every backbone answers ``forward(batch, layers) -> {layer: raw output}`` in one pass. A family
(timm, torchvision, Hugging Face encoders, CLIP towers) is one module that owns both building its
models and describing them without weights, and registers itself here (``register_family``), as
timm's model modules do; ``family_of`` finds the one that builds a config.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurizer.backbones._pooling import pool
from featurizer.backbones._runtime import (
    autocast,
    conv_norm_pairs,
    fold_batch_norms,
    kernel_flags,
    quantize,
    set_threads,
)
from featurizer.base import InputError, MissingPackageError, UnknownModelError, lazy_module
from featurizer.inputs import image_sizes
from featurizer.spec import BackboneConfig, ComputeMode, Layer, WeightsRef, not_cached, offline, validate

torch = lazy_module("torch")  # imported when a network is built: a cached run never needs it
nn = lazy_module("torch.nn")
log = logging.getLogger(__name__)

Description = tuple[tuple[Layer, ...], dict]  # (layers with pooled sizes, preprocessing)


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


@dataclass(frozen=True)
class Family:
    """One family of backbones: which configs it builds, how to build one, how to describe one
    (layers and preprocessing) without loading weights."""

    name: str
    claims: Callable[[BackboneConfig], bool]
    build: Callable[[BackboneConfig, WeightsRef], Backbone]
    describe: Callable[[BackboneConfig, WeightsRef], Description]


_FAMILIES: list[Family] = []


def register_family(family: Family) -> Family:
    """Add a family of backbones (each family module registers itself when imported)."""
    if any(f.name == family.name for f in _FAMILIES):
        raise ValueError(f"backbone family {family.name!r} is already registered")
    _FAMILIES.append(family)
    return family


def family_of(config: BackboneConfig) -> Family:
    """The one family that builds ``config``."""
    for family in _FAMILIES:
        if family.claims(config):
            return family
    raise UnknownModelError(f"no backbone family builds {config.name!r} (library {config.library!r})")


def build_backbone(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """Build the backbone of ``config`` with ``weights``, frozen and in eval mode, on the CPU."""
    return family_of(config).build(config, weights)


def skeleton(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    """The backbone's architecture on PyTorch's meta device: no weights downloaded or allocated; its
    layers are probed by a forward pass of shapes only."""
    with torch.device("meta"):
        backbone = family_of(config).build(config, WeightsRef("skeleton", weights.location))
    backbone.device = torch.device("meta")
    return backbone


def describe_by_skeleton(config: BackboneConfig, weights: WeightsRef) -> Description:
    """Layers (with pooled sizes) and preprocessing of a zoo image model, from a weightless skeleton."""
    backbone = skeleton(config, weights)
    return backbone.layers, backbone.preprocessing


# --- Shared by the families ---------------------------------------------------------------


def from_hf(weights: WeightsRef, *classes: str) -> list:
    """``transformers.<class>.from_pretrained`` for each class, never running remote code; a hub model
    that cannot be had offline fails at once with one line."""
    pretrained = weights.kind == "pretrained"
    if pretrained:
        offline()  # decided once, before transformers reads it; offline, it reads only its local cache
    transformers = quiet_transformers()
    source = weights.location.removeprefix("hf:")
    try:
        return [getattr(transformers, name).from_pretrained(source, trust_remote_code=False) for name in classes]
    except OSError as err:
        if pretrained:
            raise not_cached(f"Hugging Face model {source!r}", err) from None
        raise InputError(f"cannot load Hugging Face model {source!r}: {str(err).splitlines()[0]}") from None


def quiet_transformers():
    transformers = require("transformers", "transformers")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


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


def load_checkpoint(model: nn.Module, path: str, by_order: bool = False) -> None:
    state = read_checkpoint(path)
    if by_order:
        state = rename_by_order(state, model.state_dict(), path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InputError(
            f"checkpoint {path} does not fit the model: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )


def rename_by_order(state: dict, target: dict, path: str) -> dict:
    """Map a checkpoint with other key names onto ``target`` tensor by tensor, in order.

    Used for the EfficientNet-PyTorch checkpoints of the built-in EfficientNet-Lite models,
    whose tensors match timm's one to one in order and shape.
    """
    src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst) or any(a.shape != b.shape for (_, a), (_, b) in zip(src, dst)):
        raise InputError(f"checkpoint {path} does not match the model's tensors in order and shape")
    return {dk: sv for (_, sv), (dk, _) in zip(src, dst)}


def require(module: str, package: str):
    try:
        return __import__(module)
    except ImportError:
        raise MissingPackageError(f"this model needs {package}: pip install {package}") from None
