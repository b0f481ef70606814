"""Small linear operations the heads, scores, adaptation and active learning share."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows (or the last axis) scaled to unit length, in float64; zero rows stay zero."""
    X = np.asarray(X, dtype=np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-12)


def as_logits(decision: np.ndarray) -> np.ndarray:
    """Decision scores as one column per class (a binary model's single column d becomes [0, d])."""
    decision = np.asarray(decision, dtype=np.float64)
    if decision.ndim == 1:
        return np.stack([np.zeros_like(decision), decision], axis=1)
    return decision


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class AffineMap(TransformerMixin, BaseEstimator):
    """``X @ matrix_ + offset_`` with fitted arrays: a feature map inside a saved pipeline (an
    adaptation's target side, the pool's principal subspace of a semi-supervised head).

    It holds arrays only, so skops rebuilds it without running code (a type in ``TRUSTED_TYPES``).
    """

    def __init__(self, method: str = "mean"):
        self.method = method

    def fit(self, X=None, y=None):  # the arrays are set by ``affine_map``; refitting keeps them
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float32) @ self.matrix_ + self.offset_


def affine_map(method: str, matrix: np.ndarray, offset: np.ndarray) -> AffineMap:
    """A fitted ``AffineMap`` named by the ``method`` that made it."""
    mapped = AffineMap(method)
    mapped.matrix_ = np.asarray(matrix, dtype=np.float32)
    mapped.offset_ = np.asarray(offset, dtype=np.float32)
    mapped.n_features_in_ = mapped.matrix_.shape[0]
    return mapped
