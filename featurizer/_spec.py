"""The feature spec: exactly what produced a vector, so vectors are cached and compared safely."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from featurizer._errors import UnknownLayerError
from featurizer._registry import IMAGE, Layer

IMAGE_POOLINGS = ("avg", "max", "gem")
TEXT_POOLINGS = ("mean", "cls", "max")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # int8: dynamic quantisation of Linear layers, CPU
# Layers that are vectors already (the network's own pooling): pooling does not apply.
POOLED_LAYERS = ("pre_logits",)


# Bumped when a runtime computes other vectors for the same spec, so that old cached vectors are not mixed in.
# onnx 2: int8 quantises only the MatMuls fed by a LayerNormalization.
# onnx 3: int8 smooths those MatMuls' inputs first (SmoothQuant on the bundled calibration texts).
RUNTIME_REVISIONS = {"onnx": 3}


@dataclass(frozen=True)
class LayerSpec:
    """One layer's identity: a vector is reusable exactly when this whole record matches."""

    model: str
    weights: str
    weights_sha256: str | None
    preprocessing: dict
    precision: str
    layer: str
    pooling: str
    runtime: str = "torch"

    def key(self) -> str:
        """A short stable hash of the spec; names the cache folder of this layer's vectors."""
        data = asdict(self)
        if self.weights_sha256:  # the file's hash names the weights; where they are installed does not matter
            data.pop("weights")
        if self.runtime == "torch":  # the original runtime: keys from before runtimes existed stay valid
            data.pop("runtime")
        else:
            data["runtime_revision"] = RUNTIME_REVISIONS[self.runtime]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class FeatureSpec:
    """The spec of a feature file: model, weights, preprocessing, precision and the layers taken."""

    model: str
    modality: str
    weights: str
    weights_sha256: str | None
    preprocessing: dict
    precision: str
    layers: tuple[str, ...]
    pooling: tuple[str, ...]
    runtime: str = "torch"  # or "onnx" (ONNX Runtime)

    def layer_spec(self, layer: str) -> LayerSpec:
        i = self.layers.index(layer)
        return LayerSpec(
            self.model,
            self.weights,
            self.weights_sha256,
            self.preprocessing,
            self.precision,
            layer,
            self.pooling[i],
            self.runtime,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        data["layers"], data["pooling"] = tuple(data["layers"]), tuple(data["pooling"])
        return cls(**data)


def resolve_layers(available: Sequence[Layer], requested: Sequence[str | int] | None, default: str) -> list[str]:
    """Layer names from names or depth indices (negative counts from the end), in the order asked.

    ``default`` (a name or an index) is used when nothing is requested; duplicates are dropped.
    """
    names = [layer.name for layer in available]
    out: list[str] = []
    for item in requested or [default]:
        name = _one_layer(names, item)
        if name not in out:
            out.append(name)
    return out


def _one_layer(names: list[str], item: str | int) -> str:
    text = str(item).strip()
    try:
        index = int(text)
    except ValueError:
        if text in names:
            return text
        raise UnknownLayerError(f"unknown layer {text!r}; choose from {', '.join(names)} (see 'xfer layers')") from None
    if not -len(names) <= index < len(names):
        raise UnknownLayerError(
            f"layer index {index} out of range: the model has {len(names)} layers ({', '.join(names)})"
        )
    return names[index]


def resolve_pooling(modality: str, layers: Sequence[str], pooling: str | None) -> tuple[str, ...]:
    """The pooling of each layer: the one asked for, else avg for image maps, mean for tokens."""
    choices = IMAGE_POOLINGS if modality == IMAGE else TEXT_POOLINGS
    if pooling is None:
        pooling = choices[0]
    if pooling not in choices:
        raise UnknownLayerError(
            f"pooling {pooling!r} does not apply to {modality} models; choose from {', '.join(choices)}"
        )
    return tuple("model" if layer in POOLED_LAYERS else pooling for layer in layers)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision
