"""Model cards in Markdown: written beside every saved model, escaped against hostile names,
extended by evaluate with exactly its numbers, printed by ``xfer card``."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import pytest

from featurizer import featurize
from featurizer.storage import file_sha256
from featurizer.storage._guard import kind_of, written_by_xfer
from pipelines import fit, load_model, save_model
from pipelines.finetune._finetune import TuneReport
from pipelines.models import md_escape, read_card, record_evaluation, render_model_card, render_tuned_card
from pipelines.models._saved import card_problem
from tests.test_flows import xfer

THINGS = ["Hamlet", "the Eiffel tower", "the war", "Paris", "the moon landing", "the museum", "Rome", "the bridge"]
# Labels a user could give: HTML, a link, a code span, a line break (a "|" would make them label sets).
PATTERNS = {
    "<script>alert(1)</script>": "Who wrote {}?",
    "x](javascript:alert(1)) `where`": "Where is {}?",
    "when\nnow <img src=x onerror=alert(1)>": "When did {} happen?",
}
HOSTILE = [*PATTERNS, "a|b", "``` fence", "<b>bold</b> & &amp; *em* _u_ ~s~ $m$", "back\\slash", "tab\there\r\n"]


def _table(path, suffix: str = "") -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "site"])
        for label, pattern in PATTERNS.items():
            for i, thing in enumerate(THINGS):
                writer.writerow([pattern.format(thing) + suffix, label, "north" if i % 2 else "<i>south|</i>"])


@pytest.fixture(scope="module")
def question_model(tmp_path_factory):
    """A model fitted with --baseline on questions with hostile labels, and its test table."""
    root = tmp_path_factory.mktemp("cards")
    _table(root / "train.csv")
    _table(root / "test.csv", " please")
    features = root / "train.h5"
    featurize(root / "train.csv", "minilm", ["-1", "-2"], output=features, cache_dir=root / "cache", progress=False)
    model = root / "m.skops"
    xfer("fit", features, "-o", model, "--baseline")
    return model, root


def _html(markdown: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def test_md_escape_leaves_no_html_no_table_break_no_code_span():
    for label in HOSTILE:
        text = md_escape(label)
        assert "\n" not in text and "\r" not in text and "<" not in text and ">" not in text
        assert "|" not in text.replace("\\|", "") and "`" not in text.replace("\\`", "")
        row = _html(f"| class | n |\n|---|---|\n| {text} | 3 |\n")
        assert row.count("<td>") == 2 and "<script" not in row and "<img" not in row and "<b>" not in row
        assert "<code>" not in row and "<em>" not in row and "<a " not in row
    assert md_escape("photos_test.h5") == "photos\\_test.h5"  # shown as it is once rendered


def test_every_fitted_model_has_a_markdown_card_with_its_sections(question_model):
    model, root = question_model
    side = json.loads(model.with_suffix(".json").read_text())
    card = model.with_suffix(".md")
    text = card.read_text()
    assert kind_of(card) == "card-md" and written_by_xfer(card)
    for section in ("## Task", "## Features", "## Data", "## Head", "## Calibration", "## Known limits"):
        assert section in text
    assert side["label_counts"] == {label: 8 for label in PATTERNS}
    assert side["train_sha256"] == file_sha256(root / "train.h5") and side["train_sha256"] in text
    assert side["spec"]["weights_sha256"] in text and side["sha256"] in text
    for row in side["cv"]:  # every candidate, with its mean ± std
        if row["tried"]:
            assert f"| {row['layers']} | " in text and f"{row['mean']:.4f} ± {row['std']:.4f}" in text
    assert side["baseline"]["layers"] == "tf-idf" and "Baseline without transfer (tf-idf)" in text
    assert f"temperature: {side['calibration']['temperature']:.4f}" in text
    page = _html(text)
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "| 8 |" in text and text.count("| 8 |") == 3  # one row per class, none broken
    assert xfer("card", model).output == text  # rendered fresh from the JSON card: the same text


def test_evaluate_adds_exactly_its_numbers_to_the_card(question_model, tmp_path):
    model, root = question_model
    test = root / "test.csv"
    report_path = tmp_path / "r.json"
    out = xfer("evaluate", model, test, "--by", "site", "-o", report_path, "--cache-dir", root / "cache").output
    report = json.loads(report_path.read_text())
    assert str(model.with_suffix(".md")) in out  # listed among what it wrote
    entry = read_card(model).evaluations[report["test"]]
    for key in ("n", "accuracy", "macro_f1", "calibration"):
        assert entry[key] == report[key]  # exactly, not rounded
    for group, row in report["by_group"]["groups"].items():
        assert entry["by_group"]["groups"][group] == {k: row[k] for k in ("count", "accuracy", "macro_f1")}
    assert entry["by"] == "site" and entry["by_group"]["accuracy_gap"] == report["by_group"]["accuracy_gap"]
    text = model.with_suffix(".md").read_text()
    assert f"- accuracy: {report['accuracy']:.4f}" in text and f"- macro-F1: {report['macro_f1']:.4f}" in text
    assert f"ECE {report['calibration']['ece']:.4f}" in text and "&lt;i&gt;south\\|&lt;/i&gt;" in text
    assert f"| north | {report['by_group']['groups']['north']['count']} |" in text
    again = tmp_path / "r2.json"
    xfer("evaluate", model, test, "-o", again, "--cache-dir", root / "cache")  # the same file again: replaced
    card = read_card(model)
    assert list(card.evaluations) == [report["test"]] and "by_group" not in card.evaluations[report["test"]]
    assert card.evaluations[report["test"]]["accuracy"] == json.loads(again.read_text())["accuracy"]
    load_model(model)  # the card changed, the model did not: it still loads, checked
    assert xfer("card", model).output == model.with_suffix(".md").read_text()


def test_cards_from_before_markdown_render_and_new_fields_are_checked(question_model, tmp_path):
    model, _ = question_model
    data = json.loads(model.with_suffix(".json").read_text())
    old = {
        k: v for k, v in data.items() if k not in ("label_counts", "train_sha256", "limits", "baseline", "evaluations")
    }
    copy = tmp_path / "old.skops"
    copy.write_bytes(model.read_bytes())
    copy.with_suffix(".json").write_text(json.dumps(old))
    load_model(copy)  # old cards load
    shown = xfer("card", copy).output
    assert "## Task" in shown and "not recorded" in shown and "Not evaluated yet" in shown
    assert "label_counts" in card_problem({**data, "label_counts": {"a": "many"}})
    assert "evaluations" in card_problem({**data, "evaluations": {"t.csv": 0.9}})
    assert "limits" in card_problem({**data, "limits": "few"})
    assert card_problem(data) == ""


def test_card_of_a_non_model_is_one_line(question_model, tmp_path):
    _, root = question_model
    for path in (root / "train.h5", tmp_path):
        result = xfer("card", path, ok=False)
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
        assert "Traceback" not in result.output


def test_a_markdown_file_xfer_did_not_write_is_never_replaced(question_model, tmp_path):
    model, root = question_model
    mine = tmp_path / "m.md"
    mine.write_text("# my notes\n")
    result = xfer("fit", root / "train.h5", "-o", tmp_path / "m.skops", "--layer", "layer.5", ok=False)
    assert result.exit_code == 1 and "was not written by xfer" in result.output
    assert mine.read_text() == "# my notes\n" and not (tmp_path / "m.skops").exists()
    copy = tmp_path / "m.skops"  # a model saved elsewhere, a user's notes beside it: evaluate leaves both
    copy.write_bytes(model.read_bytes())
    copy.with_suffix(".json").write_text(model.with_suffix(".json").read_text())
    before = copy.with_suffix(".json").read_text()
    xfer("evaluate", copy, root / "test.csv", "-o", tmp_path / "r.json", "--cache-dir", root / "cache")
    assert mine.read_text() == "# my notes\n" and copy.with_suffix(".json").read_text() == before


def test_a_model_by_url_or_changed_is_not_recorded(question_model, tmp_path):
    model, _ = question_model
    report = {"test": "/data/t.csv", "n": 3, "accuracy": 1.0, "macro_f1": 1.0, "model_sha256": ""}
    assert record_evaluation("s3://bucket/m.skops", report) is None
    changed = tmp_path / "c.skops"
    changed.write_bytes(model.read_bytes() + b"\0")  # loads only with --trust: its numbers are not the card's
    changed.with_suffix(".json").write_text(model.with_suffix(".json").read_text())
    assert record_evaluation(changed, report) is None and not changed.with_suffix(".md").exists()


def test_save_model_writes_the_card_for_library_callers_too(question_model, tmp_path):
    _, root = question_model
    result = fit(root / "train.h5", "prototype", "layer.5", params={})
    path = save_model(result.model, result.card, tmp_path / "p.skops")
    text = path.with_suffix(".md").read_text()
    assert "not chosen by cross-validation" in text and "prototype" in text
    assert text == render_model_card(json.loads(path.with_suffix(".json").read_text()), "p.skops")


def test_a_tuned_backbone_card_says_what_was_kept_and_why(tmp_path):
    trials = [
        {"schedule": "head-then-all", "best_val_accuracy": 0.91, "trainable_parameters": 12, "seconds": 3.0},
        {"schedule": "last <b>stage</b>", "best_val_accuracy": 0.85, "trainable_parameters": 5, "seconds": 2.0},
    ]
    report = TuneReport(
        base="efficientnet_lite0",
        modality="image",
        output=str(tmp_path),
        items=40,
        data_sha256="ab" * 32,
        schedule={"name": "head-then-all", "epochs": 3},
        classes=["cat", "<dog>"],
        chosen="head-then-all",
        probe_val_accuracy=0.8,
        best_val_accuracy=0.91,
        trials=trials,
        trainable_parameters=12,
        budget_s=300.0,
        notes=["fine-tuning beat the probe"],
    )
    text = render_tuned_card(asdict(report))
    assert "kept: head-then-all: best validation accuracy 0.9100 against the frozen probe's 0.8000" in text
    assert "| frozen (probe) | 0.8000 |" in text and "| last &lt;b&gt;stage&lt;/b&gt; | 0.8500 |" in text
    assert "ab" * 32 in text and "&lt;dog&gt;" in text and "of a 300 s budget" in text
    (tmp_path / "report.json").write_text(json.dumps(asdict(report)))
    assert xfer("card", tmp_path).output == text
    frozen = render_tuned_card({**asdict(report), "chosen": "frozen"})
    assert "no schedule beat the frozen backbone's probe on validation (0.8000)" in frozen
