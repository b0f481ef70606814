"""Small row-wise operations the heads, scores and active learning share."""

from __future__ import annotations

import numpy as np


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
