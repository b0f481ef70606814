"""Unsupervised domain adaptation of features: align the labelled source to an unlabelled target.

Each method is a pair of affine maps fitted on the source and target features: the head is fitted
on ``source_map(source)`` and predicts ``head(target_map(x))``, so the target map is saved inside
the model's pipeline and ``predict`` applies it to new target inputs.

- ``mean``: each domain centred on its own mean (the simplest baseline).
- ``coral`` (Sun, Feng and Saenko, 2016): the source is whitened with its covariance and recoloured
  with the target's, and moved to the target's mean; target features are left as they are.
  Covariances get a ridge of ``CORAL_RIDGE`` times their mean variance, since a few hundred items
  do not pin down a 1,280 x 1,280 covariance (the paper adds 1 to unit-variance features; 0.1 keeps
  more of the recolouring and was not tuned).
- ``subspace`` (Fernando et al., 2013): both domains projected on their own top principal
  directions, the source's basis rotated onto the target's (``Ps Ps^T Pt``).

``reweight`` changes no feature: ``importance_weights`` gives each source item the density ratio
p_target(x) / p_source(x), and the head is fitted with those sample weights (covariate-shift
correction, Shimodaira 2000). The ratio comes from a domain classifier (Bickel et al. 2009), not from
two kernel density estimates, which degenerate on a few hundred items in hundreds of dimensions.
"""

from __future__ import annotations

import numpy as np

from featurizer import FeaturizerError
from pipelines.heads import AffineMap, affine_map

ADAPT_MAPS = ("mean", "coral", "subspace")  # methods that map features (``fit_adaptation``)
CORAL_RIDGE = 0.1
SUBSPACE_DIMS = 64
IW_DIMS = 32  # principal directions the domain classifier of ``importance_weights`` sees
IW_CLIP = 10.0  # the largest importance weight, relative to their mean
IW_GRID = (0.01, 0.1, 1.0)  # C of the domain classifier


def _power(cov: np.ndarray, exponent: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.maximum(values, 1e-12) ** exponent) @ vectors.T


def fit_adaptation(
    method: str, source: np.ndarray, target: np.ndarray, ridge: float = CORAL_RIDGE, dims: int = SUBSPACE_DIMS
) -> tuple[AffineMap, AffineMap]:
    """(source map, target map) of ``method`` fitted on the two domains' features."""
    if method not in ADAPT_MAPS:
        raise FeaturizerError(f"a feature map must be one of {', '.join(ADAPT_MAPS)}, not {method!r}")
    if len(target) < 2:
        raise FeaturizerError("the target needs at least two items to adapt to")
    Xs, Xt = np.asarray(source, np.float64), np.asarray(target, np.float64)
    d = Xs.shape[1]
    mu_s, mu_t = Xs.mean(0), Xt.mean(0)
    identity = np.eye(d)
    if method == "mean":
        return affine_map(method, identity, -mu_s), affine_map(method, identity, -mu_t)
    if method == "coral":
        cs, ct = np.cov(Xs, rowvar=False), np.cov(Xt, rowvar=False)
        cs += ridge * np.trace(cs) / d * identity
        ct += ridge * np.trace(ct) / d * identity
        matrix = _power(cs, -0.5) @ _power(ct, 0.5)
        return affine_map(method, matrix, mu_t - mu_s @ matrix), affine_map(method, identity, np.zeros(d))
    k = max(1, min(dims, len(Xs) - 1, len(Xt) - 1, d))
    ps = np.linalg.svd(Xs - mu_s, full_matrices=False)[2][:k].T  # d x k, the top principal directions
    pt = np.linalg.svd(Xt - mu_t, full_matrices=False)[2][:k].T
    aligned = ps @ (ps.T @ pt)
    return affine_map(method, aligned, -mu_s @ aligned), affine_map(method, pt, -mu_t @ pt)


def importance_weights(source: np.ndarray, target: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per source item, its estimated density ratio p_target(x) / p_source(x), mean 1.

    A logistic regression (C from ``IW_GRID`` by out-of-fold log loss) tells the domains apart on the top
    ``IW_DIMS`` principal directions of both; its odds, times n_source / n_target, are the ratio.
    Cross-fitted: no item is weighted by a classifier that saw it. Weights are clipped at
    ``IW_CLIP`` times their mean, since a few near-certain odds would otherwise carry the whole fit.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xs, Xt = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if min(len(Xs), len(Xt)) < 3:
        raise FeaturizerError("reweighting needs at least three source and three target items")
    X = np.vstack([Xs, Xt])
    domain = np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]
    dims = max(1, min(IW_DIMS, X.shape[1], len(X) // 2))
    folds = StratifiedKFold(min(5, len(Xs), len(Xt)), shuffle=True, random_state=seed)
    best = None
    for C in IW_GRID:  # the C whose out-of-fold odds have the lowest log loss, and those odds
        classifier = make_pipeline(
            StandardScaler(), PCA(dims, random_state=seed), StandardScaler(), LogisticRegression(C=C, max_iter=2000)
        )
        q = cross_val_predict(classifier, X, domain, cv=folds, method="predict_proba")[:, 1]
        loss = log_loss(domain, q)
        if best is None or loss < best[0]:
            best = (loss, q[: len(Xs)])
    p = best[1]
    p = np.clip(p, 1e-6, 1 - 1e-6)
    weights = p / (1 - p) * len(Xs) / len(Xt)
    for _ in range(5):  # clip, renormalise, until the largest is within the clip
        weights = np.minimum(weights / weights.mean(), IW_CLIP)
    return weights / weights.mean()


def effective_size(weights: np.ndarray) -> float:
    """How many equally weighted items the weighted sample is worth (Kish): (sum w)^2 / sum w^2."""
    w = np.asarray(weights, np.float64)
    return float(w.sum() ** 2 / (w**2).sum())
