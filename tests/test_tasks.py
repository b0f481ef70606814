"""Several label columns: classes, label sets and numbers read from cells, one head per task, one model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurizer import FeatureFile, FeaturizerError, featurize
from featurizer.engine._embed import embed
from featurizer.engine._shards import merge
from pipelines import fit, load_model
from pipelines.fit._tasks import MultiLabelLogistic, best_thresholds
from pipelines.heads._targets import CLASSES, MULTILABEL, REGRESSION, label_set, read_target
from tests.test_flows import xfer

SPORTS = [
    "The striker scored twice in the cup final",
    "The tennis player won the match in five sets",
    "The team signed a new goalkeeper this summer",
    "Olympic sprinters broke the world record",
    "The coach praised the defence after the game",
]
POLITICS = [
    "Parliament passed the new budget law",
    "The minister resigned after the vote",
    "Voters went to the polls in the general election",
    "The senate debated the tax reform bill",
    "The president met foreign leaders at the summit",
]


def news_rows(n: int, seed: int) -> list[dict]:
    """Texts about sports, politics or both: topic (3 classes) and tags (a label set) follow from the text."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = i % 3  # 0 sports, 1 politics, 2 both
        parts = ([SPORTS[rng.integers(5)]] if kind != 1 else []) + ([POLITICS[rng.integers(5)]] if kind else [])
        tags = [t for t, on in (("sports", kind != 1), ("politics", kind != 0)) if on]
        rows.append(
            {
                "id": f"{seed}-{i}",
                "text": " and ".join(parts) + ".",
                "topic": ["sports", "politics", "both"][kind],
                "tags": "|".join(tags) if i % 2 else json.dumps(tags),  # both ways of writing a label set
            }
        )
    return rows


