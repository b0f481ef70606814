"""Quantised vectors: int8 with per-dimension calibration ranges, or one bit per dimension.

int8 (as sentence-transformers' ``quantize_embeddings``): each dimension's range [lo, hi], taken
from the vectors being quantised, is cut into 256 steps; 4x smaller than float32. binary: one bit
per dimension, packed eight to a byte, 32x smaller: whether the value is above that dimension's
median over the vectors, read back as the mean of the values on its side (a one-bit scalar
quantiser). sentence-transformers takes the sign and reads -1/+1: for vectors that are not centred,
such as a CNN's pooled activations (all >= 0), the sign sets every bit (the digits' head fell to
chance), and -1/+1 loses each dimension's scale, which rescoring needs. The ``info`` dict (method,
dim, ranges or medians and side means) is stored with the codes wherever they go (feature file,
Parquet, NumPy folder, index), and ``dequantize`` turns codes back into float32 vectors, so every
reader of vectors reads quantised files as it reads float ones.
"""

from __future__ import annotations

import json

import numpy as np

from featurizer.base import InputError

QUANTIZATIONS = ("int8", "binary")


def check_quantization(method: str | None) -> str | None:
    """``method`` if it names a quantisation (or is None: float32 kept); one clear error otherwise."""
    if method is not None and method not in QUANTIZATIONS:
        raise InputError(f"--quantize is one of {', '.join(QUANTIZATIONS)}, not {method!r}")
    return method


def quantize(X: np.ndarray, method: str, calibration: dict | None = None) -> tuple[np.ndarray, dict]:
    """(codes, info) of the float vectors ``X`` (items x dim), calibrated on ``X`` itself or, given
    ``calibration`` (another file's info), on the vectors that made it: test vectors quantised with
    their training set's ranges mean what the training codes mean."""
    check_quantization(method)
    X = np.asarray(X, dtype=np.float32)
    dim = int(X.shape[1])
    if calibration is not None and (calibration["method"] != method or calibration["dim"] != dim):
        raise InputError(
            f"the calibration is for {calibration['dim']}-d {calibration['method']} codes, not {dim}-d {method}"
        )
    if method == "binary":
        if calibration is None:
            calibration = {"method": "binary", "dim": dim, **binary_calibration(X)}
        return pack_bits(X, np.asarray(calibration["thresholds"], np.float32)), calibration
    if calibration is not None:
        lo, hi = np.asarray(calibration["lo"], np.float32), np.asarray(calibration["hi"], np.float32)
    else:
        lo = X.min(axis=0) if len(X) else np.zeros(dim, np.float32)
        hi = X.max(axis=0) if len(X) else np.ones(dim, np.float32)
    step = _steps(lo, hi)
    codes = np.clip(np.rint((X - lo) / step) - 128, -128, 127).astype(np.int8)
    return codes, {"method": "int8", "dim": dim, "lo": lo.tolist(), "hi": hi.tolist()}


def binary_calibration(X: np.ndarray) -> dict[str, list[float]]:
    """Each dimension's median over ``X`` (its bit is set above it: half the items each side) and the
    mean of the values below and above it (what a bit reads back as)."""
    X = np.asarray(X, dtype=np.float32)
    if not len(X):
        zeros = [0.0] * X.shape[1]
        return {"thresholds": zeros, "below": zeros, "above": zeros}
    t = np.median(X, axis=0).astype(np.float32)
    up = t < X
    n_up = up.sum(axis=0)
    X64 = X.astype(np.float64)  # sums of float32 can round a side's mean past the median
    above = np.where(n_up > 0, (X64 * up).sum(axis=0) / np.maximum(n_up, 1), t)
    below = np.where(n_up < len(X), (X64 * ~up).sum(axis=0) / np.maximum(len(X) - n_up, 1), t)
    above, below = np.maximum(above, t), np.minimum(below, t)
    return {
        "thresholds": t.tolist(),
        "below": below.astype(np.float32).tolist(),
        "above": above.astype(np.float32).tolist(),
    }


def pack_bits(X: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The bits of ``X`` above ``thresholds``, eight dimensions to a byte."""
    return np.packbits(np.asarray(X) > thresholds, axis=1)


def dequantize(codes: np.ndarray, info: dict) -> np.ndarray:
    """The float32 vectors that ``codes`` stand for (int8: the grid point of each step; binary: the mean
    of the values on the bit's side of the median)."""
    dim = int(info["dim"])
    if info["method"] == "binary":
        bits = np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=1, count=dim).astype(bool)
        return np.where(bits, np.asarray(info["above"], np.float32), np.asarray(info["below"], np.float32))
    if info["method"] != "int8":
        raise InputError(f"unknown quantisation {info['method']!r} (this featurizer reads {', '.join(QUANTIZATIONS)})")
    lo, hi = np.asarray(info["lo"], np.float32), np.asarray(info["hi"], np.float32)
    step = _steps(lo, hi)
    return lo + (codes.astype(np.float32) + 128.0) * step


def _steps(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Each dimension's step: a 255th of its range (1 for a constant one; never below float32's tiniest normal)."""
    step = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
    return np.maximum(step, np.finfo(np.float32).tiny)


def info_json(info: dict) -> str:
    return json.dumps(info)


def read_info(stored: str | bytes | dict) -> dict:
    """The ``info`` stored beside quantised codes (as JSON, or already parsed), checked enough to dequantise them."""
    info = stored if isinstance(stored, dict) else json.loads(stored)
    if not isinstance(info, dict) or info.get("method") not in QUANTIZATIONS or not isinstance(info.get("dim"), int):
        raise InputError("damaged quantisation metadata: it names no method and dimension")
    needs = ("lo", "hi") if info["method"] == "int8" else ("thresholds", "below", "above")
    if any(not isinstance(info.get(k), list) or len(info[k]) != info["dim"] for k in needs):
        raise InputError(f"damaged quantisation metadata: {info['method']} codes need {', '.join(needs)} per dimension")
    return info
