"""Where and how the network runs: device choice and mixed precision."""

from __future__ import annotations

import contextlib

import torch

from featurizer._errors import FeaturizerError
from featurizer._spec import check_precision

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """The device to run on: ``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise FeaturizerError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), not {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FeaturizerError("device 'cuda' asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise FeaturizerError(
            "device 'mps' asked for, but this PyTorch has no Apple MPS support; use --device cpu or auto"
        )
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """A mixed-precision context for ``bf16``/``fp16``; a no-op for ``fp32``."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()
