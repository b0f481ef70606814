"""The faster modes stay close to fp32 and are cached apart from it; JPEG draft decoding is faithful."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from featurizer import Extractor, featurize
from featurizer.inputs._inputs import texts_as_inputs
from featurizer.inputs._preprocess import ImageTransform, load_image


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def vectors(extractor: Extractor, inputs) -> np.ndarray:
    keys, errors = extractor.keys(inputs)
    assert not errors
    extractor.ensure(inputs, keys)
    return extractor.vectors(extractor.spec.layers[0], keys)


@pytest.mark.parametrize(("precision", "floor"), [("bf16", 0.999), ("int8", 0.93)])
def test_text_modes_are_close_to_fp32_and_cached_separately(questions, cache_dir, precision, floor):
    inputs = texts_as_inputs(questions)
    exact = Extractor.for_model("minilm", cache_dir=cache_dir, progress=False)
    fast = Extractor.for_model("minilm", cache_dir=cache_dir, precision=precision, progress=False)
    assert fast.spec.layer_key("layer.5") != exact.spec.layer_key("layer.5")
    similarity = cosine(vectors(exact, inputs), vectors(fast, inputs))
    assert similarity.min() > floor  # int8 moves vectors more (per-tensor scales: < 0.9); speed.py reports accuracy


def test_bf16_images_are_close_to_fp32(photo_dir, cache_dir):
    a = featurize(photo_dir, cache_dir=cache_dir, progress=False, output=cache_dir / "a.h5")
    b = featurize(photo_dir, cache_dir=cache_dir, progress=False, output=cache_dir / "b.h5", precision="bf16")
    assert a.n_computed == b.n_computed == 12  # a different spec: nothing shared
    from featurizer import FeatureFile

    with FeatureFile(cache_dir / "a.h5") as fa, FeatureFile(cache_dir / "b.h5") as fb:
        assert cosine(fa.read(), fb.read()).min() > 0.99


def test_jpeg_draft_decodes_large_photos_small_and_keeps_their_class(tmp_path, cache_dir):
    big = tmp_path / "palace.jpg"
    Image.fromarray(load_sample_image("china.jpg")).resize((2560, 1708), Image.Resampling.BICUBIC).save(big, quality=95)
    assert load_image(big).size == (2560, 1708)
    drafted = load_image(big, draft_short_side=256)
    assert drafted.size == (640, 427)  # 1/4 scale: the smallest that keeps the short side >= 256
    extractor = Extractor.for_model("efficientnet_lite0", cache_dir=cache_dir, progress=False, runtime="torch")
    assert extractor.spec.preprocessing["jpeg_draft"] is True
    full = ImageTransform({**extractor.spec.preprocessing, "jpeg_draft": False})(big)
    fast = ImageTransform(extractor.spec.preprocessing)(big)
    model = extractor._load().model
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.stack([full, fast])))
    assert logits.argmax(1).tolist() == [698, 698]  # palace, either way
    assert cosine(logits[:1].numpy(), logits[1:].numpy())[0] > 0.98


# --- runtime 'auto' ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "precision", "device", "expected"),
    [
        ("efficientnet_lite0", "fp32", "cpu", "onnx"),
        ("minilm", "fp32", "cpu", "onnx"),
        ("minilm", "int8", "cpu", "onnx"),  # the smoothed ONNX int8, not torch's lossier one
        ("efficientnet_lite0", "int8", "cpu", "torch"),  # ONNX Runtime runs images at fp32 only
        ("minilm", "bf16", "cpu", "torch"),
        ("efficientnet_lite0", "fp32", "cuda", "torch"),
        ("minilm", "fp32", "mps", "torch"),
    ],
)
def test_runtime_auto_takes_onnx_runtime_where_it_runs_the_work(model, precision, device, expected):
    from featurizer import FeatureOptions, resolve_spec

    spec = resolve_spec(FeatureOptions(model, precision=precision), None, device)
    assert spec.runtime == expected  # the spec records what ran, so caches of the two never mix


def test_runtime_auto_falls_back_to_torch_without_onnx_runtime_or_for_zoo_models(monkeypatch):
    import importlib.util

    from featurizer.backbones._resolve import resolve_runtime
    from featurizer.spec._registry import get_config
    from featurizer.spec._weights import WeightsRef, default_weights

    lite0 = get_config("efficientnet_lite0")
    weights = default_weights(lite0)
    assert resolve_runtime("auto", "fp32", lite0, weights, "cpu") == "onnx"
    zoo = get_config("timm/resnet18")  # weights downloaded by timm: not tested to export, so torch
    assert resolve_runtime("auto", "fp32", zoo, WeightsRef("pretrained", "resnet18"), "cpu") == "torch"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    assert resolve_runtime("auto", "fp32", lite0, weights, "cpu") == "torch"


def test_a_default_run_on_a_cpu_imports_no_torch(photo_dir, tmp_path):
    """The default runtime on a CPU is ONNX Runtime, which starts without PyTorch (once the graph exists)."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""}  # this machine's 'no GPU', wherever it runs
    featurize(photo_dir, output=tmp_path / "warm.h5", cache_dir=tmp_path / "c", progress=False, device="cpu")
    code = "import sys, cli\ntry:\n    cli.main()\nfinally:\n    print('torch' in sys.modules, file=sys.stderr)\n"
    args = ["featurize", str(photo_dir), "-o", str(tmp_path / "f.h5"), "--cache-dir", str(tmp_path / "d"), "-q"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr
    from featurizer import FeatureFile

    with FeatureFile(tmp_path / "f.h5") as f:
        assert f.spec.runtime == "onnx" and f.layers == ["pre_logits", "blocks.6", "blocks.4"]
