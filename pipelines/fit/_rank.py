"""``xfer rank``: score backbones x layers on a labelled sample before featurizing everything.

A few dozen labelled items per class are featurized through the cache (so a later full run reuses
them) with each model, tapping its candidate layers in one pass; each layer, and each model's
layers concatenated, is scored with LogME and leave-one-out nearest-centroid accuracy
(``pipelines._transferability``). The table is sorted by LogME, whose order is what is
recommended; the nearest-centroid column is a check that needs no model at all.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from featurizer import Extractor, FeatureOptions, FeaturizerError, Inputs, ReadOptions, RunOptions
from featurizer.backbones import last_distinct_layers
from featurizer.engine import inputs_for, model_for
from pipelines.fit._fit import check_labels, sample_few_shot
from pipelines.heads import logme, loo_nearest_centroid

DEFAULT_PER_CLASS = 30
CHANCE_LOGME = 0.02  # LogME gains below this are what random labels give (tests/test_rank.py)


@dataclass
class RankRow:
    """One candidate: a model's layer (or its layers concatenated) and its scores on the sample."""

    model: str
    layers: tuple[str, ...]
    dims: int
    logme: float
    nearest_centroid: float
    seconds: float  # featurizing the sample (shared by a model's rows, counted in full on each) + scoring

    @property
    def name(self) -> str:
        return f"{self.model}:{'+'.join(self.layers)}"


@dataclass
class Ranking:
    rows: list[RankRow]  # best LogME first
    items: int  # labelled items in the sample
    classes: int
    chance: float  # accuracy of always answering the sample's largest class
    skipped: list[tuple[str, str]]  # (item id, reason) of sample items that could not be featurized

    @property
    def recommended(self) -> RankRow:
        return self.rows[0]


def sample_inputs(inputs: Inputs, per_class: int, seed: int) -> Inputs:
    """Up to ``per_class`` labelled items of every class, drawn with ``seed`` (unlabelled items are left out)."""
    if inputs.labels is None:
        raise FeaturizerError(f"{inputs.origin} has no labels: rank needs class folders or a label column")
    labelled = np.flatnonzero(np.asarray(inputs.labels, dtype=object) != "")
    y = np.asarray(inputs.labels, dtype=object)[labelled].astype(str)
    check_labels(y, inputs.origin)
    chosen = labelled[sample_few_shot(y, per_class, seed)]
    return inputs.take(chosen)


def score_candidate(model: str, layers: tuple[str, ...], X: np.ndarray, y: np.ndarray, seconds: float) -> RankRow:
    started = time.perf_counter()
    scores = logme(X, y), loo_nearest_centroid(X, y)
    return RankRow(model, layers, X.shape[1], *scores, seconds + time.perf_counter() - started)


def rank(
    data: str | os.PathLike,
    models: list[str],
    layers=None,
    *,
    per_class: int = DEFAULT_PER_CLASS,
    seed: int = 0,
    run: RunOptions | None = None,
    read: ReadOptions | None = None,
) -> Ranking:
    """Rank ``models`` x layers on a labelled sample of ``data`` by LogME.

    ``layers``: names or depth indices used for every model; by default each model's last three
    distinct layers. Each model's layers are also scored side by side (concatenated).
    """
    models = list(models) or [model_for(data, None)[0]]  # none named: the default model of what data holds
    rows, sample, skipped, scored = [], None, [], None
    for model in models:
        started = time.perf_counter()
        requested = tuple(layers) if layers else last_distinct_layers(model)
        extractor = Extractor.from_options(FeatureOptions(model, requested), run, model_for(data, model)[1])
        if sample is None or sample.modality != extractor.modality:
            sample = sample_inputs(inputs_for(extractor, data, read), per_class, seed)
        keys, errors = extractor.keys(sample)
        try:
            _, failed = extractor.ensure(sample, keys)
        finally:
            extractor.compact()
        bad = {item for item, _ in [*errors, *failed]}
        skipped += [e for e in [*errors, *failed] if e not in skipped]
        keep = [i for i, item in enumerate(sample.ids) if item not in bad]
        y = np.asarray(sample.labels, dtype=object)[keep].astype(str)
        check_labels(y, f"the sample of {data}")
        scored = y if scored is None else scored  # the items the first model scored, for the header
        vectors = {name: extractor.vectors(name, [keys[i] for i in keep]) for name in extractor.spec.layers}
        seconds = time.perf_counter() - started
        names = extractor.spec.layers
        for group in [(name,) for name in names] + ([names] if len(names) > 1 else []):
            rows.append(score_candidate(model, group, np.hstack([vectors[n] for n in group]), y, seconds))
    counts = np.unique(scored, return_counts=True)[1]
    rows.sort(key=lambda row: -row.logme)
    return Ranking(rows, int(len(scored)), int(len(counts)), float(counts.max() / counts.sum()), skipped)
