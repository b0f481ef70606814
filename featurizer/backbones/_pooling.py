"""Pooling of layer outputs into one vector per item.

CNN maps (N, C, H, W): average, max or GeM (generalised mean, p=3). Token states (N, T, D):
mean over the attention mask, the CLS token, or max over real tokens. Vectors pass through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: the ONNX runtime pools in numpy and never loads torch
    import torch

GEM_P = 3.0
GEM_EPS = 1e-6


def pool(x: torch.Tensor, method: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One float32 vector per item from a layer output, by ``method``."""
    import torch

    x = x.float()
    if x.ndim == 2 or method == "model":
        return x.flatten(1)
    if x.ndim == 4:
        if method == "avg":
            return x.mean(dim=(2, 3))
        if method == "max":
            return x.amax(dim=(2, 3))
        if method == "gem":
            return x.clamp(min=GEM_EPS).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
    if x.ndim == 3:
        method = {"avg": "mean"}.get(method, method)  # image poolings on token outputs (ViTs)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        mask = mask.to(x.device).bool().unsqueeze(-1)
        if method == "mean":
            return (x * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        if method == "cls":
            return x[:, 0]
        if method == "max":
            return x.masked_fill(~mask, float("-inf")).amax(dim=1)
    raise ValueError(f"pooling {method!r} does not apply to a layer output of shape {tuple(x.shape)}")


def pool_array(x: np.ndarray, method: str, mask: np.ndarray | None = None) -> np.ndarray:
    """``pool`` for outputs held in numpy (the ONNX runtime, which never loads torch): the same methods and results."""
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2 or method == "model":
        return x.reshape(len(x), -1)
    if x.ndim == 4:
        if method == "avg":
            return x.mean(axis=(2, 3))
        if method == "max":
            return x.max(axis=(2, 3))
        if method == "gem":
            return np.power(np.power(np.maximum(x, GEM_EPS), GEM_P).mean(axis=(2, 3)), 1.0 / GEM_P)
    if x.ndim == 3:
        method = {"avg": "mean"}.get(method, method)
        real = (np.ones(x.shape[:2], bool) if mask is None else mask.astype(bool))[:, :, None]
        if method == "mean":
            return (x * real).sum(axis=1) / np.maximum(real.sum(axis=1), 1).astype(np.float32)
        if method == "cls":
            return np.ascontiguousarray(x[:, 0])
        if method == "max":
            return np.where(real, x, -np.inf).max(axis=1).astype(np.float32)
    raise ValueError(f"pooling {method!r} does not apply to a layer output of shape {x.shape}")
