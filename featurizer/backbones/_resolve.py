"""One resolver from what the user asks for to the feature spec, without loading a network.

``FeatureOptions`` holds what decides the vectors (model, layers, pooling, weights, precision,
runtime); ``RunOptions`` holds how to compute them (device, batch size, decoding workers, cache
folder, progress), which never changes a vector. ``resolve(options)`` fills the backbone's layer
list and preprocessing from the registry, from a skeleton of a zoo model built on PyTorch's meta
device (no weights, no download), or from a Hugging Face folder's files, and makes the
``FeatureSpec``. ``weights_for_spec`` is its inverse for the weights, so an extractor is built from
a spec alone (``Extractor.from_spec``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from featurizer.backbones._describe import describe
from featurizer.base import FeaturizerError
from featurizer.cache import default_cache_dir, mirror_dir
from featurizer.spec import (
    IMAGE,
    MODES,
    TEXT,
    BackboneConfig,
    FeatureSpec,
    WeightsRef,
    check_spec_mode,
    default_model,
    default_weights,
    get_config,
    offline,
    resolve_layers,
    resolve_pooling,
    resolve_weights,
)
from featurizer.storage import is_url


@dataclass(frozen=True)
class FeatureOptions:
    """What decides the vectors; ``resolve`` turns it into a ``FeatureSpec``."""

    model: str | None = None  # None: the registry's default model of the input's modality
    layers: tuple[str | int, ...] | None = None  # names or depth indices; None: the model's default layer
    pooling: str | None = None
    weights: str | os.PathLike | None = None  # a local checkpoint or model folder instead of the default
    precision: str = "fp32"
    runtime: str = "auto"  # auto: ONNX Runtime on a CPU where it can run the model, else PyTorch

    def __post_init__(self) -> None:
        if self.layers is not None and not isinstance(self.layers, tuple):
            layers = [self.layers] if isinstance(self.layers, str | int) else list(self.layers)
            object.__setattr__(self, "layers", tuple(layers) or None)


@dataclass(frozen=True)
class RunOptions:
    """How vectors are computed: never part of the spec, so never part of a cache key."""

    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None  # image decoding processes; None: one per core up to four
    cache_dir: Path | str | None = None  # None: $FEATURIZER_CACHE or ./cache; a URL: a cache in object storage
    progress: bool = True

    def cache(self) -> Path:
        """The local cache folder (for a cache in object storage, its local mirror)."""

        if self.remote_cache():
            return mirror_dir(self.remote_cache(), default_cache_dir())
        return Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()

    def remote_cache(self) -> str | None:
        """The cache's URL when it is in object storage, else None."""

        return str(self.cache_dir) if is_url(self.cache_dir) else None


@dataclass(frozen=True)
class Resolved:
    """A backbone config with its layers and preprocessing filled in, its weights, and the spec."""

    config: BackboneConfig
    weights: WeightsRef
    spec: FeatureSpec


def resolve(options: FeatureOptions, modality: str | None = None, device: str = "auto") -> Resolved:
    """The spec of ``options``; ``modality`` picks the default model when none is named, ``device``
    (a ``RunOptions`` device) decides what ``runtime='auto'`` becomes."""
    config = get_config(options.model or default_model(modality or IMAGE), modality)
    weights = resolve_weights(config, options.weights)
    runtime = resolve_runtime(options.runtime, options.precision, config, weights, device)
    check_spec_mode(options.precision, runtime, config.modality)
    if weights.kind == "pretrained":
        offline()  # decided once, before any zoo library is imported (they read it at import)
    if runtime == "onnx" and config.modality == TEXT and weights.kind != "folder":
        raise FeaturizerError(
            f"runtime 'onnx' exports a local model folder; {weights.location} is not one "
            "(use a built-in text model, hf/PATH, or --runtime torch)"
        )
    config = describe(config, weights)
    names = resolve_layers(config.layers, options.layers, config.default_layer or "-1")
    spec = FeatureSpec(
        model=config.name,
        modality=config.modality,
        weights=weights.location,
        weights_sha256=weights.sha256,
        preprocessing=spec_preprocessing(config),
        precision=options.precision,
        layers=tuple(names),
        pooling=resolve_pooling(config.modality, names, options.pooling),
        runtime=runtime,
    )
    return Resolved(config, weights, spec)


def resolve_spec(options: FeatureOptions, modality: str | None = None, device: str = "auto") -> FeatureSpec:
    return resolve(options, modality, device).spec


