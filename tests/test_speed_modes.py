"""The faster modes stay close to fp32 and are cached apart from it; JPEG draft decoding is faithful."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from featurizer import Extractor, featurize
from featurizer._inputs import texts_as_inputs
from featurizer._preprocess import ImageTransform, load_image


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
    extractor = Extractor.for_model("efficientnet_lite0", cache_dir=cache_dir, progress=False)
    assert extractor.spec.preprocessing["jpeg_draft"] is True
    full = ImageTransform({**extractor.spec.preprocessing, "jpeg_draft": False})(big)
    fast = ImageTransform(extractor.spec.preprocessing)(big)
    model = extractor._load().model
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.stack([full, fast])))
    assert logits.argmax(1).tolist() == [698, 698]  # palace, either way
    assert cosine(logits[:1].numpy(), logits[1:].numpy())[0] > 0.98
