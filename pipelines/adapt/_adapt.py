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
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from featurizer import FeaturizerError

ADAPT_METHODS = ("mean", "coral", "subspace")
CORAL_RIDGE = 0.1
SUBSPACE_DIMS = 64


class AffineMap(TransformerMixin, BaseEstimator):
    """``X @ matrix_ + offset_`` with fitted arrays: the target side of an adaptation, inside a saved pipeline.

    It holds arrays only, so skops rebuilds it without running code (a type in ``TRUSTED_TYPES``).
    """

    def __init__(self, method: str = "mean"):
        self.method = method

    def fit(self, X=None, y=None):  # the arrays are set by ``fit_adaptation``; refitting keeps them
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float32) @ self.matrix_ + self.offset_


def _affine(method: str, matrix: np.ndarray, offset: np.ndarray) -> AffineMap:
    mapped = AffineMap(method)
    mapped.matrix_ = np.asarray(matrix, dtype=np.float32)
    mapped.offset_ = np.asarray(offset, dtype=np.float32)
    mapped.n_features_in_ = mapped.matrix_.shape[0]
    return mapped


def _power(cov: np.ndarray, exponent: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.maximum(values, 1e-12) ** exponent) @ vectors.T


def fit_adaptation(
    method: str, source: np.ndarray, target: np.ndarray, ridge: float = CORAL_RIDGE, dims: int = SUBSPACE_DIMS
) -> tuple[AffineMap, AffineMap]:
    """(source map, target map) of ``method`` fitted on the two domains' features."""
    if method not in ADAPT_METHODS:
        raise FeaturizerError(f"adaptation must be one of {', '.join(ADAPT_METHODS)}, not {method!r}")
    if len(target) < 2:
        raise FeaturizerError("the target needs at least two items to adapt to")
    Xs, Xt = np.asarray(source, np.float64), np.asarray(target, np.float64)
    d = Xs.shape[1]
    mu_s, mu_t = Xs.mean(0), Xt.mean(0)
    identity = np.eye(d)
    if method == "mean":
        return _affine(method, identity, -mu_s), _affine(method, identity, -mu_t)
    if method == "coral":
        cs, ct = np.cov(Xs, rowvar=False), np.cov(Xt, rowvar=False)
        cs += ridge * np.trace(cs) / d * identity
        ct += ridge * np.trace(ct) / d * identity
        matrix = _power(cs, -0.5) @ _power(ct, 0.5)
        return _affine(method, matrix, mu_t - mu_s @ matrix), _affine(method, identity, np.zeros(d))
    k = max(1, min(dims, len(Xs) - 1, len(Xt) - 1, d))
    ps = np.linalg.svd(Xs - mu_s, full_matrices=False)[2][:k].T  # d x k, the top principal directions
    pt = np.linalg.svd(Xt - mu_t, full_matrices=False)[2][:k].T
    aligned = ps @ (ps.T @ pt)
    return _affine(method, aligned, -mu_s @ aligned), _affine(method, pt, -mu_t @ pt)
