"""Heads that grow: new classes and new items added to a fitted head without forgetting the old ones.

A head refitted on new items alone forgets the classes it no longer sees (catastrophic
forgetting). The remedy the continual-learning literature keeps coming back to is rehearsal:
keep a few examples of every class and train on them beside the new ones (iCaRL, Rebuffi et al.
2017, chooses them by herding). With cached features the memory is exact and cheap: vectors, not
images. Here:

- ``select_memory`` chooses up to ``per_class`` rows of each class, by herding (each pick brings
  the picked rows' mean closest to the class mean) or at random;
- ``update_head`` adds items to a fitted head: nearest-prototype and kNN heads in place
  (``partial_fit``: the new items join the index, or move their class's prototypes; the centring
  mean stays as fitted), linear heads refitted on memory plus new items, each memory row weighted
  by the items of its class it stands for, and logistic regression warm-started from the old
  model re-expressed in the refitted normalisation (a new class's row starting at zero);
- ``RehearsalHead`` is the same as a scikit-learn estimator with ``partial_fit``.
"""

from __future__ import annotations

import copy

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from pipelines.heads._heads import make_head
from pipelines.heads._prototype import KNNClassifier, PrototypeClassifier

MEMORY_PER_CLASS = 200  # rows kept per class: benchmarks/incremental.py measured 10 to 500 against a joint refit
MEMORY_STRATEGIES = ("herding", "random")


def herding(X: np.ndarray, n: int) -> np.ndarray:
    """Rows of ``X`` (one class) in the order herding picks them, ``n`` at most: each pick makes the
    mean of the picked rows closest to the class mean (on L2-normalised rows, as iCaRL)."""
    Z = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    target = Z.mean(axis=0)
    picked: list[int] = []
    total = np.zeros_like(target)
    free = np.ones(len(Z), dtype=bool)
    for k in range(min(n, len(Z))):
        gaps = np.linalg.norm(target - (total + Z) / (k + 1), axis=1)
        gaps[~free] = np.inf
        best = int(np.argmin(gaps))
        picked.append(best)
        free[best] = False
        total += Z[best]
    return np.asarray(picked, dtype=np.int64)


def select_memory(X: np.ndarray, y: np.ndarray, per_class: int, strategy: str = "herding", seed: int = 0) -> np.ndarray:
    """Sorted rows to keep: up to ``per_class`` of each class, by ``strategy`` (herding or random)."""
    if strategy not in MEMORY_STRATEGIES:
        raise ValueError(f"the memory strategy is one of {', '.join(MEMORY_STRATEGIES)}, not {strategy!r}")
    if per_class < 1:
        raise ValueError(f"the memory keeps at least one item per class, not {per_class}")
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        if strategy == "herding":
            chosen = members[herding(X[members], per_class)]
        else:
            chosen = rng.permutation(members)[:per_class]
        keep.append(chosen)
    return np.sort(np.concatenate(keep))


def _classifier(head) -> tuple[object, object | None]:
    """(classifier, normalisation step or None) of a head pipeline, or of a bare classifier."""
    if isinstance(head, Pipeline):
        return head.steps[-1][1], (Pipeline(head.steps[:-1]) if len(head.steps) > 1 else None)
    return head, None


