"""Transferability scores: how well a layer's features suit a labelled task, without training a head.

``logme`` is LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021): the log marginal likelihood (evidence) of a Bayesian linear model from the
features to each one-hot class column, with its two hyperparameters set by MacKay's fixed point,
averaged over classes and items. One SVD per candidate, no cross-validation. It is reported as a
gain over the evidence of the same model with no features (the classes' frequencies alone), so 0
is chance and more is better.

``loo_nearest_centroid`` is a model-free check: leave-one-out accuracy of the nearest class mean
(SimpleShot: centred and L2-normalised), computed in closed form.
"""

from __future__ import annotations

import numpy as np

FIXED_POINT_STEPS = 50


def _class_columns(y: np.ndarray) -> np.ndarray:
    classes, index = np.unique(np.asarray(y), return_inverse=True)
    return np.eye(len(classes))[index]


def logme(X: np.ndarray, y: np.ndarray) -> float:
    """LogME evidence per item, minus that of the featureless model: > 0 when the features explain the labels.

    Features and one-hot targets are centred (an intercept), so what is scored is what the features
    add to the class frequencies; both models then live in the n - 1 dimensions orthogonal to the
    constant (counting all n would let a model with d >= n - 1 features claim infinite evidence).
    """
    return logme_of_targets(X, _class_columns(y))


def logme_of_targets(X: np.ndarray, targets: np.ndarray) -> float:
    """LogME of the columns of ``targets`` (items x columns: one-hot classes, 0/1 label sets, or
    standardised numbers, as the paper scores regression), averaged over the columns."""
    f = np.asarray(X, dtype=np.float64)
    f = f - f.mean(axis=0)
    n, d = f.shape
    n -= 1  # centring uses up one dimension: features and targets live in the other n - 1
    targets = np.asarray(targets, dtype=np.float64).reshape(len(f), -1)
    targets = targets - targets.mean(axis=0)
    sigma, projections = _spectrum(f, targets)
    if not len(sigma) or n < 1:
        return float("-inf")  # constant features: they explain nothing, and rank last
    gains = []
    for target, projected in zip(targets.T, projections.T):
        energy = float(target @ target)
        if energy <= 0:
            continue
        gains.append((_evidence(projected**2, sigma, energy, n, d) - _featureless_evidence(energy, n)) / n)
    score = float(np.mean(gains)) if gains else float("-inf")
    return score if np.isfinite(score) else float("-inf")


def _spectrum(f: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The squared singular values of the centred features ``f`` that are not zero, and the targets
    projected on the matching left singular vectors (directions x columns).

    With at least twice as many items as dimensions, from the eigenvectors of the d x d Gram
    matrix (u = f v / s): on TREC's 5,452 x 1,152 concatenation 3x faster than the SVD of f, for
    the same scores to 1e-15; otherwise from the SVD (its precision on the small singular values).
    """
    n, d = f.shape
    if n >= 2 * d:
        eigenvalues, v = np.linalg.eigh(f.T @ f)
        keep = eigenvalues > eigenvalues.max(initial=0.0) * 1e-12
        sigma, v = eigenvalues[keep], v[:, keep]
        return sigma, (v.T @ (f.T @ targets)) / np.sqrt(sigma)[:, None]
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max(initial=0.0) * 1e-10
    return s[keep] ** 2, u[:, keep].T @ targets


def _evidence(x2: np.ndarray, sigma: np.ndarray, energy: float, n: int, d: int) -> float:
    """log p(target | features) with alpha (prior precision) and beta (noise precision) at MacKay's
    fixed point; ``x2``: the target's squared projections on the feature directions."""
    outside = max(energy - float(x2.sum()), 0.0)  # the part of the target no feature direction reaches
    alpha, beta = 1.0, 1.0
    for _ in range(FIXED_POINT_STEPS):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
        res2 = float((x2 * (t / (sigma + t)) ** 2).sum()) + outside
        alpha = gamma / (m2 + 1e-12)
        beta = max(n - gamma, 1e-12) / (res2 + 1e-12)
        if abs(alpha / beta - t) <= 1e-4 * t:
            break
    t = alpha / beta
    m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
    res2 = float((x2 * (t / (sigma + t)) ** 2).sum()) + outside
    log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
    return (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - beta / 2 * res2
        - alpha / 2 * m2
        - log_det / 2
        - n / 2 * np.log(2 * np.pi)
    )


def _featureless_evidence(energy: float, n: int) -> float:
    """log p(target) when it is noise around zero with the best noise precision beta = n / energy."""
    return -n / 2 * (1 + np.log(2 * np.pi * energy / n))


def loo_nearest_centroid(X: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out accuracy of the nearest class mean on centred, L2-normalised features.

    Each item is compared with its own class's mean computed without it; an item alone in its
    class has nothing to be compared with and counts as wrong.
    """
    f = np.asarray(X, dtype=np.float64)
    f = f - f.mean(axis=0)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    classes, index = np.unique(np.asarray(y), return_inverse=True)
    counts = np.bincount(index, minlength=len(classes)).astype(np.float64)
    sums = np.zeros((len(classes), f.shape[1]))
    np.add.at(sums, index, f)
    means = sums / counts[:, None]
    distance = -2 * f @ means.T + (means**2).sum(axis=1)  # + |f|^2, the same for every class
    rows = np.arange(len(f))
    own = counts[index]
    with np.errstate(divide="ignore", invalid="ignore"):
        left_out = (sums[index] - f) / (own - 1)[:, None]
        distance[rows, index] = -2 * (f * left_out).sum(axis=1) + (left_out**2).sum(axis=1)
    distance[rows, index] = np.where(own > 1, distance[rows, index], np.inf)
    return float((distance.argmin(axis=1) == index).mean())
