"""Fairness mitigation: a head refitted so that what it gets right, or what it chooses, is spread
evenly over groups of items (``xfer fit --mitigate equalized_odds|demographic_parity --groups FILE``).

Design:

- **Reductions, so that predicting needs no groups.** fairlearn's ``ExponentiatedGradient``
  refits the head with item weights until the constraint holds within ``eps`` on the training
  items; the result is a weighted mixture of heads that reads features only. The groups are needed
  while fitting, never after: ``xfer predict`` and ``xfer evaluate`` work on new items as before.
  Post-processing (``ThresholdOptimizer``, per-group thresholds) would need each item's group at
  prediction time, and a saved model that met an item without one could only fail or be silently
  wrong; it is left out.
- **Two classes**: one mixture, for the second class of ``classes_``. **More classes** (fairlearn's
  reductions are binary): one mixture per class, that class against the rest; the class with the
  largest vote wins. Regression and multi-task models are refused (``pipelines.fit``).
- **What is saved** (``FairMixture``): the unmitigated head (``unmitigated_``, so that ``xfer evaluate
  --by`` can show the gap before and after, and the accuracy it costs), and per mixture its heads
  (plain scikit-learn pipelines, or a constant ``DummyClassifier`` where fairlearn made one) with
  their weights: arrays and parameters that skops loads from ``TRUSTED_TYPES``, nothing of fairlearn.
- **A randomized classifier that answers the same twice**: the constraint holds for the mixture as
  fairlearn's ``predict`` uses it, one head drawn at random per item (the weighted vote of its
  heads, rounded, does not keep it: on a planted gap, equalized odds stayed near the unmitigated
  gap). Here the draw is read from a hash of the item's features (``item_draws``), so an item gets
  the same head, hence the same answer, every time; its probabilities are that head's.
- **The gap** (``fairness_gap``): over the classes, the largest difference between two groups of the
  rate the constraint equalises: for demographic parity the share of items predicted as the class,
  for equalized odds the recall of the class (with two classes, the larger of the true- and
  false-positive rate gaps: fairlearn's ``equalized_odds_difference``).
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from featurizer import FeaturizerError, MissingPackageError
from pipelines.heads._heads import make_cv, scores_of, weight_params

MITIGATIONS = ("demographic_parity", "equalized_odds")
HELD_OUT = 0.25  # of the training items, to measure the gap and accuracy before and after for the card


class FairMixture(ClassifierMixin, BaseEstimator):
    """A head refitted by fairlearn's ``ExponentiatedGradient`` under ``constraint``, saved as plain heads.

    Parameters
    ----------
    estimator : the head (a fitted one is kept as the unmitigated head; an unfitted one is fitted).
    constraint : ``demographic_parity`` or ``equalized_odds``.
    eps : how far from the constraint the training items may be (fairlearn's ``eps``).
    max_iter : rounds of exponentiated gradient (each fits the head once per mixture).

    Attributes
    ----------
    unmitigated_ : the head fitted without the constraint.
    heads_ : per mixture, its heads; ``weights_``: per mixture, their weights (summing to 1).
    targets_ : per mixture, the class it votes for.
    classes_, n_features_in_ : as the unmitigated head's.
    """

    def __init__(self, estimator=None, *, constraint: str = "equalized_odds", eps: float = 0.01, max_iter: int = 50):
        self.estimator = estimator
        self.constraint = constraint
        self.eps = eps
        self.max_iter = max_iter

    def fit(self, X, y, *, groups) -> FairMixture:
        """Fit the mixtures on ``X, y`` with each item's group in ``groups`` (needed here only)."""
        reductions = _reductions()
        if self.constraint not in MITIGATIONS:
            raise FeaturizerError(f"--mitigate must be one of {', '.join(MITIGATIONS)}, not {self.constraint!r}")
        y, groups = np.asarray(y).astype(str), np.asarray(groups).astype(str)
        try:
            check_is_fitted(self.estimator)
            self.unmitigated_ = self.estimator
        except NotFittedError:
            self.unmitigated_ = clone(self.estimator).fit(X, y)
        self.classes_ = np.asarray([str(c) for c in self.unmitigated_.classes_])
        self.n_features_in_ = int(X.shape[1])
        weight_name = next(iter(weight_params(self.estimator, np.ones(1))))
        moment = {"demographic_parity": reductions.DemographicParity, "equalized_odds": reductions.EqualizedOdds}
        targets = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        self.targets_, self.heads_, self.weights_ = [], [], []
        for target in targets:
            with warnings.catch_warnings():  # fairlearn's own use of pandas, deprecated in pandas 3: not the user's
                warnings.simplefilter("ignore", category=FutureWarning)
                warnings.simplefilter("ignore", category=DeprecationWarning)
                found = reductions.ExponentiatedGradient(
                    clone(self.estimator),
                    constraints=moment[self.constraint](),
                    eps=self.eps,
                    max_iter=self.max_iter,
                    sample_weight_name=weight_name,
                ).fit(X, (y == target).astype(int), sensitive_features=groups)
            kept = [(found.predictors_[i], float(w)) for i, w in found.weights_.items() if w > 0]
            total = sum(w for _, w in kept)
            self.targets_.append(str(target))
            self.heads_.append([head for head, _ in kept])
            self.weights_.append(np.asarray([w / total for _, w in kept]))
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Per item, each mixture's head drawn for it (``item_draws``) scores its class; rows sum to 1."""
        check_is_fitted(self, "heads_")
        X = np.asarray(X)
        column = {c: i for i, c in enumerate(self.classes_)}
        draws = item_draws(X)
        scores = np.zeros((len(X), len(self.classes_)))
        for target, heads, weights in zip(self.targets_, self.heads_, self.weights_):
            chosen = np.minimum(np.searchsorted(np.cumsum(weights), draws, side="right"), len(heads) - 1)
            for i, head in enumerate(heads):
                rows = chosen == i
                if rows.any():
                    scores[rows, column[target]] = _positive(head, X[rows])
        if len(self.classes_) == 2:
            scores[:, 0] = 1 - scores[:, 1]
            return scores
        total = scores.sum(axis=1, keepdims=True)
        return np.where(total > 0, scores / np.where(total > 0, total, 1), 1 / len(self.classes_))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def item_draws(X: np.ndarray) -> np.ndarray:
    """Per item, a number in [0, 1) read from a hash of its features: the draw of a randomized
    classifier that gives the same item the same answer every time, in any batch."""
    rows = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    digests = (hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in rows)
    return np.fromiter((int.from_bytes(d, "little") / 2**64 for d in digests), dtype=np.float64, count=len(rows))


def _positive(head, X: np.ndarray) -> np.ndarray:
    """The probability of label 1 by a head of a mixture (fitted on 0/1 labels; fairlearn's constant heads too)."""
    classes = [int(c) for c in head.classes_]
    return scores_of(head, X)[:, classes.index(1)] if 1 in classes else np.zeros(len(X))


def _reductions():
    try:
        from fairlearn import reductions
    except ImportError:
        raise MissingPackageError("--mitigate needs fairlearn: pip install 'featurizer[fair]'") from None
    return reductions


def fairness_gap(y, predicted, groups, constraint: str) -> float:
    """The largest difference between two groups, over the classes, of what ``constraint`` equalises:
    the share predicted as the class (demographic parity) or its recall (equalized odds)."""
    y, predicted, groups = (np.asarray(a).astype(str) for a in (y, predicted, groups))
    gaps = [0.0]
    for c in np.unique(np.concatenate([y, predicted])):
        rates = []
        for g in np.unique(groups):
            inside = (groups == g) if constraint == "demographic_parity" else (groups == g) & (y == c)
            if inside.any():
                rates.append(float((predicted[inside] == c).mean()))
        if len(rates) > 1:
            gaps.append(max(rates) - min(rates))
    return max(gaps)


def mitigation_report(y, before, after, groups, constraint: str) -> dict:
    """The gap and accuracy of the unmitigated (``before``) and mitigated (``after``) predictions."""
    y, before, after = (np.asarray(a).astype(str) for a in (y, before, after))
    accuracy_before, accuracy_after = float((before == y).mean()), float((after == y).mean())
    return {
        "constraint": constraint,
        "n": int(len(y)),
        "gap_before": fairness_gap(y, before, groups, constraint),
        "gap_after": fairness_gap(y, after, groups, constraint),
        "accuracy_before": accuracy_before,
        "accuracy_after": accuracy_after,
        "accuracy_cost": accuracy_before - accuracy_after,
    }


def compare_mitigated(model: FairMixture, X, y, groups) -> dict:
    """``mitigation_report`` of a fitted ``FairMixture`` on labelled ``X, y`` with their ``groups``."""
    before = model.unmitigated_.predict(X)
    return mitigation_report(y, before, model.predict(X), groups, model.constraint)


def mitigate(head, X, y, groups, constraint: str, seed: int = 0) -> tuple[FairMixture, dict]:
    """``head`` (fitted on ``X, y``) mitigated under ``constraint`` with each item's group, and what it did.

    The gap and accuracy before and after are measured on a held-out quarter of the items (stratified
    by class, drawn with ``seed``), the mixture fitted on the rest; the model returned is then
    fitted on every item, ``head`` kept as its unmitigated head. Refused in one line: a single group,
    a head that cannot take sample weights.
    """
    y, groups = np.asarray(y).astype(str), np.asarray(groups).astype(str)
    if constraint not in MITIGATIONS:
        raise FeaturizerError(f"--mitigate must be one of {', '.join(MITIGATIONS)}, not {constraint!r}")
    if len(np.unique(groups)) < 2:
        raise FeaturizerError(f"--groups puts every item in one group ({groups[0]!r}): mitigation needs two or more")
    try:
        weight_params(head, np.ones(1))
    except ValueError as err:
        raise FeaturizerError(f"--mitigate refits the head with item weights: {err}; choose another --head") from None
    summary = {"constraint": constraint, "method": "exponentiated_gradient", "held_out": None}
    folds = max(2, round(1 / HELD_OUT))
    if np.unique(y, return_counts=True)[1].min() >= folds:
        train, test = next(make_cv(y, folds, seed).split(X, y))
        trial = FairMixture(clone(head), constraint=constraint).fit(X[train], y[train], groups=groups[train])
        summary["held_out"] = compare_mitigated(trial, X[test], y[test], groups[test])
    return FairMixture(head, constraint=constraint).fit(X, y, groups=groups), summary
