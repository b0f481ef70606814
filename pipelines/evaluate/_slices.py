"""Per-group evaluation: a head can be accurate on average and fail one group of users.

``xfer evaluate --by`` takes the groups from a column of the input table (CSV, TSV, JSONL) or
from a CSV of ``id,group`` (folders, feature files). Metrics per group come from fairlearn's
``MetricFrame``; per-class recall, the worst group and the largest gaps are reported beside them.
The groups are read by ``pipelines.heads.read_groups``, the rule ``xfer fit --groups`` uses too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featurizer import MissingPackageError
from pipelines.heads import NO_GROUP, read_groups  # noqa: F401 - the groups' reader, shared with ``xfer fit --groups``
from pipelines.report import pyplot, save_png


def group_report(y: np.ndarray, predicted: np.ndarray, groups: np.ndarray, labels: list[str]) -> dict:
    """Per group: count, accuracy, macro-F1 (fairlearn's MetricFrame) and per-class recall; the worst
    group, the largest gaps, and a note on groups too small to judge."""
    try:
        from fairlearn.metrics import MetricFrame, count
    except ImportError:
        raise MissingPackageError("per-group evaluation needs fairlearn: pip install 'featurizer[fair]'") from None
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    def macro_f1(truth, guess):
        return f1_score(truth, guess, labels=labels, average="macro", zero_division=0)

    frame = MetricFrame(
        metrics={"count": count, "accuracy": accuracy_score, "macro_f1": macro_f1},
        y_true=y,
        y_pred=predicted,
        sensitive_features=groups,
    )
    table = frame.by_group
    per_group = {}
    for group in table.index:
        inside = groups == group
        recall = recall_score(y[inside], predicted[inside], labels=labels, average=None, zero_division=0)
        present = set(y[inside])
        per_group[str(group)] = {
            "count": int(table.loc[group, "count"]),
            "accuracy": float(table.loc[group, "accuracy"]),
            "macro_f1": float(table.loc[group, "macro_f1"]),
            "recall": {c: float(r) for c, r in zip(labels, recall) if c in present},
        }
    worst = min(per_group, key=lambda g: per_group[g]["accuracy"])
    small = sorted(g for g, row in per_group.items() if row["count"] < 2)
    return {
        "groups": per_group,
        "worst_group": worst,
        "worst_group_accuracy": per_group[worst]["accuracy"],
        "accuracy_gap": float(frame.difference()["accuracy"]),
        "macro_f1_gap": float(frame.difference()["macro_f1"]),
        "small_groups": small,
    }


def plot_groups(report: dict, overall: float, path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy per group as bars (count on each), the overall accuracy as a line."""

    plt = pyplot()

    groups = sorted(report["groups"], key=lambda g: report["groups"][g]["accuracy"])
    accuracy = [report["groups"][g]["accuracy"] for g in groups]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.4 * len(groups) + 1.2)))
    bars = ax.barh(groups, accuracy, color=["tab:red" if g == report["worst_group"] else "tab:blue" for g in groups])
    for bar, g in zip(bars, groups):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"n={report['groups'][g]['count']}",
                va="center", fontsize=8)  # fmt: skip
    ax.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.3f}")
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("accuracy")
    worst = f"worst group {report['worst_group']!r}; gap {report['accuracy_gap']:.3f}"
    ax.set_title(f"{title}\n{worst}".strip(), fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
