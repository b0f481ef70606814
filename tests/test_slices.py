"""Per-group evaluation: the gap a toy set was built with, and clear messages for bad groupings."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from featurizer import featurize
from pipelines import fit, save_model
from pipelines.evaluate._slices import group_report
from tests.test_flows import xfer

THINGS = ["Hamlet", "the Eiffel tower", "the war", "Paris", "the moon landing", "the museum", "Rome", "the bridge"]
PATTERNS = {"who": "Who wrote {}?", "where": "Where is {}?", "when": "When did {} happen?"}


def test_group_report_finds_the_worst_group_and_the_gap():
    y = np.array(["a", "b"] * 6 + ["a"])
    predicted = y.copy()
    groups = np.array(["north"] * 6 + ["south"] * 6 + ["alone"])
    predicted[6:9] = np.where(y[6:9] == "a", "b", "a")  # south: 3 of 6 wrong
    report = group_report(y, predicted, groups, ["a", "b"])
    assert report["groups"]["north"]["accuracy"] == 1.0 and report["groups"]["south"]["accuracy"] == 0.5
    assert report["worst_group"] == "south" and report["accuracy_gap"] == pytest.approx(0.5)
    assert report["small_groups"] == ["alone"] and report["groups"]["alone"]["count"] == 1
    assert set(report["groups"]["south"]["recall"]) == {"a", "b"}


@pytest.fixture(scope="module")
def question_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("slices")
    train = root / "train.csv"
    with open(train, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([(p.format(t), label) for label, p in PATTERNS.items() for t in THINGS])
    features = root / "train.h5"
    featurize(train, "minilm", "-1", output=features, cache_dir=root / "cache", progress=False)
    result = fit(features, "logreg")
    return save_model(result.model, result.card, root / "m.skops"), root


def _test_table(path, groups: dict[str, bool]) -> None:
    """The training questions once per group; in a group marked True the labels are rotated (all wrong)."""
    labels = list(PATTERNS)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "site"])
        for group, rotated in groups.items():
            for i, label in enumerate(labels):
                shown = labels[(i + 1) % len(labels)] if rotated else label
                writer.writerows([(PATTERNS[label].format(t), shown, group) for t in THINGS])


def test_evaluate_by_a_column_reports_the_gap_it_was_built_with(question_model, tmp_path):
    model, root = question_model
    table = tmp_path / "test.csv"
    _test_table(table, {"clean": False, "rotated": True})
    report_path, png = tmp_path / "r.json", tmp_path / "m.confusion-test.png"
    out = xfer("evaluate", model, table, "--by", "site", "-o", report_path, "--png", png, "--cache-dir", root / "c")
    by_group = json.loads(report_path.read_text())["by_group"]
    assert by_group["groups"]["clean"]["accuracy"] == 1.0 and by_group["groups"]["rotated"]["accuracy"] == 0.0
    assert by_group["worst_group"] == "rotated" and by_group["accuracy_gap"] == 1.0
    assert "worst group 'rotated'" in out.output
    assert (tmp_path / "m.groups-test.png").read_bytes()[:4] == b"\x89PNG"


def test_groups_from_an_id_file_and_bad_groupings_get_one_line(question_model, tmp_path):
    model, root = question_model
    table = tmp_path / "test.csv"
    _test_table(table, {"clean": False})
    features = tmp_path / "test.h5"
    featurize(table, "minilm", "-1", output=features, cache_dir=root / "cache", progress=False)
    mapping = tmp_path / "groups.csv"
    mapping.write_text("id,group\n" + "".join(f"{i},{'first' if i < 12 else 'rest'}\n" for i in range(23)))
    out = xfer("evaluate", model, features, "--by", mapping, "-o", tmp_path / "r.json").output
    assert "'(no group)'" in out and "first" in out and "single item" in out  # item 23 has no group: alone
    missing = xfer("evaluate", model, table, "--by", "region", "-o", tmp_path / "r2.json", ok=False)
    assert missing.exit_code == 1 and "column 'region' not found" in missing.output
    no_columns = xfer("evaluate", model, features, "--by", "site", "-o", tmp_path / "r3.json", ok=False)
    assert no_columns.exit_code == 1 and "give a CSV file of id,group" in no_columns.output
