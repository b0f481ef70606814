"""Compute modes: which precision runs on which runtime, modality and device, declared once.

Every choice of arithmetic (``--precision``) x engine (``--runtime``) x modality x device type is a
row of ``MODES``; ``validate`` is the one check of a combination, and the row carries what the
forward pass needs (weight dtype, autocast dtype, quantisation). Call sites ask the row; they do
not branch on precision strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from featurizer.base import FeaturizerError

IMAGE, TEXT = "image", "text"
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
RUNTIMES = ("torch", "onnx", "numpy")  # numpy: static token tables, no network
CPU_RUNTIMES = ("onnx", "numpy")  # never on a GPU, and never import torch
DEVICE_TYPES = ("cpu", "cuda", "mps")
DEVICES = ("auto", *DEVICE_TYPES)

# Measured on 2 cores (EfficientNet-Lite0, 224 px), with glibc's default thresholds: PyTorch ran
# batches of 32 1.5-1.9x faster than 64 (fp32 69 vs 36 img/s; bf16 167 vs 110). With freed memory
# kept (_memory.py) they are level (107-117 img/s fp32); 32 still holds half the memory in flight.
CPU_IMAGE_BATCH = 32
CPU_TEXT_BATCH = 64
GPU_BATCH = 256
STATIC_BATCH = 1024  # a static table's batch costs a lookup: larger batches mean fewer cache shards


@dataclass(frozen=True)
class ComputeMode:
    """One allowed combination and what it means for the forward pass."""

    precision: str
    runtime: str
    modality: str
    device_type: str
    weight_dtype: str = "float32"  # torch dtype name of the weights (and so of float inputs)
    autocast_dtype: str | None = None  # torch autocast around the pass
    quantize: bool = False  # int8 dynamic quantisation of Linear layers (torch) or MatMuls (onnx)

    @property
    def exact(self) -> bool:
        """Whether the pass is full fp32 arithmetic (so GPU kernels must not trade accuracy for speed)."""
        return self.weight_dtype == "float32" and self.autocast_dtype is None and not self.quantize

    @property
    def default_batch_size(self) -> int:
        if self.runtime == "numpy":
            return STATIC_BATCH
        if self.device_type != "cpu":
            return GPU_BATCH
        return CPU_IMAGE_BATCH if self.modality == IMAGE else CPU_TEXT_BATCH


def _modes() -> dict[tuple[str, str, str, str], ComputeMode]:
    rows = []
    for modality in (IMAGE, TEXT):
        for device in DEVICE_TYPES:
            rows.append(ComputeMode("fp32", "torch", modality, device))
            rows.append(ComputeMode("bf16", "torch", modality, device, weight_dtype="bfloat16"))
            if device != "cpu":  # fp16 autocast on a CPU is slower than fp32: bf16 is the CPU's half precision
                rows.append(ComputeMode("fp16", "torch", modality, device, autocast_dtype="float16"))
        rows.append(ComputeMode("int8", "torch", modality, "cpu", quantize=True))  # a CPU technique
        rows.append(ComputeMode("fp32", "onnx", modality, "cpu"))
    rows.append(ComputeMode("int8", "onnx", TEXT, "cpu", quantize=True))  # smoothed MatMuls (see _onnx.py)
    rows.append(ComputeMode("fp32", "numpy", TEXT, "cpu"))  # a table lookup and a mean
    return {(m.precision, m.runtime, m.modality, m.device_type): m for m in rows}


MODES = _modes()


def validate(precision: str, runtime: str, modality: str, device_type: str) -> ComputeMode:
    """The mode of this combination, or one clear error that says what is allowed instead."""
    if precision not in PRECISIONS:
        raise FeaturizerError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if runtime not in RUNTIMES:
        raise FeaturizerError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    mode = MODES.get((precision, runtime, modality, device_type))
    if mode is not None:
        return mode
    devices = [d for d in DEVICE_TYPES if (precision, runtime, modality, d) in MODES]
    if devices:
        where = " or ".join("the CPU" if d == "cpu" else d.upper() if d == "cuda" else "Apple MPS" for d in devices)
        hint = "; use bf16 on a CPU" if precision == "fp16" else ""
        raise FeaturizerError(f"precision {precision} on runtime {runtime} runs on {where}, not {device_type}{hint}")
    allowed = sorted({p for (p, r, m, _) in MODES if r == runtime and m == modality}, key=PRECISIONS.index)
    raise FeaturizerError(f"runtime {runtime!r} runs {modality} models at {' or '.join(allowed)}, not {precision!r}")


def auto_device_type(precision: str, runtime: str) -> str | None:
    """The device type that ``--device auto`` must take for this combination (None: any, GPU first)."""
    if runtime in CPU_RUNTIMES or all(k[3] == "cpu" for k in MODES if k[0] == precision and k[1] == runtime):
        return "cpu"
    return None


def check_spec_mode(precision: str, runtime: str, modality: str) -> None:
    """Refuse a precision x runtime that runs a ``modality`` model on no device at all."""
    if not any(k[:3] == (precision, runtime, modality) for k in MODES):
        validate(precision, runtime, modality, "cpu")  # raises, naming what is allowed


def check_device_name(name: str) -> str:
    """``name`` if it names a device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); a clear error otherwise."""
    if name not in DEVICES and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise FeaturizerError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), not {name!r}")
    return name
