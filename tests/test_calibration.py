"""Calibration: the measures, the temperature fit, and a fitted model whose probabilities are honest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pipelines import fit, load_model, save_model
from pipelines.heads._calibration import (
    apply_temperature,
    as_logits,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from tests.test_flows import xfer


def _sampled(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from their softmax: calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    p = softmax(logits)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, y


def test_calibration_measures_at_their_extremes():
    logits, y = _sampled(40000, 4, seed=0)
    assert expected_calibration_error(softmax(logits), y) < 0.01
    sure_and_wrong = np.eye(4)[(y + 1) % 4]
    assert expected_calibration_error(sure_and_wrong, y) == pytest.approx(1.0)
    assert brier_score(sure_and_wrong, y) == pytest.approx(2.0)
    assert brier_score(np.eye(4)[y], y) == 0.0


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_the_temperature_undoes_over_and_under_confidence(scale):
    logits, y = _sampled(20000, 5, seed=1)
    distorted = logits * scale
    assert fit_temperature(distorted, y) == pytest.approx(scale, rel=0.08)
    if scale != 1.0:
        assert expected_calibration_error(softmax(distorted), y) > 0.05
    assert expected_calibration_error(softmax(distorted / fit_temperature(distorted, y)), y) < 0.015


@pytest.mark.parametrize("classes", [2, 3])
def test_a_temperature_scaled_logistic_regression_keeps_its_predictions(classes):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] * 2 + X[:, 1] > 0).astype(int) + (classes == 3) * (X[:, 2] > 1)
    model = LogisticRegression(C=0.01).fit(X, y)
    before, logits = model.predict(X), as_logits(model.decision_function(X))
    apply_temperature(model, 0.25)
    np.testing.assert_array_equal(model.predict(X), before)
    np.testing.assert_allclose(model.predict_proba(X), softmax(logits / 0.25), atol=1e-10)


def test_fit_calibrates_the_saved_model_and_evaluate_reports_it(digit_features, tmp_path):
    """On the digit scans the one-standard-error rule regularises strongly; the saved model's
    probabilities are temperature-scaled, predicts as the raw one does, and evaluate reports
    calibration on held-out data with a reliability diagram."""
    train, test, _ = digit_features
    raw = fit(train, "logreg", calibrate=False)
    calibrated = fit(train, "logreg")
    found = calibrated.card.calibration
    assert not raw.card.calibration and found["method"] == "temperature"
    assert found["out_of_fold_after"]["ece"] < found["out_of_fold_before"]["ece"]
    from featurizer import FeatureFile
    from pipelines.fit._fit import read_xy

    with FeatureFile(test) as f:
        X, _ = read_xy(f, tuple(f.layers[:1]))
    heads = [r.model.named_steps["head"] for r in (raw, calibrated)]
    np.testing.assert_array_equal(heads[0].predict(X), heads[1].predict(X))
    assert not np.allclose(heads[0].predict_proba(X), heads[1].predict_proba(X))
    path = save_model(calibrated.model, calibrated.card, tmp_path / "m.skops")
    loaded, card = load_model(path)
    assert card.calibration["temperature"] == pytest.approx(found["temperature"])
    np.testing.assert_allclose(loaded.named_steps["head"].predict_proba(X), heads[1].predict_proba(X))
    report_path, png = tmp_path / "r.json", tmp_path / "m.confusion-test.png"
    out = xfer("evaluate", path, test, "-o", report_path, "--png", png).output
    report = json.loads(report_path.read_text())
    assert set(report["calibration"]) == {"ece", "brier"} and "expected calibration error" in out
    assert (tmp_path / "m.reliability-test.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("seed", range(4))
def test_a_temperature_is_kept_only_where_it_lowers_the_calibration_error(seed):
    """Honest scores stay as they are (T = 1) unless the fitted temperature lowers the error."""
    from pipelines.heads._calibration import calibrate_from_folds

    logits, y = _sampled(500, 4, seed=seed)
    found = calibrate_from_folds(logits, y)
    before, after = found["out_of_fold_before"]["ece"], found["out_of_fold_after"]["ece"]
    assert after <= before
    assert found["temperature"] == 1.0 or after < before
    sharp = calibrate_from_folds(logits * 4, y)  # over-confident: always rescaled
    assert sharp["temperature"] > 2 and sharp["out_of_fold_after"]["ece"] < sharp["out_of_fold_before"]["ece"]
