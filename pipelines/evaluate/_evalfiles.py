"""What an evaluation writes for people to act on: every item's prediction with its path or text,
the misclassified items, precision-recall curves per class, and the HTML report.

Every figure's title names the model and the test data; the confusion matrix is normalised by row
(the share of each true class), since by raw counts a small class looks empty.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featurizer.storage import write_csv
from pipelines.heads import unit_rows
from pipelines.report import Report, embedding_map, map_sample, pyplot, save_png

MAX_LEGEND = 12  # classes named in the PR legend; more would hide the curves


def prediction_rows(ids, sources, y, classes, scores) -> tuple[list[str], list[list]]:
    """Header and rows: id, source, label, predicted, correct, confidence (probability of the
    predicted class) and the probability of the true class (blank when it is not a class of the model)."""
    column = {c: i for i, c in enumerate(classes)}
    predicted = np.asarray(classes)[scores.argmax(axis=1)]
    rows = []
    for i, source, truth, guess, row in zip(ids, sources, y, predicted, scores):
        p_true = f"{row[column[truth]]:.4f}" if truth in column else ""
        rows.append([i, source, truth, guess, int(truth == guess), f"{row.max():.4f}", p_true])
    return ["id", "source", "label", "predicted", "correct", "confidence", "p_label"], rows


def write_prediction_files(predictions: Path, errors: Path, ids, sources, y, classes, scores) -> None:
    """Per-item predictions, and the misclassified ones alone, most confident mistakes first."""
    header, rows = prediction_rows(ids, sources, y, classes, scores)
    write_csv(predictions, header, rows)
    wrong = sorted((r for r in rows if not r[4]), key=lambda r: -float(r[5]))
    write_csv(errors, header, wrong)


def plot_precision_recall(y, classes, scores, path: str | os.PathLike, names: str) -> Path:
    """One precision-recall curve per class (one-vs-rest) with its average precision."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    shown = 0
    for j, c in enumerate(classes):
        truth = np.asarray(y) == c
        if not truth.any():
            continue
        precision, recall, _ = precision_recall_curve(truth, scores[:, j])
        ap = average_precision_score(truth, scores[:, j])
        label = f"{c} (AP {ap:.2f})" if shown < MAX_LEGEND else None
        ax.plot(recall, precision, lw=1.2, label=label)
        shown += 1
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{names}\nprecision-recall per class (one against the rest)", fontsize=10)
    if shown:
        ax.legend(fontsize=7, loc="lower left", ncol=2 if shown > 6 else 1)
    fig.tight_layout()
    return save_png(fig, path)


def evaluation_report(
    report: dict, X, y, classes, scores, ids, sources, modality: str, map_method: str = "auto", seed: int = 0
):
    """The HTML report of an evaluation: the map of the test items coloured by their label with the
    errors ringed, the worst errors, the row-normalised confusion matrix and per-class metrics."""

    predicted = np.asarray(classes)[scores.argmax(axis=1)]
    confidence = scores.max(axis=1)
    wrong = np.flatnonzero(predicted != y)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    marks = {int(i): f"predicted '{predicted[i]}' ({confidence[i]:.2f}), labelled '{y[i]}'" for i in wrong}
    items = [(i, str(c), s) for i, c, s in zip(ids, y, sources)]
    rows = map_sample(len(ids), list(marks), seed=seed)
    xy, method = embedding_map(unit_rows(X[rows]), map_method, seed)
    cards = [(int(i), f"{y[i]} -> {predicted[i]} ({confidence[i]:.2f})") for i in wrong]
    galleries = [
        {"title": "Worst errors", "note": "Misclassified items, most confident mistakes first.", "cards": cards}
    ]
    labels = report["labels"]
    counts = np.asarray(report["confusion_matrix"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    confusion = {
        "title": "Confusion matrix",
        "note": "Rows: the true class, normalised to 1 (the share of that class predicted as each column).",
        "header": ["true \\ predicted", *labels],
        "rows": [[label, *map(float, row)] for label, row in zip(labels, shares)],
        "heat": True,
    }
    per_class = {
        "title": "Per class",
        "header": ["class", "precision", "recall", "F1", "support"],
        "rows": [
            [c, m["precision"], m["recall"], m["f1-score"], int(m["support"])] for c, m in report["per_class"].items()
        ],
    }
    summary = {"items": report["n"], "accuracy": f"{report['accuracy']:.3f}", "macro-F1": f"{report['macro_f1']:.3f}"}
    summary["errors"] = len(wrong)
    names = " on ".join(Path(report[k]).name for k in ("model", "test") if report.get(k))
    title = f"Evaluation of {names}" if names else "Evaluation"
    tables = [confusion, per_class]
    return Report(title, modality, items, summary, rows, xy, method, marks=marks, galleries=galleries, tables=tables)
