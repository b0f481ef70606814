"""Fairness mitigation: a planted group gap halved by ``fit --mitigate``, the model saved and loaded
safely and predicting without groups, ``evaluate --by`` before and after, and one line for bad input."""

from __future__ import annotations

import csv
import itertools
import json
import random

import numpy as np
import pytest

from featurizer import FeatureFile, FeaturizerError, featurize
from pipelines import fit, load_model, save_model
from pipelines.heads import FairMixture, fairness_gap
from pipelines.heads._fairness import item_draws
from tests.test_flows import xfer

GOOD = ["great", "wonderful", "excellent", "lovely", "superb", "delightful"]
BAD = ["awful", "terrible", "boring", "dreadful", "dull", "poor"]
CITIES = {"north": ["Oslo", "Bergen"], "south": ["Rome", "Naples"]}


def _write(root, name: str, things: list[str], seed: int) -> tuple:
    """Reviews by city; in the south most bad reviews are labelled good (the planted gap). Returns the
    feature file and a CSV of id,group."""
    rng = random.Random(seed)
    rows = []
    for group, cities in CITIES.items():
        for word, thing, city in itertools.product(GOOD + BAD, things, cities):
            label = "good" if word in GOOD or (group == "south" and rng.random() < 0.6) else "bad"
            rows.append((f"A {word} {thing} in {city}.", label, group))
    with open(root / f"{name}.csv", "w", newline="") as f:
        csv.writer(f).writerows([("text", "label", "group"), *rows])
    features = root / f"{name}.h5"
    featurize(root / f"{name}.csv", "minilm", "-1", output=features, cache_dir=root / "cache", progress=False)
    group_of = {text: group for text, _, group in rows}
    with FeatureFile(features) as f:
        pairs = [(i, group_of[s]) for i, s in zip(f.ids, f.sources)]
    groups = root / f"{name}-groups.csv"
    with open(groups, "w", newline="") as f:
        csv.writer(f).writerows([("id", "group"), *pairs])
    return features, groups


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairness")
    train = _write(root, "train", ["film", "hotel", "meal", "concert", "book", "show", "museum", "game"], 0)
    test = _write(root, "test", ["play", "park", "cafe", "opera", "novel", "match"], 1)
    return root, train, test


def test_the_gap_is_the_largest_difference_of_the_rate_the_constraint_equalises():
    y = np.array(["a", "a", "b", "b", "a", "a", "b", "b"])
    predicted = np.array(["a", "a", "b", "b", "a", "b", "a", "b"])
    groups = np.array(["n"] * 4 + ["s"] * 4)
    assert fairness_gap(y, predicted, groups, "equalized_odds") == pytest.approx(0.5)  # recall of a: 1 vs 0.5
    assert fairness_gap(y, predicted, groups, "demographic_parity") == pytest.approx(0.0)  # half a in both
    assert fairness_gap(y, y, groups, "equalized_odds") == 0.0


def test_draws_follow_the_item_not_the_batch():
    X = np.random.default_rng(0).normal(size=(50, 4))
    assert np.array_equal(item_draws(X)[10:20], item_draws(X[10:20]))
    assert item_draws(X).min() >= 0 and item_draws(X).max() < 1 and len(set(item_draws(X))) == 50


def test_mitigation_halves_a_planted_gap_and_the_saved_model_predicts_without_groups(reviews, tmp_path):
    _, (train, groups), (test, _) = reviews
    result = fit(train, "logreg", mitigate="demographic_parity", groups=groups)
    held = result.card.mitigation["held_out"]
    assert held["gap_before"] > 0.2 and held["gap_after"] <= held["gap_before"] / 2
    assert result.card.mitigation["group_counts"] == {"north": 192, "south": 192}
    assert any(w.startswith("mitigated for demographic_parity") for w in result.warnings)
    path = save_model(result.model, result.card, tmp_path / "fair.skops")
    model, card = load_model(path)  # skops, trusted types only
    head = model.named_steps["head"]
    assert isinstance(head, FairMixture) and card.mitigation["constraint"] == "demographic_parity"
    with FeatureFile(test) as f:
        X = f.read("layer.5")
    assert set(head.predict(X)) <= {"bad", "good"} and np.allclose(head.predict_proba(X).sum(axis=1), 1)
    assert np.array_equal(head.predict(X[:7]), head.predict(X)[:7])  # the same answer in any batch
    out = xfer("predict", path, test, "-o", tmp_path / "p.csv").output  # no groups needed
    assert "predictions written" in out


