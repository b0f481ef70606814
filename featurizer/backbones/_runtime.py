"""Where and how the network runs: device choice and mixed precision."""

from __future__ import annotations

import contextlib
import itertools

from featurizer.base import FeaturizerError, lazy_module
from featurizer.spec import ComputeMode, check_device_name

torch = lazy_module("torch")  # imported when a network runs


def resolve_device(name: str = "auto", auto_type: str | None = None) -> torch.device:
    """The device to run on: ``auto`` picks CUDA, then Apple MPS, then the CPU; ``auto_type`` pins what auto means."""
    check_device_name(name)
    if name == "auto" and auto_type is not None:  # e.g. int8: dynamic quantisation is a CPU technique
        return torch.device(auto_type)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FeaturizerError("device 'cuda' asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if name.startswith("cuda:"):
        index, count = name[5:], torch.cuda.device_count()
        if not index.isdigit() or int(index) >= count:
            raise FeaturizerError(f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise FeaturizerError(
            "device 'mps' asked for, but this PyTorch has no Apple MPS support; use --device cpu or auto"
        )
    return torch.device(name)


def autocast(device: torch.device, mode: ComputeMode | None):
    """The mode's mixed-precision context (fp16 autocast); a no-op for modes whose weights carry the dtype."""
    if mode is None or mode.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, mode.autocast_dtype))


def kernel_flags(device: torch.device, mode: ComputeMode | None):
    """cuDNN settings for one forward pass on a GPU; a no-op elsewhere.

    fp32 means fp32: TF32 convolutions (cuDNN's default on Ampere and newer) would move vectors by
    about 1e-3 while they share a cache key with the CPU's exact ones; bf16/fp16 are the fast modes.
    ``benchmark`` picks the fastest convolution algorithm per input shape (image batches repeat
    theirs). Scoped to the pass, so the caller's own PyTorch settings are left as they were.
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    exact = mode is None or mode.exact
    return torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=not exact)


def is_out_of_memory(err: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch.OutOfMemoryError: 2.5 and newer
    return isinstance(err, oom) or "out of memory" in str(err).lower()


def quantize(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """int8 dynamic quantisation of a model's Linear layers (weights int8, activations quantised on the fly).

    A CPU technique. Weights get one scale per output channel: on this project's 2-core CPU it ran
    the MiniLM encoder 2x faster than fp32 and lost 0.6 points of TREC accuracy, where one scale per
    tensor lost 1.6 points (minimum cosine to fp32 0.95 against 0.89) and was no faster.
    """
    if device.type != "cpu":
        raise FeaturizerError("precision int8 (dynamic quantisation) runs on the CPU only; use bf16 or fp16 on a GPU")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})


def set_threads() -> None:
    """``FEATURIZER_THREADS`` sets the threads of the forward pass; by default PyTorch uses every core.

    Measured on 2 cores (flowers12, 720 images): 2 threads beside a decoding worker beat 1 thread
    by 1.2x (bf16) to 1.35x (fp32), so decoding workers do not take cores from the network.
    """
    import os

    if os.environ.get("FEATURIZER_THREADS"):
        torch.set_num_threads(int(os.environ["FEATURIZER_THREADS"]))


def fold_batch_norms(model: torch.nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution into that convolution's weights.

    The normalisation then costs nothing at run time: on this project's 2-core CPU it made
    EfficientNet-Lite0 1.5x faster in fp32 (40 -> 61 images/s, batch 64, channels_last) and
    bf16 likewise, with outputs equal to 1e-5. Pairs are found in module order (a BatchNorm
    registered right after a Conv2d of its width), so callers must check the outputs are unchanged.
    Returns the number folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = conv_norm_pairs(model)
    for conv, (name, norm) in pairs:
        fused = fuse_conv_bn_eval(conv.eval(), norm.eval())
        conv.weight, conv.bias = fused.weight, fused.bias
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, _after_norm(norm))
    return len(pairs)


def conv_norm_pairs(model: torch.nn.Module) -> list[tuple[torch.nn.Conv2d, tuple[str, torch.nn.Module]]]:
    """(convolution, (name, batch norm)) pairs that ``fold_batch_norms`` would fold.

    BatchNorms carrying hooks (tapped layers) and norm layers of unknown kinds are left alone.
    """
    from torch import nn

    pairs = []
    for (_, conv), (name, norm) in itertools.pairwise(model.named_modules()):
        if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
            continue
        if norm.num_features != conv.out_channels or norm.running_mean is None or _after_norm(norm) is None:
            continue
        if norm._forward_hooks or norm._forward_pre_hooks or conv._forward_hooks:
            continue
        pairs.append((conv, (name, norm)))
    return pairs


def _after_norm(norm: torch.nn.Module) -> torch.nn.Module | None:
    """What is left of a norm layer once its affine map lives in the convolution (None: unknown kind)."""
    from torch import nn

    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    if type(norm).__name__ == "BatchNormAct2d" and hasattr(norm, "act"):  # timm: batch norm, dropout, activation
        return nn.Sequential(norm.drop, norm.act)
    return None
