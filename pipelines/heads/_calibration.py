"""Are the probabilities honest? Calibration measures, a reliability diagram, and temperature scaling.

Cross-validation with the one-standard-error rule prefers strong regularisation, and a strongly
regularised logistic regression is under-confident: a photo it gets right may sit at p = 0.7.
Temperature scaling (Guo et al., 2017) divides the logits by one number T fitted on out-of-fold
scores, as ``CalibratedClassifierCV(ensemble=False)`` fits its calibrator; for logistic regression
that is the same as dividing its coefficients by T, so predictions (the argmax) never change and
the saved model stays a plain scikit-learn estimator.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipelines.heads._linalg import as_logits, softmax  # noqa: F401 - part of this module's interface
from pipelines.report import pyplot, save_png

ECE_BINS = 15  # equal-width confidence bins, as Guo et al.


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by bin size.

    ``y`` holds class indices (columns of ``proba``). 0 is perfectly calibrated; 1 is always sure and wrong.
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    which = confidence_bins(confidence, bins)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def confidence_bins(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """The equal-width bin (0 to bins - 1) of each confidence; a confidence of exactly 1 is in the last."""
    return np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)


def brier_score(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean squared distance between the probability vector and the one-hot truth (0 best, 2 worst)."""
    onehot = np.eye(proba.shape[1])[y]
    return float(((proba - onehot) ** 2).sum(axis=1).mean())


def calibration_report(proba: np.ndarray, y: np.ndarray) -> dict:
    return {"ece": expected_calibration_error(proba, y), "brier": brier_score(proba, y)}


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 that minimises the negative log-likelihood of ``softmax(logits / T)`` on labels ``y``."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y].mean())

    found = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded")
    return float(np.exp(found.x))


def apply_temperature(classifier, temperature: float):
    """``classifier`` (a fitted linear model with ``coef_``) with its logits divided by ``temperature``."""
    classifier.coef_ = classifier.coef_ / temperature
    classifier.intercept_ = classifier.intercept_ / temperature
    return classifier


def calibrate_from_folds(logits: np.ndarray, y: np.ndarray) -> dict:
    """Temperature fitted on out-of-fold ``logits``, with calibration before and after on the same scores.

    The temperature stays 1 when it would not lower the out-of-fold expected calibration error
    (the probabilities are honest already), and when every out-of-fold prediction is right: such
    scores cannot say how often the model errs, and the likelihood would sharpen the probabilities
    towards certainty without limit (T -> 0 on a few dozen separable items). The "after" figures
    are measured on the scores T was fitted to, so they flatter it; ``xfer evaluate`` measures
    calibration on held-out data.
    """
    temperature = fit_temperature(logits, y)
    before = calibration_report(softmax(logits), y)
    after = calibration_report(softmax(logits / temperature), y)
    error_free = bool((logits.argmax(axis=1) == y).all())
    if after["ece"] >= before["ece"] or error_free:  # nothing to correct, or nothing to measure it on
        temperature, after = 1.0, before
    return {
        "temperature": temperature,
        "out_of_fold_before": before,
        "out_of_fold_after": after,
        "items": int(len(y)),
    }


def plot_reliability(proba: np.ndarray, y: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin (bars), with the diagonal and bin counts."""

    plt = pyplot()
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, ECE_BINS + 1)
    which = confidence_bins(confidence)
    counts = np.bincount(which, minlength=ECE_BINS)
    accuracy = np.array([correct[which == b].mean() if counts[b] else 0.0 for b in range(ECE_BINS)])
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    ax.bar(edges[:-1], accuracy, width=1 / ECE_BINS, align="edge", edgecolor="black", alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    report = calibration_report(proba, y)
    ax.set_title(f"{title}\nECE {report['ece']:.3f}, Brier {report['brier']:.3f}, {len(y)} items".strip(), fontsize=10)
    hist.bar(edges[:-1], counts, width=1 / ECE_BINS, align="edge", edgecolor="black", color="grey")
    hist.set_xlabel("confidence (highest class probability)")
    hist.set_ylabel("items")
    hist.set_xlim(0, 1)
    fig.tight_layout()
    return save_png(fig, path)
