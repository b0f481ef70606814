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
    if precision in ("fp32", "int8"):  # int8 quantises the weights instead (see ``quantize``)
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def quantize(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """int8 dynamic quantisation of a model's Linear layers (weights int8, activations quantised on the fly).

    A CPU technique: on this project's 2-core CPU it ran the MiniLM encoder about 3x faster than fp32.
    """
    if device.type != "cpu":
        raise FeaturizerError("precision int8 (dynamic quantisation) runs on the CPU only; use bf16 or fp16 on a GPU")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def set_threads() -> None:
    """``FEATURIZER_THREADS`` sets the threads of the forward pass; by default PyTorch uses every core.

    Measured on 2 cores (flowers12, 720 images): 2 threads beside a decoding worker beat 1 thread
    by 1.2x (bf16) to 1.35x (fp32), so decoding workers do not take cores from the network.
    """
    import os

    if os.environ.get("FEATURIZER_THREADS"):
        torch.set_num_threads(int(os.environ["FEATURIZER_THREADS"]))
