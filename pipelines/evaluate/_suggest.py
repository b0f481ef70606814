"""``xfer suggest``: which unlabelled items to label next (active learning on cached embeddings).

Strategies, each returning the chosen rows best first:

- ``margin``: the smallest gap between the two most probable classes (the head hesitates most).
- ``entropy``: the highest entropy of the class probabilities.
- ``kcenter``: k-center greedy (Sener and Savarese, 2018): each pick is the item farthest, in cosine
  distance, from everything labelled or picked so far; it covers the embedding space.
- ``hybrid``: the ``HYBRID_POOL`` x n most uncertain items by margin, then k-center among them, so
  that the uncertain items picked are not near-duplicates of each other.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, FeaturizerError, ReadOptions, RunOptions
from pipelines.evaluate._evaluate import averaged_scores, model_features
from pipelines.fit import read_xy
from pipelines.heads import unit_rows
from pipelines.models import load_model

STRATEGIES = ("hybrid", "margin", "entropy", "kcenter", "random")
HYBRID_POOL = 5


def margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    """1 - (p_first - p_second): 1 when the two best classes tie, 0 when one is certain."""
    top = np.sort(proba, axis=1)[:, ::-1]
    second = top[:, 1] if proba.shape[1] > 1 else np.zeros(len(proba))
    return 1 - (top[:, 0] - second)


def entropy_uncertainty(proba: np.ndarray) -> np.ndarray:
    p = np.clip(proba, 1e-12, 1)
    return -(p * np.log(p)).sum(axis=1)


def kcenter_greedy(X: np.ndarray, n: int, labelled: np.ndarray | None = None) -> list[int]:
    """``n`` rows of ``X``, each the farthest (cosine distance) from the labelled rows and those picked
    before; with nothing labelled, the first is the row farthest from the mean."""
    U = unit_rows(X)
    chosen: list[int] = []
    if labelled is not None and len(labelled):
        L = unit_rows(labelled)
        nearest = np.full(len(U), np.inf)
        for start in range(0, len(L), 2048):  # distances in blocks: memory stays flat for big pools
            nearest = np.minimum(nearest, (1 - U @ L[start : start + 2048].T).min(axis=1))
    elif n > 0 and len(U):  # the first pick is the row farthest from the mean; the mean is no centre after that
        chosen.append(int(np.argmax(1 - U @ unit_rows(U.mean(axis=0, keepdims=True))[0])))
        nearest = 1 - U @ U[chosen[0]]
        nearest[chosen] = -np.inf
    while len(chosen) < min(n, len(U)):
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, 1 - U @ U[pick])
        nearest[chosen] = -np.inf
    return chosen


def choose(
    strategy: str,
    n: int,
    X: np.ndarray,
    proba: np.ndarray | None,
    labelled: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[list[int], np.ndarray]:
    """(rows to label, best first; the score of every row under ``strategy``: higher is more worth labelling)."""
    if strategy not in STRATEGIES:
        raise FeaturizerError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    n = min(n, len(X))
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(len(X))
        return [int(i) for i in order[:n]], np.zeros(len(X))
    if strategy == "kcenter":
        return kcenter_greedy(X, n, labelled), np.zeros(len(X))
    scores = entropy_uncertainty(proba) if strategy == "entropy" else margin_uncertainty(proba)
    order = np.argsort(-scores, kind="stable")
    if strategy != "hybrid":
        return [int(i) for i in order[:n]], scores
    pool = order[: max(n, HYBRID_POOL * n)]
    picked = kcenter_greedy(X[pool], n, labelled)
    return [int(pool[i]) for i in picked], scores


def suggest_file(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    n: int = 20,
    strategy: str = "hybrid",
    *,
    trust: bool = False,
    run: RunOptions | None = None,
    read: ReadOptions | None = None,
    seed: int = 0,
) -> tuple[list[str], list[list]]:
    """CSV header and rows (rank, id, source, predicted label, score) of the ``n`` items of ``data``
    most worth labelling for the saved model; k-center keeps away from the model's training items."""

    model, card = load_model(model_path, trust=trust)
    if card.tasks:
        raise FeaturizerError("suggest ranks items for a single classifier; this model has several tasks")
    found = model_features(card, data, run, read)
    labelled, known = None, set()
    if Path(card.train).is_file():
        with FeatureFile(card.train) as f:
            X_train, y_train = read_xy(f, card.spec.layers, card.label_column or None)
            sources = f.sources or []
        if y_train is not None:
            keep = y_train != ""
            labelled = X_train[keep]
            known = {s for s, k in zip(sources, keep) if k}
    # the pool: items without a label here and not already labelled in training (matched by path or text)
    own = found.y if found.y is not None else np.full(len(found.ids), "")
    item_sources = found.sources or [None] * len(found.ids)
    pool = np.array([i for i, (s, y) in enumerate(zip(item_sources, own)) if y == "" and s not in known], dtype=int)
    if not len(pool):
        raise FeaturizerError(f"{data} holds no unlabelled items to suggest (every item has a label already)")
    X = found.X[pool]
    proba = averaged_scores(model, X)
    chosen, pool_scores = choose(strategy, n, X, proba, labelled, seed)
    picked = [int(pool[i]) for i in chosen]
    scores = np.zeros(len(found.ids))
    scores[pool] = pool_scores
    proba_all = np.zeros((len(found.ids), proba.shape[1]))
    proba_all[pool] = proba
    proba = proba_all
    classes = np.asarray([str(c) for c in model.classes_])
    predicted = classes[proba.argmax(axis=1)]
    sources = found.sources or [""] * len(found.ids)
    header = ["rank", "id", "source", "predicted", "confidence", "score"]
    rows = [
        [rank, found.ids[i], sources[i], predicted[i], f"{proba[i].max():.4f}", f"{scores[i]:.4f}"]
        for rank, i in enumerate(picked, 1)
    ]
    return header, rows