def test_evaluate_by_shows_the_gap_before_and_after_and_the_cost(reviews, tmp_path):
    _, (train, groups), (test, test_groups) = reviews
    model = tmp_path / "eo.skops"
    out = xfer("fit", train, "-o", model, "--mitigate", "equalized_odds", "--groups", groups).output
    assert "note: mitigated for equalized_odds on 2 groups" in out
    report = tmp_path / "eval.json"
    out = xfer("evaluate", model, test, "--by", test_groups, "-o", report).output
    assert "equalized_odds gap across these groups:" in out and "cost" in out
    found = json.loads(report.read_text())["mitigation"]
    assert found["gap_before"] > 0.2 and found["gap_after"] <= found["gap_before"] / 2
    assert found["accuracy_cost"] == pytest.approx(found["accuracy_before"] - found["accuracy_after"])
    plain = fit(train, "logreg")
    plain = save_model(plain.model, plain.card, tmp_path / "plain.skops")
    out = xfer("evaluate", plain, test, "--by", test_groups, "-o", tmp_path / "plain-eval.json").output
    assert "gap across these groups" not in out and "mitigation" not in json.loads(
        (tmp_path / "plain-eval.json").read_text()
    )


@pytest.mark.parametrize(
    "args, says",
    [
        (["--mitigate", "equalized_odds"], "needs each training item's group: give --groups"),
        (["--groups", "GROUPS"], "--groups is for --mitigate"),
        (["--mitigate", "fairest", "--groups", "GROUPS"], "'fairest' is not one of"),
        (["--mitigate", "equalized_odds", "--groups", "PARTIAL"], "does not cover the items: 10 of the 384"),
        (["--mitigate", "equalized_odds", "--groups", "ONE"], "every item in one group"),
        (["--mitigate", "equalized_odds", "--groups", "GROUPS", "--head", "prototype"], "item weights"),
        (
            [
                "--mitigate",
                "demographic_parity",
                "--groups",
                "GROUPS",
                "--label-column",
                "label",
                "--label-column",
                "group",
            ],
            "--mitigate refits a single classifier",
        ),
    ],
)
def test_bad_mitigation_input_ends_in_one_line(reviews, tmp_path, args, says):
    _, (train, groups), _ = reviews
    with open(groups, newline="") as f:
        rows = list(csv.reader(f))
    partial, one = tmp_path / "partial.csv", tmp_path / "one.csv"
    with open(partial, "w", newline="") as f:
        csv.writer(f).writerows(rows[:-10])
    with open(one, "w", newline="") as f:
        csv.writer(f).writerows([rows[0], *[(i, "all") for i, _ in rows[1:]]])
    named = {"GROUPS": groups, "PARTIAL": partial, "ONE": one}
    result = xfer("fit", train, "-o", tmp_path / "m.skops", *[named.get(a, a) for a in args], ok=False)
    assert result.exit_code != 0 and says in result.output, result.output
    errors = [line for line in result.output.splitlines() if "Error:" in line]  # after click's usage lines, if any
    assert "Traceback" not in result.output and len(errors) == 1
    if "PARTIAL" in args:
        assert "(e.g. '" in errors[0]


def test_the_library_refuses_an_unknown_constraint(reviews):
    _, (train, groups), _ = reviews
    with pytest.raises(FeaturizerError, match="--mitigate must be one of demographic_parity, equalized_odds"):
        fit(train, "logreg", mitigate="fairest", groups=groups)


def test_several_classes_get_one_mixture_each_and_load_from_trusted_types(tmp_path):
    import skops.io as sio

    from pipelines.heads import make_head
    from pipelines.models import TRUSTED_TYPES

    rng = np.random.default_rng(0)
    groups = rng.choice(["n", "s"], 240)
    y = rng.integers(0, 3, 240)
    X = rng.normal(size=(240, 6))
    X[np.arange(240), y] += np.where(groups == "n", 2.0, 0.7)
    y = np.array(["x", "y", "z"])[y]
    head = FairMixture(make_head("logreg"), constraint="equalized_odds", max_iter=10).fit(X, y, groups=groups)
    assert head.targets_ == ["x", "y", "z"] and all(np.isclose(w.sum(), 1) for w in head.weights_)
    sio.dump(head, tmp_path / "m.skops")
    loaded = sio.load(tmp_path / "m.skops", trusted=TRUSTED_TYPES)  # refuses any type not listed
    assert not [t for t in sio.get_untrusted_types(file=tmp_path / "m.skops") if t not in TRUSTED_TYPES]
    assert np.array_equal(loaded.predict(X), head.predict(X)) and set(head.predict(X)) <= {"x", "y", "z"}