def write_table(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def news(tmp_path_factory):
    """train/test CSVs and feature files (minilm) with topic, tags and a number the features determine."""
    root = tmp_path_factory.mktemp("tasks")
    cache = root / "cache"
    splits = {"train": news_rows(60, 0), "test": news_rows(12, 1)}
    for name, rows in splits.items():
        write_table(root / f"{name}.csv", rows)
        featurize(root / f"{name}.csv", "minilm", "-1", output=root / f"{name}.h5", cache_dir=cache, progress=False)
    # a regression target that is a linear function of the real features: ridge must find it (R2 near 1)
    direction = np.random.default_rng(7).normal(size=384)
    for name, rows in splits.items():
        with FeatureFile(root / f"{name}.h5") as f:
            score = f.read() @ direction
        for row, value in zip(rows, score):
            row["score"] = f"{value:.4f}"
        write_table(root / f"{name}.csv", rows)
        featurize(root / f"{name}.csv", "minilm", "-1", output=root / f"{name}.h5", cache_dir=cache, progress=False)
    return root


def test_a_table_featurized_once_keeps_every_column_for_fit(news):
    with FeatureFile(news / "train.h5") as f:
        assert list(f.columns) == ["topic", "tags", "score"]
        assert f.column("topic")[:3] == ["sports", "politics", "both"]
    assert "columns    topic, tags, score" in xfer("info", news / "train.h5").output


def test_two_tasks_in_one_model_predict_both_columns(news, tmp_path):
    model = tmp_path / "news.skops"
    out = xfer("fit", news / "train.h5", "--label-column", "topic", "--label-column", "tags", "-o", model).output
    assert "topic" in out and "multilabel" in out
    xfer("predict", model, news / "test.csv", "-o", tmp_path / "p.csv")
    with open(tmp_path / "p.csv") as f:
        predicted = list(csv.DictReader(f))
    truth = news_rows(12, 1)
    assert [r["topic"] for r in predicted] == [r["topic"] for r in truth]
    # the multi-label toy set gets the right label sets
    assert [set(r["tags"].split("|")) for r in predicted] == [set(label_set(r["tags"], "tags")) for r in truth]
    out = xfer("evaluate", model, news / "test.h5", "-o", tmp_path / "e.json").output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["tasks"]["topic"]["accuracy"] == 1.0
    assert report["tasks"]["tags"]["subset_accuracy"] == 1.0 and "micro-f1 1.000" in out
    _, card = load_model(model)  # TaskHeads and MultiLabelLogistic load without --trust
    assert [t["name"] for t in card.tasks] == ["topic", "tags"]


def test_a_regression_target_gets_r2_near_1_and_evaluate_reports_r2_and_mae(news, tmp_path):
    result = fit(news / "train.h5", label_columns=("score",))
    (task,) = result.card.tasks
    assert task["kind"] == REGRESSION and task["scores"]["r2"] > 0.95
    from pipelines import save_model

    save_model(result.model, result.card, tmp_path / "r.skops")
    out = xfer("evaluate", tmp_path / "r.skops", news / "test.csv", "-o", tmp_path / "scores.json").output
    scores = json.loads((tmp_path / "scores.json").read_text())["tasks"]["score"]
    assert scores["r2"] > 0.95 and scores["mae"] >= 0 and "r2 " in out and "mae " in out


def test_one_label_column_of_classes_is_an_ordinary_classifier_scored_on_that_column(news, tmp_path):
    model = tmp_path / "topic.skops"
    xfer("fit", news / "train.h5", "--label-column", "topic", "-o", model)
    _, card = load_model(model)
    assert card.label_column == "topic" and not card.tasks and sorted(card.classes) == ["both", "politics", "sports"]
    out = xfer("evaluate", model, news / "test.h5", "-o", tmp_path / "e.json", "--png", tmp_path / "c.png").output
    assert "accuracy 1.0000" in out  # the test file's topic column, not its (absent) labels


def test_commands_for_one_classifier_refuse_a_multi_task_model_in_one_line(news, tmp_path):
    model = tmp_path / "m.skops"
    xfer("fit", news / "train.h5", "--label-column", "topic", "--label-column", "score", "-o", model)
    for args in (
        ("suggest", model, news / "test.h5"),
        ("evaluate", model, news / "test.h5", "--by", "topic"),
    ):
        result = xfer(*args, ok=False)
        assert result.exit_code != 0 and "several tasks" in result.output and "Traceback" not in result.output
    result = xfer("fit", news / "train.h5", "--label-column", "tags", "--baseline", ok=False)
    assert "single classifier" in result.output


def test_bad_task_options_get_one_line_errors(news):
    cases = [
        (("--label-column", "nope"), "no column 'nope'"),
        (("--label-column", "topic", "--label-column", "topic"), "given twice"),
        (("--label-column", "topic", "--label-kind", "topic=numbers"), "COLUMN=KIND"),
        (("--label-column", "topic", "--label-kind", "tags=multilabel"), "no --label-column names"),
        (("--label-column", "topic", "--label-kind", "topic=regression"), "are text"),
    ]
    for args, message in cases:
        result = xfer("fit", news / "train.h5", *args, ok=False)
        assert result.exit_code != 0 and message in result.output, result.output


def test_sharded_embedding_keeps_the_columns(news, tmp_path):
    out = tmp_path / "emb"
    embed(news / "train.csv", out, "minilm", "-1", shard_size=8, cache_dir=news / "cache", progress=False)
    with FeatureFile(merge(out)) as merged, FeatureFile(news / "train.h5") as whole:
        assert merged.columns == whole.columns


# --- Reading cells: the kind of a column and its bad cells -----------------------------------

IDS = [str(i) for i in range(6)]


@pytest.mark.parametrize(
    "cells, kind",
    [
        (["a", "b", "a", "b", "c", ""], CLASSES),
        (["1", "2", "3", "1", "2", "5"], CLASSES),  # whole numbers: ratings, digits, flags
        (["1.5", "2", "3.25", "", "0.1", "-4"], REGRESSION),
        (["a|b", "b", "", "a", "c|a", "b"], MULTILABEL),
        (['["a", "b"]', '["b"]', "[]", "a", "", '["c"]'], MULTILABEL),
        (["Sci/Tech", "World", "Sports", "World", "Sci/Tech", "Business, Finance"], CLASSES),  # not separators
    ],
)
def test_the_kind_of_a_column_is_read_from_its_cells(cells, kind):
    target, _ = read_target("col", cells, IDS)
    assert target.kind == kind
    assert list(target.known) == [c != "" for c in cells]


@pytest.mark.parametrize("sep", [";", ",", "/"])
@pytest.mark.parametrize("multilabel", [False, True])
def test_a_cell_joined_by_another_separator_is_refused_naming_the_item(sep, multilabel):
    cells = ["sports", "politics", f"sports{sep}politics", "sports|politics" if multilabel else "sports", "", "x"]
    with pytest.raises(FeaturizerError, match=rf"item '2'.*joined by '{sep}'"):
        read_target("tags", cells, IDS)


@pytest.mark.parametrize("bad", ["n/a", "?", "12 kg", "inf"])
def test_a_column_of_numbers_with_text_or_infinity_in_it_is_refused(bad):
    cells = ["1.5", "2.25", bad, "3.5", "", "0.5"]
    with pytest.raises(FeaturizerError, match="'2'" if bad != "inf" else "not finite"):
        read_target("price", cells, IDS, REGRESSION if bad == "inf" else None)


@pytest.mark.parametrize(
    "cells, message",
    [
        (["", "", "", "", "", ""], "blank in every row"),
        (['["a", "b"', "a|b", "a", "b", "a", "b"], "not one"),
        (['[["a"]]', "a|b", "a", "b", "a", "b"], "JSON list of names"),
        (["[]", "[]", "", "[]", "[]", "[]"], "every label set is empty"),
    ],
)
def test_broken_label_cells_get_a_message(cells, message):
    with pytest.raises(FeaturizerError, match=message):
        read_target("tags", cells, IDS)


label = st.text(alphabet=st.characters(blacklist_characters='|;,/[]"\\', blacklist_categories=("Cc", "Cs", "Zs")))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(label.filter(bool), max_size=4), min_size=2, max_size=6))
def test_label_sets_read_the_same_written_with_pipes_or_as_json(sets):
    if not any(sets):
        return
    ids = [str(i) for i in range(len(sets))]
    for cells in (["|".join(s) if s else "[]" for s in sets], [json.dumps(s) for s in sets]):
        target, _ = read_target("tags", cells, ids, MULTILABEL)
        assert [set(label_set(c, "tags")) for c in target.cells] == [{x.strip() for x in s} for s in sets]
        Y = target.y()
        assert Y.shape == (len(sets), len(target.classes)) and Y.sum() == sum(len({x.strip() for x in s}) for s in sets)


def test_a_rare_class_gets_a_threshold_below_one_half_and_a_constant_class_a_constant():
    proba = np.array([[0.1, 0.9], [0.3, 0.8], [0.05, 0.7], [0.35, 0.9]])
    Y = np.array([[0, 1], [1, 1], [0, 1], [1, 1]])
    thresholds = best_thresholds(proba, Y)
    assert thresholds[0] < 0.5 and ((proba[:, 0] >= thresholds[0]) == Y[:, 0]).all()
    X = np.random.default_rng(0).normal(size=(8, 3))
    head = MultiLabelLogistic().fit(X, np.array([[1, 0]] * 4 + [[1, 1]] * 4))
    assert (head.predict_proba(X)[:, 0] > 0.9).all()  # in every item: always predicted
