"""The GPU path's decisions, checked on any machine: devices, kernel settings, memory in flight, Ray GPUs.

CI has no GPU, so these tests make PyTorch report one where a decision depends on it; what runs
on the GPU itself is measured by ``python benchmarks/speed.py --sections gpu`` on a machine with one.
"""

from __future__ import annotations

import pytest
import torch

from featurizer import Extractor, FeaturizerError
from featurizer.backbones._runtime import is_out_of_memory, kernel_flags, resolve_device
from featurizer.base._errors import InputError
from featurizer.inputs._decode import DecodedBatches
from featurizer.spec._modes import auto_device_type, validate


@pytest.fixture
def one_gpu(monkeypatch):
    """PyTorch reports one CUDA GPU (nothing is run on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_picks_the_gpu_but_int8_stays_on_the_cpu(one_gpu, cache_dir):
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("auto", auto_device_type("bf16", "torch")).type == "cuda"
    assert resolve_device("auto", auto_device_type("int8", "torch")).type == "cpu"  # a CPU technique
    int8 = Extractor.for_model("minilm", precision="int8", cache_dir=cache_dir, progress=False)
    assert int8._resolve_device().type == "cpu"
    bf16 = Extractor.for_model("minilm", precision="bf16", cache_dir=cache_dir, progress=False)
    assert bf16.mode.device_type == "cuda" and bf16.mode.default_batch_size == 256


def test_gpu_numbers_are_checked_against_the_machine(one_gpu):
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(FeaturizerError, match=r"1 CUDA GPU\(s\), cuda:0 to cuda:0"):
        resolve_device("cuda:1")
    for name in ("cuda:x", "cuda:"):
        with pytest.raises(FeaturizerError, match="device must be one of"):
            resolve_device(name)


def test_fp32_on_a_gpu_is_exact_and_the_settings_are_scoped():
    before = (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    fp32, bf16 = (validate(p, "torch", "image", "cuda") for p in ("fp32", "bf16"))
    with kernel_flags(torch.device("cuda"), fp32):
        assert torch.backends.cudnn.enabled and torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32  # TF32 would move fp32 vectors by ~1e-3
    with kernel_flags(torch.device("cuda"), bf16):
        assert torch.backends.cudnn.allow_tf32
    with kernel_flags(torch.device("cpu"), fp32):
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == before[1:]
    assert (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == before


def test_cuda_out_of_memory_is_recognised():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


@pytest.mark.parametrize(("batch_size", "in_flight"), [(32, 2 * 4), (64, 2 * 2), (256, 2 * 2)])
def test_images_decoded_ahead_are_bounded_for_gpu_sized_batches(batch_size, in_flight):
    sources = [f"missing-{i}.jpg" for i in range(batch_size * 20)]
    batches = DecodedBatches(sources, str, batch_size, workers=2)
    try:
        assert len(batches._pending) == in_flight  # 256 x 2 x 2 images at most, not 256 x 2 x 4
    finally:
        batches.close()


def test_ray_engine_on_cuda_asks_for_gpus_before_starting(photo_dir, tmp_path):
    from featurizer.engine._embed import embed

    with pytest.raises(InputError, match="--gpus-per-actor"):
        embed(photo_dir, tmp_path / "out", engine="ray", device="cuda", cache_dir=tmp_path / "cache")