def resolve_runtime(runtime: str, precision: str, config: BackboneConfig, weights: WeightsRef, device: str) -> str:
    """``runtime``, with ``auto`` decided: ONNX Runtime when the work runs on a CPU, ONNX Runtime is
    installed, the model is a built-in one (tested to export) with local weights, and the precision
    runs there (fp32; int8 for texts); PyTorch otherwise (GPUs, bf16, zoo models).

    Measured on 2 CPU cores (BENCHMARKS.md): ONNX Runtime featurizes 1.6-2.3x faster than PyTorch and
    starts without importing it.
    """
    static = config.library == "model2vec"
    if static or runtime == "numpy":
        if static != (runtime in ("auto", "numpy")):
            raise FeaturizerError(
                f"runtime 'numpy' runs static text models (minilm-static), and only it runs them; not {config.name}"
                if runtime == "numpy"
                else f"{config.name} is a static table, not a network: use --runtime numpy or auto"
            )
        return "numpy"
    if runtime != "auto":
        return runtime
    on_cpu = device == "cpu" or (device == "auto" and not gpu_present())
    runs = (precision, "onnx", config.modality, "cpu") in MODES
    local = weights.kind != "pretrained" or config.weights_package is not None
    return "onnx" if on_cpu and runs and config.builtin and local and onnx_installed() else "torch"


def onnx_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def gpu_present() -> bool:
    """Whether PyTorch would find a GPU, asked without importing it when it is not loaded yet
    (importing it costs the ONNX path most of its start-up)."""
    import platform
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        mps = getattr(torch.backends, "mps", None)
        return bool(torch.cuda.is_available() or (mps is not None and mps.is_available()))
    if platform.system() == "Darwin":
        return platform.machine() == "arm64"  # Apple silicon: PyTorch runs on its GPU (MPS)
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return any(os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/dxg"))  # NVIDIA driver; WSL's GPU


def spec_preprocessing(config: BackboneConfig) -> dict:
    """The preprocessing recorded in the spec: the backbone's, plus decoding details that change pixels."""
    if config.modality == IMAGE:
        return {**config.preprocessing, "jpeg_draft": True}
    return config.preprocessing


def layer_dims(spec: FeatureSpec) -> list[int]:
    """The length of each layer's vector in ``spec``, without loading weights (registry, skeleton or config file)."""
    config = get_config(spec.model, spec.modality)
    if not config.layers:
        kind = "pretrained" if not spec.weights_sha256 else "folder" if Path(spec.weights).is_dir() else "file"
        config = describe(config, WeightsRef(kind, spec.weights, spec.weights_sha256))
    known = {layer.name: layer.dim for layer in config.layers}
    return [int(known[name]) for name in spec.layers]


def weights_for_spec(config: BackboneConfig, spec: FeatureSpec) -> WeightsRef:
    """The weights that make ``spec``'s vectors: found by their SHA-256 where the spec knows it.

    The recorded location is tried first, then the model's default weights (installed elsewhere on
    another machine); weights known only by name (zoo downloads) are the zoo's.
    """
    if not spec.weights_sha256:
        return WeightsRef("pretrained", spec.weights)
    candidates = []
    if Path(spec.weights).exists():
        candidates.append(lambda: resolve_weights(config, spec.weights))
    candidates.append(lambda: default_weights(config))
    for candidate in candidates:
        try:
            weights = candidate()
        except FeaturizerError:
            continue
        if weights is not None and weights.sha256 == spec.weights_sha256:
            return weights
    raise FeaturizerError(
        f"the weights these features were made with are not here: {spec.weights} "
        f"(sha256 {spec.weights_sha256[:12]}); pass them with --weights or copy them back"
    )


def last_distinct_layers(
    model: str, weights: str | os.PathLike | None = None, count: int = 3, modality: str | None = None
) -> tuple[str, ...]:
    """The model's default layer and the distinct layers before it, ``count`` in all, latest first.

    An image backbone's ``pre_logits`` is the global average pool of the feature map right before
    it (timm's ``features``, torchvision's last block): the same vector under the default pooling,
    so that map is skipped. Read from the registry or the architecture, never importing torch for
    a built-in model (an ONNX run must not).
    """
    config = get_config(model, modality)
    if not config.layers:
        config = describe(config, resolve_weights(config, weights))
    layers = list(config.layers)
    default = resolve_layers(layers, None, config.default_layer or "-1")[0]
    start = [layer.name for layer in layers].index(default)
    chosen = [layers[start].name]
    for i in range(start - 1, -1, -1):
        pooled_by_next = layers[i + 1].name == "pre_logits" and layers[i].dim == layers[i + 1].dim
        if not pooled_by_next:
            chosen.append(layers[i].name)
        if len(chosen) == count:
            break
    return tuple(chosen)


def with_default_layers(options: FeatureOptions, modality: str, count: int = 3) -> FeatureOptions:
    """``options`` for a feature file: where no layers are named, the default layer and the two distinct
    layers before it, all from the same forward pass, so that ``fit`` can choose among them."""
    if options.layers is not None:
        return options
    model = options.model or default_model(modality)
    return replace(options, layers=last_distinct_layers(model, options.weights, count, modality))
