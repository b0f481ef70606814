"""Augmented views: deterministic per image, cached under their own spec, grouped in CV, averaged at test time."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from featurizer import Extractor, FeatureFile, featurize
from featurizer.inputs._augment import view_spec
from featurizer.inputs._preprocess import ImageTransform
from pipelines import _fit, fit, load_model, save_model
from tests.test_flows import xfer


def test_a_view_depends_on_the_pixels_and_the_view_not_on_the_path(photo_dir, tmp_path):
    photo = sorted(photo_dir.rglob("*.jpg"))[0]
    copy = tmp_path / "elsewhere.jpg"
    shutil.copy(photo, copy)
    spec = Extractor.for_model("efficientnet_lite0", cache_dir=tmp_path).spec
    plain = ImageTransform(spec.preprocessing)(photo)
    one, two = (ImageTransform(view_spec(spec, v).preprocessing) for v in (1, 2))
    assert one(photo).shape == plain.shape == (3, 224, 224)
    np.testing.assert_array_equal(one(photo), one(copy))  # the same photo gives the same view anywhere
    assert not np.allclose(one(photo), two(photo)) and not np.allclose(one(photo), plain)
    assert view_spec(spec, 1).layer_key("pre_logits") != spec.layer_key("pre_logits")  # cached apart


def test_featurize_augment_stores_views_and_a_second_run_computes_nothing(photo_dir, cache_dir, tmp_path):
    first = featurize(photo_dir, None, "-1", output=tmp_path / "a.h5", cache_dir=cache_dir, progress=False, augment=2)
    assert first.views == 2 and "2 augmented views" in first.summary()
    with FeatureFile(tmp_path / "a.h5") as f:
        views, plain = f.read_views("pre_logits"), f.read()
        assert f.views == 2 and views.shape == (2, 12, 1280)
    assert not np.allclose(views[0], plain) and not np.allclose(views[0], views[1])
    similarity = (views[0] * plain).sum(1) / np.linalg.norm(views[0], axis=1) / np.linalg.norm(plain, axis=1)
    assert similarity.min() > 0.3  # the same photo, cropped and flipped
    again = featurize(photo_dir, None, "-1", output=tmp_path / "b.h5", cache_dir=cache_dir, progress=False, augment=2)
    assert again.n_computed == 0
    with FeatureFile(tmp_path / "b.h5") as f:
        np.testing.assert_array_equal(f.read_views("pre_logits"), views)


def test_augment_is_refused_for_texts(tmp_path):
    (tmp_path / "q.txt").write_text("What is the capital of France ?\n")
    result = xfer("featurize", tmp_path / "q.txt", "--augment", "2", "-o", tmp_path / "q.h5", ok=False)
    assert result.exit_code == 1 and "views of images" in result.output


def test_cross_validation_keeps_every_image_and_its_views_on_one_side(monkeypatch):
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 10)
    X = rng.normal(size=(30, 4)) + (y == "a")[:, None]
    views = X[None] + rng.normal(scale=0.1, size=(3, 30, 4))
    seen = []
    real = _fit.grid_search

    def spy(estimator, grid, X_all, y_all, seed, n_jobs, folds=None, weights=None):
        seen.append((len(X_all), folds))
        return real(estimator, grid, X_all, y_all, seed, n_jobs, folds, weights)

    monkeypatch.setattr(_fit, "grid_search", spy)
    searched = _fit.cross_validate(X, y, "logreg", views=views)
    ((rows, folds),) = seen
    assert rows == 120 and searched.oof_y is not None
    for train, test in folds:
        assert test.max() < 30  # only originals are scored
        assert not set(train % 30) & set(test)  # no image on both sides, through any of its views
        assert len(train) == 4 * (30 - len(test))  # every view of every training image


def test_fit_trains_on_views_and_predict_tta_averages_them(photo_dir, tmp_path):
    train = tmp_path / "train.h5"
    featurize(photo_dir, None, "-1", output=train, cache_dir=tmp_path / "c", progress=False, augment=2)
    result = fit(train, "logreg")
    model_path = save_model(result.model, result.card, tmp_path / "m.skops")
    out = xfer("predict", model_path, photo_dir, "--tta", "2", "-o", tmp_path / "p.csv", "--cache-dir", tmp_path / "c")
    assert "12 predictions" in out.output
    model, _ = load_model(model_path)
    head = model.named_steps["head"]
    with FeatureFile(train) as f:
        expected = (head.predict_proba(f.read()) + sum(head.predict_proba(v) for v in f.read_views("pre_logits"))) / 3
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    got = np.array([[float(row[f"p_{c}"]) for c in head.classes_] for row in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    refused = xfer("predict", model_path, train, "--tta", "3", "-o", tmp_path / "q.csv", ok=False)
    assert refused.exit_code == 1 and "holds 2 augmented views per image, not 3" in refused.output


@pytest.mark.parametrize("views", [0, 2])
def test_evaluate_reports_with_and_without_tta(photo_dir, tmp_path, views):
    train = tmp_path / "train.h5"
    featurize(photo_dir, None, "-1", output=train, cache_dir=tmp_path / "c", progress=False, augment=2)
    result = fit(train, "prototype")
    model_path = save_model(result.model, result.card, tmp_path / "m.skops")
    report = tmp_path / "r.json"
    out = xfer("evaluate", model_path, train, "--tta", str(views), "-o", report).output
    assert "accuracy" in out and report.exists()
