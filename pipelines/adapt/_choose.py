"""Adaptation chosen without target labels: each candidate scored by circular validation, and
``none`` kept unless a candidate beats it beyond noise.

Circular (reverse) validation (Bruzzone and Marconcini, 2010; one of the realistic scorers of
SKADA-Bench, arXiv 2407.11676): a head fitted on the adapted source labels the target; a second
head fitted on those pseudo-labelled target items must then label held-out source items right.
Only source labels are used. The way back is the same for every candidate: the second head is
fitted on the target's own features, each domain centred on its mean (so that a plain offset
between the domains does not decide the way back), and labels the source's own centred
features; candidates differ only in the target labels they hand over. Going back through each
candidate's own map instead rewarded maps that agree with themselves: on flowers12 in grayscale,
subspace alignment scored best that way (0.914 against 0.747 for none) and was 10 points worse
on the target.

The per-item verdicts on held-out source items are paired across candidates and
``pipelines.heads.beats_plain`` decides, as for the semi-supervised heads: of the candidates the
best does not beat beyond noise, the simplest (``CANDIDATES`` is in order of complexity) is kept
if it beats ``none`` beyond noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from featurizer import FeaturizerError
from pipelines.adapt._adapt import ADAPT_MAPS, AffineMap, effective_size, fit_adaptation, importance_weights
from pipelines.heads import beats_plain, weight_params

CANDIDATES = ("none", "mean", "reweight", "coral", "subspace")  # simplest first
ADAPT_METHODS = ("auto", *ADAPT_MAPS, "reweight")  # what ``--adapt`` accepts


@dataclass
class Adaptation:
    """How the training features are adapted to the target: what the head is fitted on and with.

    ``source_map`` is applied to the training features, ``target_map`` saved in the model and
    applied to every input it predicts on (None: features as they are), ``weights`` passed to the
    head's fit (None: equal). ``scores``: each candidate's circular-validation accuracy and its
    standard error when the method was chosen (``auto``).
    """

    method: str
    source_map: AffineMap | None = None
    target_map: AffineMap | None = None
    weights: np.ndarray | None = None
    asked: str = ""
    reason: str = ""
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)

    def source(self, X: np.ndarray) -> np.ndarray:
        return X if self.source_map is None else self.source_map.transform(X)

    def summary(self) -> str:
        """One line for the fit summary: what was kept, why, and each candidate's score."""
        line = f"adaptation: {self.method}"
        if self.weights is not None:
            line += f" (effective training size {effective_size(self.weights):.0f} of {len(self.weights)})"
        if self.asked == "auto":
            scored = ", ".join(f"{m} {mean:.3f}" for m, (mean, _) in self.scores.items())
            line += f", chosen by circular validation: {self.reason}; scores {scored}"
        return line


def adapt_to(method: str, source: np.ndarray, target: np.ndarray, seed: int = 0) -> Adaptation:
    """The fixed adaptation ``method`` (``none``, a feature map or ``reweight``) fitted on both domains."""
    if method == "none":
        return Adaptation("none", asked=method)
    if method == "reweight":
        return Adaptation(method, weights=importance_weights(source, target, seed), asked=method)
    if method in ADAPT_MAPS:
        source_map, target_map = fit_adaptation(method, source, target)
        return Adaptation(method, source_map, target_map, asked=method)
    raise FeaturizerError(f"--adapt must be one of {', '.join(ADAPT_METHODS)}, not {method!r}")


def circular_scores(adapted: Adaptation, source, y, target, head, splits) -> np.ndarray:
    """Per source item, 1 where the round trip labels it right: adapted source -> target labels ->
    a head on the target's own centred features -> the item's own centred features (held out of
    the first fit)."""
    S = adapted.source(source)
    T = target if adapted.target_map is None else adapted.target_map.transform(target)
    right = np.zeros(len(y))
    for train, test in splits:
        weights = None if adapted.weights is None else adapted.weights[train]
        forward = clone(head).fit(S[train], y[train], **weight_params(head, weights))
        pseudo = forward.predict(T)
        if len(np.unique(pseudo)) < 2:  # the target all in one class: the way back predicts that class
            right[test] = y[test] == pseudo[0]
            continue
        backward = clone(head).fit(target - target.mean(0), pseudo)
        right[test] = backward.predict(source[test] - source.mean(0)) == y[test]
    return right


def choose_adaptation(source, y, target, head, seed: int = 0, folds: int = 3) -> Adaptation:
    """``auto``: score every candidate (``CANDIDATES``, ``none`` included) by circular validation with
    ``head`` (an unfitted estimator); of the candidates within noise of the best, keep the simplest if it
    beats ``none`` beyond noise, else ``none``."""
    y = np.asarray(y)
    smallest = int(np.unique(y, return_counts=True)[1].min())
    if smallest < 2 or len(target) < 3:
        return Adaptation("none", asked="auto", reason="too few items to score the candidates")
    splits = list(StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed).split(source, y))
    fitted, right = {}, {}
    for method in CANDIDATES:
        try:
            fitted[method] = adapt_to(method, source, target, seed)
        except FeaturizerError:  # e.g. too few items to reweight: not a candidate here
            continue
        right[method] = circular_scores(fitted[method], source, y, target, head, splits)
    scores = {m: (float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r)))) for m, r in right.items()}
    best = max(right, key=lambda m: scores[m][0])
    simplest = next(m for m in right if not beats_plain(right[best], right[m]).kept)
    verdict = beats_plain(right[simplest], right["none"])
    if simplest != "none" and verdict.kept:
        reason = f"{simplest} beats none by {verdict.gain:+.3f} (noise {verdict.noise:.3f})"
        if simplest != best:
            reason += f"; {best} scores higher, within noise of it"
        chosen = fitted[simplest]
    else:
        reason = f"no candidate beats none beyond noise (best {best} {scores[best][0] - scores['none'][0]:+.3f})"
        chosen = fitted["none"]
    chosen.asked, chosen.reason, chosen.scores = "auto", reason, scores
    return chosen


def adaptation_for(method: str, source, y, target, head, seed: int = 0) -> Adaptation:
    """The one entry: ``auto`` chooses (``choose_adaptation``), anything else is fitted as asked."""
    if method == "auto":
        return choose_adaptation(source, y, target, head, seed)
    return adapt_to(method, source, target, seed)
