"""Unsupervised adaptation: the closed forms against direct computations, and a saved adapted pipeline."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pipelines import fit, load_model, save_model
from pipelines.adapt._adapt import fit_adaptation
from tests.test_flows import xfer


def _gaussians(seed: int = 0, n: int = 4000, d: int = 5):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    source = rng.normal(size=(n, d)) @ a + 3.0
    target = rng.normal(size=(n, d)) @ b - 1.0
    return source, target


def test_coral_maps_the_source_covariance_and_mean_onto_the_targets():
    source, target = _gaussians()
    source_map, target_map = fit_adaptation("coral", source, target, ridge=1e-9)
    mapped = source_map.transform(source)
    np.testing.assert_allclose(np.cov(mapped, rowvar=False), np.cov(target, rowvar=False), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(mapped.mean(0), target.mean(0), atol=1e-3)
    np.testing.assert_allclose(target_map.transform(target), target, atol=1e-4)  # the target is left alone


def test_coral_with_its_ridge_recolours_towards_the_target():
    source, target = _gaussians(seed=1)
    gap = np.linalg.norm(np.cov(source, rowvar=False) - np.cov(target, rowvar=False))
    mapped = fit_adaptation("coral", source, target)[0].transform(source)
    assert np.linalg.norm(np.cov(mapped, rowvar=False) - np.cov(target, rowvar=False)) < 0.6 * gap  # 0.44 here


def test_subspace_alignment_is_fernandos_formula():
    source, target = _gaussians(seed=2, n=500, d=8)
    source_map, target_map = fit_adaptation("subspace", source, target, dims=3)
    ps = np.linalg.svd(source - source.mean(0), full_matrices=False)[2][:3].T
    pt = np.linalg.svd(target - target.mean(0), full_matrices=False)[2][:3].T
    np.testing.assert_allclose(source_map.transform(source), (source - source.mean(0)) @ ps @ ps.T @ pt, atol=1e-3)
    np.testing.assert_allclose(target_map.transform(target), (target - target.mean(0)) @ pt, atol=1e-3)


def test_mean_alignment_centres_each_domain():
    source, target = _gaussians(seed=3)
    source_map, target_map = fit_adaptation("mean", source, target)
    assert np.abs(source_map.transform(source).mean(0)).max() < 1e-3
    assert np.abs(target_map.transform(target).mean(0)).max() < 1e-3


def test_a_saved_adapted_pipeline_applies_the_target_map_to_raw_inputs(digit_features, digits_dir, tmp_path):
    train, test, cache = digit_features
    result = fit(train, "logreg", "pre_logits", adapt="coral", target=test)
    assert result.card.adaptation["method"] == "coral" and list(result.model.named_steps) == [
        "features", "adapt", "head"
    ]  # fmt: skip
    path = save_model(result.model, result.card, tmp_path / "m.skops")
    loaded, card = load_model(path)  # AffineMap is a trusted type: no --trust needed
    assert card.adaptation["method"] == "coral"
    out = xfer("predict", path, digits_dir / "test", "-o", tmp_path / "p.csv", "--cache-dir", cache)
    assert "36 predictions" in out.output or "predictions written" in out.output
    from featurizer import FeatureFile
    from pipelines.fit._fit import read_xy

    with FeatureFile(test) as f:
        X, _ = read_xy(f, ("pre_logits",))
    steps = loaded.named_steps
    expected = steps["head"].predict(steps["adapt"].transform(X))
    with open(tmp_path / "p.csv") as f:
        assert [row["label"] for row in csv.DictReader(f)] == list(expected)


@pytest.mark.parametrize("method", ["mean", "subspace"])
def test_every_method_fits_and_evaluates(digit_features, method, tmp_path):
    train, test, _ = digit_features
    result = fit(train, "logreg", "pre_logits", adapt=method, target=test)
    path = save_model(result.model, result.card, tmp_path / "m.skops")
    out = xfer("evaluate", path, test, "-o", tmp_path / "r.json").output
    assert "accuracy" in out and "without adaptation: accuracy" in out  # the same head, side by side
    import json

    chosen = {k: v for k, v in result.card.params.items() if k != "normalise"}  # the adapted head's C
    plain = fit(train, "logreg", "pre_logits", params=chosen)
    from featurizer import FeatureFile
    from pipelines import evaluate
    from pipelines.fit._fit import read_xy

    with FeatureFile(test) as f:
        X, y = read_xy(f, ("pre_logits",))
    expected = evaluate(plain.model, X, y)["accuracy"]
    assert json.loads((tmp_path / "r.json").read_text())["without_adaptation"] == pytest.approx(expected)


def test_adaptation_needs_both_options_and_a_matching_target(digit_features, digits_dir, tmp_path):
    from featurizer import featurize

    train, _, cache = digit_features
    alone = xfer("fit", train, "--adapt", "coral", "-o", tmp_path / "m.skops", ok=False)
    assert alone.exit_code == 1 and "--adapt and --target go together" in alone.output
    other = tmp_path / "other.h5"
    featurize(digits_dir / "test", None, ["blocks.4"], output=other, cache_dir=cache, progress=False)
    mismatch = xfer(
        "fit", train, "-l", "pre_logits", "--adapt", "coral", "--target", other, "-o", tmp_path / "m2.skops", ok=False
    )
    assert mismatch.exit_code == 1 and "does not match the training features" in mismatch.output


def test_fewshot_shows_each_head_with_and_without_adaptation(digit_features, tmp_path):
    train, test, _ = digit_features
    out = xfer(
        "fewshot", train, test, "--shots", "2", "--runs", "2", "--head", "logreg", "--adapt", "coral",
        "--png", tmp_path / "c.png",
    ).output  # fmt: skip
    lines = [line for line in out.splitlines() if "±" in line]
    assert [line.split()[0] for line in lines] == ["logreg", "logreg+coral"]


# --- Importance reweighting and the label-free choice (issue 30) ----------------------------------


def _classes(seed: int, n: int = 120, d: int = 10, offset: float = 0.0):
    """Three Gaussian classes; ``offset`` moves every item."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=2.0, size=(3, d))
    y = np.repeat(np.arange(3), n // 3)
    X = centres[y] + rng.normal(size=(len(y), d)) + offset
    return X, y.astype(str)


def test_importance_weights_follow_the_true_density_ratio():
    from pipelines.adapt import IW_CLIP, importance_weights

    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(600, 4)), rng.normal(size=(600, 4)) + np.array([1.0, 0, 0, 0])
    weights = importance_weights(source, target)
    true = np.exp(source[:, 0] - 0.5)  # N(1, 1) / N(0, 1) along the first axis
    assert weights.mean() == pytest.approx(1.0) and weights.max() <= IW_CLIP + 1e-9
    assert np.corrcoef(np.log(weights), np.log(true))[0, 1] > 0.9


