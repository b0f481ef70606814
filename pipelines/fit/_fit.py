"""Fitting heads on cached features: hyperparameters and layer chosen by cross-validation.

``fit`` is what ``xfer fit`` runs: read a feature file, choose the layer (or try them all with
``layer='auto'``), search the head's grid with stratified folds, refit on everything and describe
the result in a ``ModelCard``. ``baseline=True`` also fits the same head on a representation with
no transfer (raw pixels or TF-IDF), to show whether the pretrained features help.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from featurizer import FeatureFile, FeatureSpec, Featurizer, FeaturizerError, UnknownLayerError
from featurizer.inputs import load_image
from featurizer.spec import Layer, check_compatible, resolve_layers
from pipelines.adapt import Adaptation, adaptation_for
from pipelines.heads import (
    apply_temperature,
    as_logits,
    calibrate_from_folds,
    head_grid,
    logme,
    make_cv,
    make_head,
    one_standard_error,
    quiet_small_classes,
    weight_params,
)
from pipelines.models import ModelCard, head_of

AUTO = "auto"
AUTO_FULL_CV = 2  # candidates --layer auto cross-validates in full: the best by LogME (benchmarks/rank_agreement.py)
SCREEN_PER_CLASS = 500  # items per class LogME screens candidates on (its SVD grows with the square of the width)
PATH_STAGE = 4  # values of C the warm path walks before it first checks for the peak
# Fold fits only rank the values of C: a looser tolerance than the final refit's (1e-4) cut the default
# fit on TREC's three layers from 4.9 to 3.0 s with the same C, layers and test accuracy (0.944).
FOLD_TOL = 1e-3
FOLD_TOL_FROM = 3000  # training items in a fold (TREC's three folds train on 3,634)
PARALLEL_FROM = 500  # items: below, cross-validation folds run one after another (threads cost more than they save)
BASELINE_IMAGE_SIZE = 16


@dataclass
class CVRow:
    """One candidate: the layers it reads, its best parameters and CV score (NaN where cross-validation
    was impossible), its LogME where ``--layer auto`` screened candidates by it, and whether it was
    fitted at all (screening leaves all but the best out)."""

    layers: tuple[str, ...]
    params: dict
    mean: float
    std: float
    logme: float | None = None
    tried: bool = True

    @property
    def name(self) -> str:
        return "+".join(self.layers)


@dataclass
class Searched:
    """What a hyperparameter search found: the refitted model, its parameters and CV score, and
    (for the warm path) its out-of-fold logits with their class indices, to calibrate it."""

    model: object
    params: dict
    mean: float
    std: float
    oof_logits: np.ndarray | None = None
    oof_y: np.ndarray | None = None


@dataclass
class FitResult:
    model: object
    card: ModelCard
    table: list[CVRow] = field(default_factory=list)
    baseline: CVRow | None = None
    warnings: list[str] = field(default_factory=list)
    output: object = None  # where ``fit_file`` saved the model (a Path or a Url)


def read_xy(
    features: FeatureFile, layers: tuple[str, ...], label_column: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features of ``layers`` side by side (in that order) and the labels ("" for an item without one):
    the file's labels, or the cells of the input's ``label_column``.

    Vectors with NaN or infinite values are refused with their ids named: every head would learn
    or predict nonsense from them, silently.
    """
    missing = [name for name in layers if name not in features.layers]
    if missing:
        raise FeaturizerError(f"{features.path} has no layer {missing[0]!r}; it has {', '.join(features.layers)}")
    X = np.hstack([features.read(name) for name in layers])
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):
        ids = features.ids
        shown = ", ".join(ids[i] for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise FeaturizerError(
            f"{features.path}: {len(bad)} item(s) have NaN or infinite vectors ({shown}); featurize them again "
            "(a damaged file, or a precision that overflowed)"
        )
    labels = features.labels if label_column is None else features.column(label_column)
    return X, None if labels is None else np.asarray(labels, dtype=object).astype(str)


def labelled(X: np.ndarray, y: np.ndarray | None, where: str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The rows that have a label, and a note on how many were left out (items with a blank label)."""
    if y is None:
        return X, y, []
    keep = y != ""
    if keep.all():
        return X, y, []
    if not keep.any():
        return X, None, []
    note = f"{int((~keep).sum())} items of {where} have no label and were left out"
    return X[keep], y[keep], [note]


def check_labels(y: np.ndarray | None, where: str) -> None:
    if y is None:
        raise FeaturizerError(f"{where} has no labels: featurize a labelled input (class folders or a label column)")
    classes = np.unique(y)
    if not len(classes):
        raise FeaturizerError(f"{where} has no labelled items")
    if len(classes) < 2:
        raise FeaturizerError(f"{where} has a single class ({str(classes[0])!r}); a classifier needs at least two")


def small_class_warnings(y: np.ndarray) -> list[str]:
    """Plain-language notes on classes too small for cross-validation to judge."""
    classes, counts = np.unique(y, return_counts=True)
    single = [str(c) for c, n in zip(classes, counts) if n == 1]
    if not single:
        return []
    if len(single) == len(classes):
        return [
            "every class has a single example: cross-validation cannot hold anything out, so the head was "
            "fitted with its default settings and has no score (one-shot learning; see xfer fewshot)"
        ]
    return [
        f"{len(single)} class(es) have a single example ({', '.join(single[:5])}{' ...' if len(single) > 5 else ''}): "
        "they are fitted, but cross-validation cannot test them, so the scores above say nothing about them"
    ]


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    head: str,
    normalise: str | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    views: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> Searched:
    """Grid-search a head with stratified folds; the chosen model refitted on everything.

    ``views`` (views x items x dim) are augmented views of the items: extra training rows. The
    folds are drawn over the items and every view goes with its item, so no image sits on both
    sides of a fold; only originals are scored. ``weights``: per item, passed to every fit (a view
    weighs what its item does); the folds are scored unweighted.
    """
    estimator, grid = make_head(head, normalise), head_grid(head, y)
    check_weighted(estimator, weights)
    if views is None or not len(views):
        return grid_search(estimator, grid, X, y, seed, n_jobs, weights=weights)
    copies = len(views) + 1
    tiled = None if weights is None else np.tile(weights, copies)
    if np.unique(y, return_counts=True)[1].max() < 2:  # nothing to hold out: fit on the items and their views
        model = clone(estimator).fit(*stack_views(X, y, views), **weight_params(estimator, tiled))
        return Searched(model, {}, float("nan"), float("nan"))
    n = len(y)
    folds = [
        (np.concatenate([train + k * n for k in range(copies)]), test)
        for train, test in make_cv(y, seed=seed).split(X, y)
    ]
    return grid_search(estimator, grid, *stack_views(X, y, views), seed, n_jobs, folds, tiled)


def check_weighted(estimator, weights) -> None:
    """Refuse, in one line, sample weights for a head whose classifier cannot take them."""
    try:
        weight_params(estimator, weights)
    except ValueError as err:
        raise FeaturizerError(f"--adapt reweight needs a head that takes sample weights: {err}") from None


def stack_views(X: np.ndarray, y: np.ndarray, views: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The items, then each of their augmented views, as rows: (X, y) with ``len(views) + 1`` copies of y."""
    if views is None or not len(views):
        return X, y
    return np.vstack([X, *views]), np.tile(y, len(views) + 1)


def grid_search(
    estimator,
    grid: dict,
    X,
    y: np.ndarray,
    seed: int = 0,
    n_jobs: int | None = None,
    folds: list | None = None,
    weights: np.ndarray | None = None,
) -> Searched:
    """Cross-validate ``grid`` and refit the simplest candidate within one standard error of the best.

    When every class has a single example nothing can be held out: the estimator is fitted with its
    own settings and the scores are NaN (``small_class_warnings`` says so). ``folds``: (train, test)
    index pairs to use instead of ``make_cv``'s. ``weights``: per row, passed to every fit.
    """
    if folds is None and np.unique(y, return_counts=True)[1].max() < 2:
        return Searched(clone(estimator).fit(X, y, **weight_params(estimator, weights)), {}, float("nan"), float("nan"))
    warm = [name for name in grid if _warm_startable(estimator, name)]
    if len(grid) == 1 and warm:
        cv = folds or make_cv(y, seed=seed)
        return _warm_path_search(estimator, warm[0], list(grid[warm[0]]), X, y, cv, n_jobs, weights)
    search = GridSearchCV(
        estimator,
        grid,
        cv=folds or make_cv(y, seed=seed),
        scoring="accuracy",
        n_jobs=n_jobs,
        error_score="raise",
        refit=one_standard_error,
    )
    with quiet_small_classes():
        search.fit(X, y, **weight_params(estimator, weights))
    i = search.best_index_
    params = {k.removeprefix("clf__"): v for k, v in search.best_params_.items()}
    return Searched(
        search.best_estimator_,
        params,
        float(search.cv_results_["mean_test_score"][i]),
        float(search.cv_results_["std_test_score"][i]),
    )


def choose_layers(available: list[str], requested) -> tuple[str, ...] | str:
    """The one grammar of layers for commands that read feature files: ``auto``, or names and depth
    indices into the file's layers (``-1`` is the last), in the order to concatenate them.

    ``requested`` is None (the file's first layer), a string or a sequence of them; ``a+b`` is
    accepted as two layers. Returns ``AUTO`` or a tuple of layer names.
    """

    if requested is None or requested == () or requested == []:
        return (available[0],)
    items = [requested] if isinstance(requested, str | int) else list(requested)
    parts = [part for item in items for part in str(item).split("+") if part.strip()]
    if any(part.strip() == AUTO for part in parts):
        if len(parts) > 1:
            raise UnknownLayerError("'auto' chooses the layers itself: give it alone")
        return AUTO
    try:
        return tuple(resolve_layers([Layer(n) for n in available], parts, available[0]))
    except UnknownLayerError as err:
        raise UnknownLayerError(str(err).replace("(see 'xfer layers')", "(the layers of this feature file)")) from None


def _warm_startable(estimator, name: str) -> bool:
    """Whether ``name`` is logistic regression's C: fits along ascending C can start from the last solution."""
    return name == "clf__C" and isinstance(estimator.named_steps.get("clf"), LogisticRegression)


def _warm_path_search(estimator, name: str, values: list, X, y: np.ndarray, cv, n_jobs: int | None, weights=None):
    """``grid_search`` for one warm-startable hyperparameter: per fold, the normalisation is fitted once
    and the classifier walks the grid in ascending order from the previous solution; folds run in
    parallel threads, with one BLAS thread each (on these small matrices a multi-threaded BLAS is
    slower than one thread, and threads start at once where worker processes take a second).

    The walk starts with the ``PATH_STAGE`` most regularised values, then goes on one value at a
    time, and stops once the mean score has fallen for two values in a row after its best: the least regularised
    fits are the slowest by far and, past a peak, are never chosen. The choice (one-standard-error
    rule) and the refit on all data are the same as with ``GridSearchCV`` on the values walked;
    ``benchmarks/fit_speed.py`` measures both in one run.
    """
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    order = sorted(range(len(values)), key=lambda i: values[i])
    ascending = [values[i] for i in order]
    splits = cv if isinstance(cv, list) else list(cv.split(X, y))
    if n_jobs is None:  # threads only pay beyond a few hundred items
        n_jobs = 1 if len(y) < PARALLEL_FROM else -1
    states: list = [None] * len(splits)
    columns: list[list[float]] = [[] for _ in splits]
    logits: list[list] = [[] for _ in splits]  # per fold, per value walked: test-fold logits (or None)
    solutions: list[list] = [[] for _ in splits]  # per fold, per value walked: (coef, intercept) (or None)
    with quiet_small_classes(), threadpool_limits(1), Parallel(n_jobs=n_jobs, prefer="threads") as parallel:
        done = 0
        while done < len(ascending):
            stage = ascending[done : done + (PATH_STAGE if done == 0 else 1)]
            rows = parallel(
                delayed(_fold_path)(estimator, name, stage, X, y, train, test, state, weights)
                for (train, test), state in zip(splits, states)
            )
            for column, fold_logits, fold_solutions, (scores, more, found, _) in zip(columns, logits, solutions, rows):
                column.extend(scores)
                fold_logits.extend(more)
                fold_solutions.extend(found)
            states = [state for *_, state in rows]
            done += len(stage)
            means = np.mean(columns, axis=0)
            if int(np.argmax(means)) <= done - 3:  # two values in a row below the best: past the peak
                break
    walked = [values[i] for i in order[:done]]
    scores = np.asarray(columns)  # folds x walked values, ascending
    results = {"mean_test_score": scores.mean(axis=0), "std_test_score": scores.std(axis=0)}
    results.update({f"split{i}_test_score": row for i, row in enumerate(scores)})
    best = one_standard_error(results)  # ascending = most regularised (simplest) first
    model = clone(estimator).set_params(**{name: walked[best]})
    starts = [fold[best] for fold in solutions if fold[best] is not None]
    if len({coef.shape for coef, _ in starts}) > 1:  # folds that saw other class sets: a cold start
        starts = []
    if starts:  # the refit starts from the folds' mean solution at the chosen value: fewer iterations
        clf = model.steps[-1][1].set_params(warm_start=True)
        clf.coef_ = np.mean([coef for coef, _ in starts], axis=0)
        clf.intercept_ = np.mean([intercept for _, intercept in starts], axis=0)
    with threadpool_limits(1):
        model.fit(X, y, **weight_params(estimator, weights))
    if starts:
        model.steps[-1][1].set_params(warm_start=False)  # the saved head's parameters, as a plain fit's
    kept = [(fold[best], test) for fold, (_, test) in zip(logits, splits) if fold[best] is not None]
    classes = np.unique(y)
    return Searched(
        model,
        {name.removeprefix("clf__"): walked[best]},
        float(scores.mean(0)[best]),
        float(scores.std(0)[best]),
        np.vstack([z for z, _ in kept]) if kept else None,
        np.concatenate([np.searchsorted(classes, y[test]) for _, test in kept]) if kept else None,
    )


def _fold_path(
    estimator, name: str, values: list, X, y, train, test, state=None, weights=None
) -> tuple[list, list, list, tuple]:
    """Scores of one fold along ascending ``values``, its test logits and solution (coefficients,
    intercepts) for each (None where the fold's training part lacks a class), and the state to
    continue the walk from: the classifier and the fold's prepared features (every step before the
    classifier is fitted once per fold, not per stage)."""
    if state is None:
        steps = clone(estimator).steps
        prep = Pipeline(steps[:-1])
        clf = steps[-1][1].set_params(warm_start=True)
        if len(train) >= FOLD_TOL_FROM:  # large folds only: small ones are cheap, and their choice stays exact
            clf.set_params(tol=max(clf.tol, FOLD_TOL))
        state = (clf, prep.fit_transform(X[train]), prep.transform(X[test]))
    clf, X_train, X_test = state
    scores, logits, solutions = [], [], []
    every_class = len(np.unique(y))
    for value in values:  # ascending: each fit starts from the previous, more regularised solution
        fold_weights = None if weights is None else weights[train]
        clf.set_params(**{name.removeprefix("clf__"): value}).fit(X_train, y[train], sample_weight=fold_weights)
        scores.append(float((clf.predict(X_test) == y[test]).mean()))
        whole = len(clf.classes_) == every_class
        logits.append(as_logits(clf.decision_function(X_test)) if whole else None)
        solutions.append((clf.coef_.copy(), clf.intercept_.copy()) if whole else None)
    return scores, logits, solutions, state


def candidate_layers(features: FeatureFile, layer) -> list[tuple[str, ...]]:
    chosen = choose_layers(features.layers, layer)
    if chosen == AUTO:
        single = [(name,) for name in features.layers]
        return single + ([tuple(features.layers)] if len(features.layers) > 1 else [])
    return [chosen]


def labelled_views(
    features: FeatureFile, layers: tuple[str, ...], label_column: str | None = None
) -> np.ndarray | None:
    """The augmented views of ``layers`` side by side (views x items x dim) for the items ``labelled``
    keeps, in the same order; None when the file has no views."""
    if not features.views:
        return None
    views = np.concatenate([features.read_views(name) for name in layers], axis=2)
    labels = features.labels if label_column is None else features.column(label_column)
    return views if labels is None else views[:, np.asarray(labels, dtype=object).astype(str) != ""]


def screen_candidates(
    features: FeatureFile, candidates: list[tuple[str, ...]], seed: int = 0, label_column: str | None = None
) -> dict:
    """LogME of each candidate on up to ``SCREEN_PER_CLASS`` labelled items per class: {layers: score}."""

    scores = {}
    for layers in candidates:
        X, y, _ = labelled(*read_xy(features, layers, label_column), str(features.path))
        check_labels(y, str(features.path))
        keep = sample_few_shot(y, SCREEN_PER_CLASS, seed)
        scores[layers] = logme(X[keep], y[keep])
    return scores


def calibrate_head(searched: Searched) -> dict:
    """Temperature-scale a logistic regression on its out-of-fold logits, in place; what was done, or {}.

    Only where cross-validation kept the scores of every fold (the warm path of logistic
    regression); other heads are left as they are and ``xfer evaluate`` reports their calibration.
    """
    clf = head_of(searched.model).named_steps["clf"]
    if searched.oof_logits is None or not isinstance(clf, LogisticRegression):
        return {}
    found = calibrate_from_folds(searched.oof_logits, searched.oof_y)
    apply_temperature(clf, found["temperature"])
    return {"method": "temperature", **found}


def fit_fixed(
    X: np.ndarray, y: np.ndarray, head: str, normalise: str | None, params: dict, weights: np.ndarray | None = None
) -> Searched:
    """The head fitted with fixed hyperparameters (and per-row ``weights``), unscored."""
    try:
        estimator = make_head(head, normalise, **params)
        check_weighted(estimator, weights)
        model = estimator.fit(X, y, **weight_params(estimator, weights))
    except ValueError as err:
        raise FeaturizerError(f"head {head!r} does not take {params}: {str(err).splitlines()[0]}") from None
    return Searched(model, dict(params), float("nan"), float("nan"))


def baseline_warnings(best: CVRow, baseline: CVRow) -> list[str]:
    """A plain-words note when the representation without transfer beats the transferred one clearly
    (by more than the larger of the two cross-validation standard deviations)."""
    if not (baseline.mean - best.mean > max(best.std, baseline.std, 0.01)):
        return []
    return [
        f"the baseline ({baseline.name}, {baseline.mean:.3f}) beats the pretrained features ({best.name}, "
        f"{best.mean:.3f}) clearly: this domain is far from what the backbone learned from. Try earlier layers "
        "(featurize --layer -4 --layer -5 ...), another backbone (xfer rank), or fine-tuning (xfer finetune: "
        "it tries every stage first on such data)"
    ]


def end_to_end(spec: FeatureSpec, head, adapt=None) -> Pipeline:
    """``Pipeline([("features", Featurizer(spec=spec)), ("head", head)])``: predicts from raw images or texts;
    with ``adapt`` (a target map of ``pipelines._adapt``) between the two.

    The featurizer is built from the spec alone (no network is loaded until it transforms), so it
    makes exactly the training features: same weights (found by hash), runtime and precision.
    """
    steps = [("features", Featurizer(spec=spec).fit())]
    return Pipeline([*steps, *([("adapt", adapt)] if adapt is not None else []), ("head", head)])


def adaptation(
    method: str,
    target: str | os.PathLike,
    spec: FeatureSpec,
    X: np.ndarray,
    y: np.ndarray,
    head: str,
    normalise: str | None = None,
    seed: int = 0,
) -> Adaptation:
    """The adaptation ``method`` (``auto`` chooses) of the training ``X, y`` to the features ``spec``
    selects in ``target``; ``head`` (with default settings) scores the candidates for ``auto``."""
    with FeatureFile(target) as t:
        check_compatible(spec, t.spec, str(target), "the training features")
        Xt, _ = read_xy(t, spec.layers)
    return adaptation_for(method, X, y, Xt, make_head(head, normalise), seed)


# --- Baseline without transfer ------------------------------------------------------------


def fit_baseline(modality: str, sources: list[str] | None, y: np.ndarray, head: str, seed: int = 0) -> CVRow:
    """Cross-validated score of ``head`` on raw pixels (images) or TF-IDF (texts)."""
    if sources is None:
        raise FeaturizerError("the feature file does not record its items' sources, so no baseline can be computed")
    if modality == "image":
        X = raw_pixels(sources)
        searched = cross_validate(X, y, head, seed=seed)
        return CVRow(("raw pixels",), searched.params, searched.mean, searched.std)
    return _tfidf_baseline(sources, y, head, seed)


def raw_pixels(paths: list[str], size: int = BASELINE_IMAGE_SIZE) -> np.ndarray:
    """Each image squashed to ``size`` x ``size`` RGB, as a flat vector in [0, 1]."""
    from PIL import Image

    rows = [
        np.asarray(load_image(p).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32).ravel()
        for p in paths
    ]
    return np.stack(rows) / 255.0


def _tfidf_baseline(texts: list[str], y: np.ndarray, head: str, seed: int) -> CVRow:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import FunctionTransformer

    steps = [("tfidf", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, max_features=20000))]
    if head in ("prototype", "knn"):
        steps.append(("dense", FunctionTransformer(lambda m: m.toarray(), accept_sparse=True)))
    clf = clone(make_head(head, "none").named_steps["clf"])
    searched = grid_search(
        Pipeline([*steps, ("clf", clf)]), head_grid(head, y), np.asarray(texts, dtype=object), y, seed
    )
    return CVRow(("tf-idf",), searched.params, searched.mean, searched.std)


def sample_few_shot(y: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices of ``shots`` examples of every class (all of a smaller class), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    chosen = [
        rng.choice(np.flatnonzero(y == c), size=min(shots, int((y == c).sum())), replace=False) for c in np.unique(y)
    ]
    return np.sort(np.concatenate(chosen))


def unknown_label_warnings(y: np.ndarray, classes: list[str], whose: str) -> list[str]:
    """Warnings when test labels are not classes the model knows (none of them, or some)."""
    unknown = sorted(set(map(str, y)) - set(classes))
    if not unknown:
        return []
    shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
    if len(unknown) == len(set(map(str, y))):
        return [
            f"none of the test labels ({shown}) is a class of {whose} ({', '.join(map(repr, classes[:5]))}"
            f"{' ...' if len(classes) > 5 else ''}): every prediction is wrong by construction; are these the "
            "right files?"
        ]
    n = int(np.isin(np.asarray(y).astype(str), unknown).sum())
    return [f"{n} test items have labels that are not classes of {whose} ({shown}): they count as errors"]
