"""The heads: one table of classifiers, each with its normalisation and hyperparameter grid.

A head is a scikit-learn ``Pipeline`` of an optional normalisation step and a classifier, so it
pickles, clones and cross-validates like any estimator. Adding a head is one ``HEADS`` entry.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.validation import has_fit_parameter

from pipelines.heads._linalg import softmax
from pipelines.heads._prototype import KNNClassifier, PrototypeClassifier

NORMALISATIONS = ("standard", "l2", "none")


@dataclass(frozen=True)
class HeadSpec:
    """How to build a head and which hyperparameters cross-validation searches."""

    make: Callable[[], BaseEstimator]
    grid: Callable[[int], dict[str, list]]  # from the size of the smallest class; simplest model first
    normalise: str
    description: str


def log_grid(lo: int, hi: int) -> list[float]:
    return [float(c) for c in np.logspace(lo, hi, hi - lo + 1)]


HEADS: dict[str, HeadSpec] = {
    "logreg": HeadSpec(
        lambda: LogisticRegression(max_iter=2000),
        lambda n: {"clf__C": log_grid(-4, 2)},
        "standard",
        "multinomial logistic regression; C chosen by cross-validation",
    ),
    "linear-svm": HeadSpec(
        lambda: LinearSVC(max_iter=10000),
        lambda n: {"clf__C": log_grid(-5, 0)},
        "standard",
        "linear support vector machine; C chosen by cross-validation",
    ),
    "svm": HeadSpec(
        lambda: SVC(kernel="rbf", gamma="scale"),
        lambda n: {"clf__C": log_grid(-1, 3)},
        "l2",  # on standardised high-dimensional features the RBF kernel is nearly flat
        "RBF-kernel support vector machine; C chosen by cross-validation",
    ),
    "ridge": HeadSpec(
        lambda: RidgeClassifierCV(alphas=log_grid(-2, 4)),
        lambda n: {},  # alpha is chosen inside, by exact leave-one-out from one decomposition
        "standard",
        "ridge classification (least squares on +-1 targets); alpha by efficient leave-one-out, closed form",
    ),
    "lda": HeadSpec(
        lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
        lambda n: {},  # the shrinkage is Ledoit-Wolf's closed form
        "standard",
        "linear discriminant analysis with Ledoit-Wolf shrinkage of the covariance, closed form",
    ),
    "prototype": HeadSpec(
        PrototypeClassifier,
        lambda n: {"clf__n_prototypes": [k for k in (1, 2, 4) if k <= max(1, n // 2)]},
        "none",
        "nearest class prototype (SimpleShot: centred, L2-normalised, FAISS); prototypes per class by CV",
    ),
    "knn": HeadSpec(
        KNNClassifier,
        lambda n: {"clf__n_neighbors": [k for k in (20, 10, 5, 3, 1) if k <= max(1, n)]},
        "none",
        "k nearest neighbours (cosine, FAISS); k chosen by cross-validation",
    ),
}


def make_head(name: str, normalise: str | None = None, **params) -> Pipeline:
    """An unfitted head ``Pipeline([("norm", ...), ("clf", ...)])``; ``params`` set the classifier."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose from {', '.join(HEADS)}")
    spec = HEADS[name]
    normalise = normalise or spec.normalise
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, not {normalise!r}")
    norm = {"standard": StandardScaler(), "l2": Normalizer(), "none": FunctionTransformer()}[normalise]
    clf = spec.make()
    clf.set_params(**params)
    return Pipeline([("norm", norm), ("clf", clf)])


def plain_head_like(estimator) -> Pipeline:
    """The head of ``estimator``'s kind as the head table makes it: default hyperparameters, no
    normalisation (a classifier not in the table is cloned as it is)."""
    clf = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    for name, spec in HEADS.items():
        if type(spec.make()) is type(clf):
            return make_head(name, "none")
    return Pipeline([("norm", FunctionTransformer()), ("clf", clone(clf))])


def weight_params(estimator, weights) -> dict:
    """The ``fit`` keyword that passes per-item ``weights`` to a head's classifier ({} for none).

    Raises ``ValueError`` naming the classifier when it cannot take sample weights.
    """
    if weights is None:
        return {}
    name, clf = estimator.steps[-1] if isinstance(estimator, Pipeline) else (None, estimator)
    if not has_fit_parameter(clf, "sample_weight"):
        raise ValueError(f"{type(clf).__name__} cannot be fitted with sample weights")
    return {f"{name}__sample_weight" if name else "sample_weight": np.asarray(weights)}


def head_grid(name: str, y: np.ndarray) -> dict[str, list]:
    """The hyperparameter grid of a head for labels ``y`` (small classes shrink k-based grids)."""
    return HEADS[name].grid(int(np.unique(y, return_counts=True)[1].min()))


SMALL_DATA = 2000  # below this many examples, folds are repeated to steady the estimate
# From this many examples, three folds: each test fold of 1,600+ items measures accuracy to about a
# point, and the default fit on TREC (5,452 questions, 3 layers) took 6.1 s instead of 10.1 s with
# the same C, layers and test accuracy (0.944; benchmarks/fit_speed.py).
LARGE_DATA = 5000


def make_cv(y: np.ndarray, max_splits: int = 5, seed: int = 0) -> StratifiedKFold | RepeatedStratifiedKFold:
    """Stratified folds that still work when a class has one or two examples.

    The number of folds is the size of the smallest class, between 2 and ``max_splits`` (3 from
    ``LARGE_DATA`` examples); a class smaller than that is spread over as many folds as it has
    examples. Small datasets repeat the folds three times with different shuffles, since one split
    of a few hundred items is noisy.
    """
    smallest = int(np.unique(y, return_counts=True)[1].min())
    n_splits = max(2, min(max_splits if len(y) < LARGE_DATA else min(max_splits, 3), smallest))
    if len(y) < SMALL_DATA:
        return RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=3, random_state=seed)
    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def one_standard_error(cv_results: dict) -> int:
    """Index of the simplest candidate whose score is within one standard error of the best.

    The one-standard-error rule (Hastie, Tibshirani and Friedman, ESL 7.10): with few labelled
    examples, differences smaller than the noise of cross-validation are not worth more
    complexity. Grids list the simplest model first.
    """
    means = np.asarray(cv_results["mean_test_score"])
    stds = np.asarray(cv_results["std_test_score"])
    n_folds = sum(1 for key in cv_results if key.startswith("split") and key.endswith("_test_score"))
    best = int(np.argmax(means))
    return int(np.flatnonzero(means >= means[best] - stds[best] / np.sqrt(max(n_folds, 1)))[0])


@contextlib.contextmanager
def quiet_small_classes():
    """Silence scikit-learn's warning about classes smaller than the number of folds (expected here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        yield


def scores_of(model, X: np.ndarray) -> np.ndarray:
    """Class probabilities, or for heads without them (SVMs) a softmax of the decision scores."""
    if hasattr(model, "predict_proba"):
        try:
            return model.predict_proba(X)
        except AttributeError:
            pass
    decision = np.asarray(model.decision_function(X), dtype=np.float64)
    if decision.ndim == 1:  # binary
        decision = np.stack([-decision, decision], axis=1)
    return softmax(decision)
