"""Shift measures: at their floor for one distribution, growing with the strength of a shift."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featurizer import featurize
from pipelines.evaluate._shift import centroid_drift, mmd_rbf, proxy_a_distance
from tests.test_flows import xfer


def _domains(shift: float, seed: int = 0, n: int = 200, d: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, d)) + shift * np.eye(d)[0] * 2


def test_mmd_and_proxy_a_distance_are_at_their_floor_for_one_distribution():
    source, target = _domains(0.0)
    mmd, p = mmd_rbf(source, target)
    pad, accuracy = proxy_a_distance(source, target)
    assert p > 0.05 and mmd < 0.01
    assert pad < 0.3 and accuracy < 0.58


def test_both_measures_grow_with_the_strength_of_a_shift():
    strengths = [0.0, 0.25, 0.5, 1.0, 2.0]
    mmds, pads = [], []
    for strength in strengths:
        source, target = _domains(strength, seed=1)
        mmds.append(mmd_rbf(source, target, permutations=20)[0])
        pads.append(proxy_a_distance(source, target)[0])
    assert mmds == sorted(mmds) and pads == sorted(pads)
    assert pads[-1] > 1.5 and mmd_rbf(*_domains(1.0, seed=1))[1] < 0.01


def test_centroid_drift_names_the_class_that_moved():
    rng = np.random.default_rng(2)
    y = np.repeat(["a", "b", "c"], 50)
    centres = {"a": [4, 0, 0], "b": [0, 4, 0], "c": [0, 0, 4]}
    X = np.array([centres[c] for c in y]) + rng.normal(size=(150, 3))
    Xt = X + rng.normal(scale=0.1, size=X.shape)
    Xt[y == "b"] += [0, -3, 3]  # class b moves towards c
    drift, spread = centroid_drift(X, y, Xt, y)
    assert max(drift, key=drift.get) == "b" and drift["b"] > 0.5 * spread > drift["a"]


def test_shift_cli_reports_measures_and_a_picture(digit_features, tmp_path):
    train, test, _ = digit_features
    png = tmp_path / "shift.png"
    out = xfer("shift", train, test, "--png", png, "--json").output
    report = json.loads(out)
    assert report["layers"] == ["pre_logits", "blocks.6"] and 0 <= report["proxy_a"] <= 2
    assert set(report["drift"]) == {str(d) for d in range(10)} and report["reading"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_shift_refuses_files_without_shared_layers_or_made_differently(digit_features, digits_dir, tmp_path):
    train, _, cache = digit_features
    other = tmp_path / "other.h5"
    featurize(digits_dir / "test", None, ["blocks.4"], output=other, cache_dir=cache, progress=False)
    result = xfer("shift", train, other, ok=False)
    assert result.exit_code == 1 and "has none of" in result.output
    torch_made = tmp_path / "torch.h5"
    featurize(digits_dir / "test", None, ["-1"], output=torch_made, cache_dir=cache, progress=False, runtime="torch")
    result = xfer("shift", train, torch_made, ok=False)
    assert result.exit_code == 1 and "made differently" in result.output and "runtime" in result.output


@pytest.mark.parametrize("permutations", [50])
def test_the_permutation_p_value_is_a_probability(permutations):
    source, target = _domains(0.3, seed=3, n=60)
    _, p = mmd_rbf(source, target, permutations=permutations)
    assert 1 / (permutations + 1) <= p <= 1
