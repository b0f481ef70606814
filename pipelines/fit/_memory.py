"""A model's rehearsal memory: the cached vectors of a few training items per class, kept beside it.

``xfer update`` learns new classes without forgetting the old ones by training on this memory
beside the new items (``pipelines.heads.update_head``). The memory is a feature file of its own
(``MODEL.memory.h5``: the model's layers, ids and labels, exactly the training vectors), so
``xfer info`` reads it like any other, and its SHA-256 in the model's card is checked before use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, FeatureFileWriter, FeatureSpec, FeaturizerError
from featurizer.spec import check_compatible
from featurizer.storage import claim, file_sha256, location
from pipelines.fit._fit import read_xy
from pipelines.heads import HEADS, MEMORY_PER_CLASS, class_counts, select_memory
from pipelines.models import ModelCard

MEMORY_SUFFIX = ".memory.h5"


def memory_path(model: str | os.PathLike) -> Path:
    """Where a model's memory lives: ``models/digits.skops`` keeps ``models/digits.memory.h5``."""
    return Path(location(model)).with_suffix(MEMORY_SUFFIX)


def layer_dims(features: FeatureFile, layers: tuple[str, ...]) -> list[int]:
    return [int(features.read(name)[:0].shape[1]) for name in layers]


def labelled_rows(features: FeatureFile, card: ModelCard, where) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, labels, ids) of the labelled items of a feature file, on the model's layers, its spec checked."""
    missing = [name for name in card.spec.layers if name not in features.layers]
    if missing:
        check_compatible(card.spec, features.spec, str(where))  # another model or modality: every difference named
        raise FeaturizerError(
            f"{where} has no layer {missing[0]!r}, which the model reads: featurize it as the model's data"
        )
    check_compatible(card.spec, features.spec.select(card.spec.layers), str(where))
    X, y = read_xy(features, card.spec.layers, card.label_column or None)
    if y is None or not (y != "").any():
        raise FeaturizerError(f"{where} has no labels: update learns from labelled items")
    keep = y != ""
    return X[keep], y[keep], [i for i, k in zip(features.ids, keep) if k]


def write_memory(
    model: str | os.PathLike,
    spec: FeatureSpec,
    dims: list[int],
    X: np.ndarray,
    y: np.ndarray,
    ids: list[str],
    per_class: int = MEMORY_PER_CLASS,
    strategy: str = "herding",
    seed: int = 0,
    counts: dict[str, int] | None = None,
) -> dict:
    """Choose up to ``per_class`` items of each class of ``X`` (the model's layers side by side) and
    write them as the model's memory; what the card records of it (file, SHA-256, sizes, and
    ``counts``: the items of each class the model has learnt from, by default those of ``y``)."""
    path = memory_path(model)
    claim(path, what="the model's rehearsal memory", kind="features")
    rows = select_memory(X, y, per_class, strategy, seed)
    with FeatureFileWriter(path, spec, [ids[r] for r in rows], [str(y[r]) for r in rows]) as writer:
        start = 0
        for name, dim in zip(spec.layers, dims):
            writer.write_layer(name, 0, X[rows, start : start + dim])
            start += dim
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "items": int(len(rows)),
        "per_class": int(per_class),
        "strategy": strategy,
        "counts": counts or class_counts(y),
    }


def read_memory(model: str | os.PathLike, card_memory: dict, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, list]:
    """(X, labels, ids) of the model's memory, refused in one line when it is missing, changed since
    it was written, or of another feature spec."""
    path = memory_path(model)
    if not path.is_file():
        raise FeaturizerError(f"{model} keeps its rehearsal memory in {path.name}, which is missing: refit the model")
    if file_sha256(path) != card_memory.get("sha256"):
        raise FeaturizerError(f"{path} changed after the model was saved: refit the model rather than trust it")
    with FeatureFile(path) as f:
        check_compatible(spec, f.spec.select(spec.layers), str(path))
        X = np.hstack([f.read(name) for name in spec.layers])
        return X, np.asarray(f.labels, dtype=object).astype(str), list(f.ids)


def remembers(card: ModelCard) -> bool:
    """Whether a fitted model can keep a memory for ``xfer update``: one classifier on its own features."""
    plain = not card.tasks and not card.adaptation and not card.mitigation and card.params.get("semi", "none") == "none"
    return plain and card.head in HEADS


def training_memory(
    model: str | os.PathLike,
    train: str | os.PathLike,
    card: ModelCard,
    per_class: int = MEMORY_PER_CLASS,
    seed: int = 0,
) -> dict:
    """Write the memory of a model just fitted on the feature file ``train`` (``per_class`` items
    of each class at most); what its card records."""
    with FeatureFile(train) as f:
        X, y, ids = labelled_rows(f, card, train)
        dims = layer_dims(f, card.spec.layers)
    return write_memory(model, card.spec, dims, X, y, ids, per_class, seed=seed)
