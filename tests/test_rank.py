"""Transferability scores and ``xfer rank``: informative features first, random labels at chance."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sklearn.neighbors import NearestCentroid
from sklearn.preprocessing import normalize

from featurizer.backbones._resolve import last_distinct_layers
from pipelines.fit import CHANCE_LOGME
from pipelines.heads._transferability import logme, loo_nearest_centroid
from tests.test_flows import xfer


def _toy(n: int = 300, classes: int = 3, seed: int = 0):
    """Labels, features that separate them linearly, and noise features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    informative = np.eye(classes)[y] * 2 + rng.normal(size=(n, classes))
    return y, informative, rng.normal(size=(n, 20))


def test_logme_ranks_the_informative_features_first():
    y, informative, noise = _toy()
    scores = {
        "informative": logme(informative, y),
        "informative+noise": logme(np.hstack([informative, noise]), y),
        "noise": logme(noise, y),
    }
    assert sorted(scores, key=scores.get, reverse=True) == ["informative", "informative+noise", "noise"]
    assert scores["informative"] > 0.2 and abs(scores["noise"]) < CHANCE_LOGME


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(300, 3), (300, 400), (50, 400)])  # more items than dims, and fewer
def test_on_random_labels_nothing_ranks_above_chance(seed, shape):
    rng = np.random.default_rng(seed)
    n, d = shape
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, d)) * np.linspace(0.1, 3, d)  # unequal scales, as real layers have
    assert logme(X, y) < CHANCE_LOGME
    chance, spread = 1 / 3, 3 * np.sqrt(2 / 9 / n)
    assert loo_nearest_centroid(X, y) < chance + spread


def test_loo_nearest_centroid_is_leave_one_out():
    y, informative, noise = _toy(n=90, seed=3)
    X = np.hstack([informative, noise[:, :4]])
    y[0] = 5  # a class of one: nothing to compare it with, so it counts as wrong
    f = normalize(X - X.mean(axis=0))
    correct = 0
    for i in range(len(y)):
        rest = np.arange(len(y)) != i
        if (y[rest] == y[i]).any():
            correct += NearestCentroid().fit(f[rest], y[rest]).predict(f[i : i + 1])[0] == y[i]
    assert loo_nearest_centroid(X, y) == pytest.approx(correct / len(y))


def test_rank_candidates_are_the_last_distinct_layers():
    # timm's 'features' is the map that 'pre_logits' average-pools: the same vector, so it is skipped
    assert last_distinct_layers("efficientnet_lite0") == ("pre_logits", "blocks.6", "blocks.4")
    assert last_distinct_layers("minilm", count=2) == ("layer.5", "layer.4")


def test_rank_cli_scores_layers_and_recommends_one(digits_dir, tmp_path):
    out = xfer("rank", digits_dir / "train", "--per-class", "8", "--cache-dir", tmp_path / "cache", "-q").output
    lines = out.splitlines()
    assert lines[0].startswith("80 labelled items, 10 classes")
    rows = [line for line in lines if line.startswith("efficientnet_lite0:")]
    assert len(rows) == 4  # three layers and their concatenation
    logmes = [float(row.split()[2]) for row in rows]
    assert logmes == sorted(logmes, reverse=True) and logmes[0] > CHANCE_LOGME
    assert lines[-1].startswith(f"recommended: {rows[0].split()[0]}")


def test_rank_says_so_when_the_labels_look_random(digits_dir, tmp_path):
    """Digit scans filed under shuffled class folders: no layer explains them."""
    rng = np.random.default_rng(0)
    files = sorted((digits_dir / "train").rglob("*.png"))
    for i, path in enumerate(files):
        folder = tmp_path / "shuffled" / f"c{rng.integers(0, 4)}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{i}.png")
    out = xfer("rank", tmp_path / "shuffled", "--cache-dir", tmp_path / "cache", "-q").output
    assert "no candidate explains the labels better than chance" in out


def test_rank_scores_text_layers_too(tmp_path):
    """Questions by their first word: the text model's layers separate them, and rank says which."""
    import csv

    starts = {"who": "Who wrote {}?", "where": "Where is {}?", "when": "When did {} happen?"}
    things = ["Hamlet", "the Eiffel tower", "the war", "Paris", "the moon landing", "the museum", "Rome", "the bridge"]
    table = tmp_path / "q.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([(pattern.format(thing), label) for label, pattern in starts.items() for thing in things])
    out = xfer("rank", table, "-m", "minilm", "--cache-dir", tmp_path / "cache", "-q").output
    rows = [line for line in out.splitlines() if line.startswith("minilm:")]
    assert len(rows) == 4
    assert {row.split()[0] for row in rows} == {"minilm:layer.5", "minilm:layer.4", "minilm:layer.3",
                                                "minilm:layer.5+layer.4+layer.3"}  # fmt: skip
    assert "recommended: minilm:" in out and float(rows[0].split()[2]) > 0.02
