"""The feature spec: exactly what produced a vector, so vectors are cached and compared safely.

A ``FeatureSpec`` is made once, by ``featurizer._resolve.resolve_spec``, and then only passed on.
Comparison (``differences``), restriction to some layers (``select``) and the cache key of each
layer (``layer_key``) are derived from the dataclass fields, so a field added later is compared
and hashed without anyone remembering to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields, replace

from featurizer.base import FeaturizerError, UnknownLayerError
from featurizer.spec._registry import IMAGE, Layer

IMAGE_POOLINGS = ("avg", "max", "gem")
TEXT_POOLINGS = ("mean", "cls", "max")
POOLINGS = tuple(dict.fromkeys(IMAGE_POOLINGS + TEXT_POOLINGS))  # every pooling, images first
# Layers that are vectors already (the network's own pooling): pooling does not apply.
POOLED_LAYERS = ("pre_logits", "pooled", "embeds")  # timm/torchvision pre-logits; a CLIP tower's outputs

# Bumped when a runtime computes other vectors for the same spec, so that old cached vectors are not mixed in.
# onnx 2: int8 quantises only the MatMuls fed by a LayerNormalization.
# onnx 3: int8 smooths those MatMuls' inputs first (SmoothQuant on the bundled calibration texts).
RUNTIME_REVISIONS = {"onnx": 3}

# Per-file fields: which layers a file holds and how each is pooled. Every other field describes
# how every layer's vectors were made, and so is part of each layer's cache key.
_PER_FILE = ("modality", "layers", "pooling")


@dataclass(frozen=True)
class FeatureSpec:
    """The spec of a set of vectors: model, weights, preprocessing, precision, runtime and the layers taken."""

    model: str
    modality: str
    weights: str
    weights_sha256: str | None
    preprocessing: dict
    precision: str
    layers: tuple[str, ...]
    pooling: tuple[str, ...]
    runtime: str = "torch"  # or "onnx" (ONNX Runtime)

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.pooling):
            raise ValueError("a feature spec needs one pooling per layer")

    # -- identity ---------------------------------------------------------------------------
    def identity(self) -> dict:
        """The fields that decide what a vector is. Weights known by hash are named by the hash alone
        (where they are installed does not matter); fields at their default are left out, so a field
        added later leaves the identity (and the cache keys) of older specs unchanged."""
        data = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.default is not MISSING and value == f.default:
                continue
            data[f.name] = list(value) if isinstance(value, tuple) else value
        if self.weights_sha256:
            data.pop("weights")
        if self.runtime in RUNTIME_REVISIONS:
            data["runtime_revision"] = RUNTIME_REVISIONS[self.runtime]
        return data

    def differences(self, other: FeatureSpec) -> list[str]:
        """What differs from ``other``, one readable line per field (empty when the vectors are the same kind)."""
        mine, theirs = self.identity(), other.identity()
        out = []
        for name in dict.fromkeys([*mine, *theirs]):
            if mine.get(name) != theirs.get(name):
                out.append(f"{name}: {_short(mine.get(name))} vs {_short(theirs.get(name))}")
        return out

    def select(self, layers: Sequence[str]) -> FeatureSpec:
        """The spec of just ``layers`` (names this spec holds), in the order given."""
        missing = [name for name in layers if name not in self.layers]
        if missing:
            raise UnknownLayerError(f"layer {missing[0]!r} is missing; there are {', '.join(self.layers)}")
        pooling = tuple(self.pooling[self.layers.index(name)] for name in layers)
        return replace(self, layers=tuple(layers), pooling=pooling)

    def layer_key(self, layer: str) -> str:
        """A short stable hash of one layer's identity; names the cache folder of that layer's vectors."""
        return hashlib.sha256(json.dumps(self.layer_identity(layer), sort_keys=True).encode()).hexdigest()[:24]

    def layer_identity(self, layer: str) -> dict:
        data = {k: v for k, v in self.identity().items() if k not in _PER_FILE}
        pooling = self.pooling[self.layers.index(layer)]
        return {**data, "layer": layer, "pooling": pooling}

    # -- storage ----------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"feature spec has unknown fields {unknown} (made by a newer featurizer?)")
        data["layers"], data["pooling"] = tuple(data["layers"]), tuple(data["pooling"])
        return cls(**data)


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


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


def spec_differences(needed: FeatureSpec, found: FeatureSpec) -> list[str]:
    """What differs between the features a model needs and the ones offered (empty if compatible).

    ``found`` may hold more layers than needed; the rest is compared field by field.
    """
    missing = [f"layer {name!r} is missing" for name in needed.layers if name not in found.layers]
    if missing:  # the other fields still say why (another model, say)
        found = replace(found, layers=needed.layers, pooling=needed.pooling)
        return needed.differences(found) + missing
    return needed.differences(found.select(needed.layers))


def check_compatible(needed: FeatureSpec, found: FeatureSpec, where: str, what: str = "the model's features") -> None:
    diffs = spec_differences(needed, found)
    if diffs:
        raise FeaturizerError(f"{where} does not match {what} (needed vs found): " + "; ".join(diffs))
