"""The one rule for keeping a candidate over the plain head when no test label may be seen.

Semi-supervised heads (``choose_semi``) and adaptation (``choose_adaptation``) both score their
candidates on the same held-out labelled items as the plain head. A candidate is kept only when it
is right more often than the plain head by more than noise: the mean of the paired per-item
differences must exceed twice its standard error and ``MIN_GAIN``. Per item, not per fold: five
fold means can agree by chance (on TREC a fold-level rule kept self-training where it lost,
BENCHMARKS.md), while a few hundred paired items give a steady error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_GAIN = 0.01  # accuracy a candidate must add on the held-out items, beyond twice the standard error


@dataclass(frozen=True)
class Verdict:
    """Whether a candidate beats the plain head beyond noise, by how much and with what error."""

    kept: bool
    gain: float
    noise: float


def beats_plain(candidate: np.ndarray, plain: np.ndarray, min_gain: float = MIN_GAIN) -> Verdict:
    """Compare per-item scores (1 right, 0 wrong) of a candidate and the plain head on the same items."""
    d = np.asarray(candidate, np.float64) - np.asarray(plain, np.float64)
    if len(d) < 2:
        return Verdict(False, float(d.mean()) if len(d) else 0.0, float("inf"))
    noise = float(d.std(ddof=1) / np.sqrt(len(d)))
    gain = float(d.mean())
    return Verdict(gain > max(2 * noise, min_gain), gain, noise)