def _affine(norm) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, scale) of a fitted standardisation (x - mean) / scale, None for a step without them."""
    step = norm.steps[-1][1] if isinstance(norm, Pipeline) else norm
    mean, scale = getattr(step, "mean_", None), getattr(step, "scale_", None)
    return None if mean is None or scale is None else (np.asarray(mean), np.asarray(scale))


def warm_coefficients(clf: LogisticRegression, classes: np.ndarray, temperature: float, old_norm, new_norm) -> tuple:
    """The old logistic regression re-expressed for the refit: its calibration temperature undone,
    its weights moved from the old standardisation's coordinates into the new one's (the same
    logits, exactly), laid out for ``classes`` (a new class's row zero)."""
    coef, intercept = clf.coef_ * temperature, clf.intercept_ * temperature
    before, after = _affine(old_norm), _affine(new_norm)
    if before is not None and after is not None:  # w.(x - m0)/s0 + b = (w s1/s0).(x - m1)/s1 + b + w.(m1 - m0)/s0
        intercept = intercept + coef @ ((after[0] - before[0]) / before[1])
        coef = coef * (after[1] / before[1])
    old = [str(c) for c in clf.classes_]
    if coef.shape[0] == 1:  # binary: one row for the second class; as two rows of a softmax
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    rows = np.zeros((len(classes), coef.shape[1]))
    bias = np.zeros(len(classes))
    for i, c in enumerate(classes):
        if str(c) in old:
            rows[i], bias[i] = coef[old.index(str(c))], intercept[old.index(str(c))]
    if len(classes) == 2:  # back to scikit-learn's binary layout
        return (rows[1:] - rows[:1]), np.array([bias[1] - bias[0]])
    return rows, bias


def memory_weights(y_memory: np.ndarray, counts: dict[str, int] | None) -> np.ndarray | None:
    """Each memory row's weight in a refit: the items of its class seen so far over the memory's
    rows of that class, so that the refit's loss estimates the loss on every item seen (a class
    kept as 50 of 1,000 items counts as 1,000, not 50). None (all 1) without counts."""
    if not counts:
        return None
    labels, kept = np.unique(y_memory, return_counts=True)
    ratio = {str(c): max(counts.get(str(c), k), k) / k for c, k in zip(labels, kept)}
    return np.array([ratio[str(c)] for c in y_memory])


def class_counts(y: np.ndarray, before: dict[str, int] | None = None) -> dict[str, int]:
    """Items per class of ``y``, added to the counts ``before``."""
    counts = dict(before or {})
    for label, n in zip(*np.unique(np.asarray(y).astype(str), return_counts=True)):
        counts[str(label)] = counts.get(str(label), 0) + int(n)
    return counts


def update_head(
    head,
    X_new: np.ndarray,
    y_new: np.ndarray,
    X_memory: np.ndarray,
    y_memory: np.ndarray,
    temperature: float = 1.0,
    counts: dict[str, int] | None = None,
):
    """A copy of the fitted ``head`` that also knows ``X_new`` / ``y_new`` (new classes or more of
    the old ones); the memory (``X_memory`` / ``y_memory``, rows of the old training data) is what
    the head keeps of the past, ``counts`` how many items of each class it stands for.

    Prototype and kNN heads learn the new items in place (``partial_fit``); other heads are
    refitted on memory plus new items, the memory weighted by ``memory_weights``, the
    normalisation refitted too, and logistic regression warm-started from the old model
    (``warm_coefficients``; ``temperature``: the calibration folded into its weights). The
    caller's head is not changed."""
    head = copy.deepcopy(head)
    clf, norm = _classifier(head)
    y_new = np.asarray(y_new).astype(str)
    if isinstance(clf, PrototypeClassifier | KNNClassifier):
        clf.partial_fit(norm.transform(X_new) if norm is not None else X_new, y_new)
        return head
    X = np.concatenate([X_memory, X_new])
    y = np.concatenate([np.asarray(y_memory).astype(str), y_new])
    kept = memory_weights(np.asarray(y_memory).astype(str), counts)
    weights = None if kept is None else np.concatenate([kept, np.ones(len(y_new))])
    new_norm = clone(norm).fit(X) if norm is not None else None
    Z = new_norm.transform(X) if new_norm is not None else X
    refit = clone(clf)
    if isinstance(clf, LogisticRegression):
        refit.set_params(warm_start=True)
        refit.coef_, refit.intercept_ = warm_coefficients(clf, np.unique(y), temperature, norm, new_norm)
    refit.fit(Z, y, **({} if weights is None else {"sample_weight": weights}))
    if not isinstance(head, Pipeline):
        return refit
    return Pipeline([*(new_norm.steps if new_norm is not None else []), (head.steps[-1][0], refit)])


class RehearsalHead(ClassifierMixin, BaseEstimator):
    """A head of the table (``head``) that keeps a rehearsal memory and learns more with ``partial_fit``.

    Parameters
    ----------
    head : str
        A ``HEADS`` name (logreg, linear-svm, prototype, knn, ...).
    memory_per_class : int
        Rows kept per class after each fit.
    strategy : {"herding", "random"}
        How the memory is chosen.
    params : dict or None
        The classifier's hyperparameters (``{"C": 0.1}``); None for its defaults.

    Attributes
    ----------
    estimator_, classes_, memory_X_, memory_y_
    """

    def __init__(self, head="logreg", *, memory_per_class=MEMORY_PER_CLASS, strategy="herding", params=None):
        self.head = head
        self.memory_per_class = memory_per_class
        self.strategy = strategy
        self.params = params

    def _remember(self, X: np.ndarray, y: np.ndarray) -> None:
        keep = select_memory(X, y, self.memory_per_class, self.strategy)
        self.memory_X_, self.memory_y_ = X[keep], y[keep]
        self.classes_ = self.estimator_.classes_

    def fit(self, X, y) -> RehearsalHead:
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y).astype(str)
        self.estimator_ = make_head(self.head, **(self.params or {})).fit(X, y)
        self.class_counts_ = class_counts(y)
        self._remember(X, y)
        return self

    def partial_fit(self, X, y) -> RehearsalHead:
        """Learn the items ``X`` / ``y`` (new classes or old ones) without forgetting: the first call fits."""
        if not hasattr(self, "estimator_"):
            return self.fit(X, y)
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y).astype(str)
        self.estimator_ = update_head(self.estimator_, X, y, self.memory_X_, self.memory_y_, counts=self.class_counts_)
        self.class_counts_ = class_counts(y, self.class_counts_)
        self._remember(np.concatenate([self.memory_X_, X]), np.concatenate([self.memory_y_, y]))
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.estimator_.predict(X)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)