@pytest.mark.parametrize(
    "shift, kept",
    [
        ("none", {"none"}),  # the same distribution: nothing to adapt, and nothing must be chosen
        ("offset", {"mean"}),  # every target item moved: the simplest fix that works is kept
    ],
)
def test_auto_chooses_by_circular_validation_without_target_labels(shift, kept):
    from sklearn.linear_model import LogisticRegression

    from pipelines.adapt import CANDIDATES, choose_adaptation

    source, y = _classes(0)
    target, _ = _classes(1, offset=6.0 if shift == "offset" else 0.0)
    chosen = choose_adaptation(source, y, target, LogisticRegression(max_iter=1000))
    assert chosen.method in kept, chosen.reason
    assert set(chosen.scores) == set(CANDIDATES) and chosen.asked == "auto"
    if shift == "offset":
        assert chosen.scores[chosen.method][0] > chosen.scores["none"][0] + 0.3


def test_reweight_fits_the_head_with_weights_and_saves_no_map(digit_features, tmp_path):
    train, test, _ = digit_features
    out = xfer(
        "fit", train, "-l", "pre_logits", "--C", "1", "--adapt", "reweight", "--target", test,
        "-o", tmp_path / "m.skops",
    )  # fmt: skip
    assert "adaptation: reweight (effective training size" in out.output
    model, card = load_model(tmp_path / "m.skops")
    assert list(model.named_steps) == ["features", "head"] and card.adaptation["method"] == "reweight"
    assert card.adaptation["feature_map"] is False and 0 < card.adaptation["effective_size"] <= 36 * 10
    report = xfer("evaluate", tmp_path / "m.skops", test).output
    assert "without adaptation: accuracy" in report
    knn = xfer("fit", train, "--head", "knn", "--adapt", "reweight", "--target", test, "-o", tmp_path / "k", ok=False)
    assert knn.exit_code == 1 and "needs a head that takes sample weights" in knn.output
    assert len(knn.output.strip().splitlines()) == 1


def test_fit_adapt_auto_prints_every_candidates_score_and_records_them(digit_features, tmp_path):
    train, test, _ = digit_features
    out = xfer(
        "fit", train, "-l", "pre_logits", "--C", "1", "--adapt", "auto", "--target", test, "-o", tmp_path / "m.skops"
    )  # fmt: skip
    line = next(line for line in out.output.splitlines() if "chosen by circular validation" in line)
    assert all(f"{m} 0." in line or f"{m} 1." in line for m in ("none", "mean", "coral", "subspace", "reweight"))
    model, card = load_model(tmp_path / "m.skops")
    assert card.adaptation["asked"] == "auto" or card.adaptation["method"] == "auto"
    assert set(card.adaptation["scores"]) == {"none", "mean", "coral", "subspace", "reweight"}
    assert ("adapt" in model.named_steps) == card.adaptation["feature_map"]
