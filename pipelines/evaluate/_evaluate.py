"""Using a saved model: features that match its spec, predictions, and an evaluation report.

A model only accepts features made exactly as its training features were (same model, weights,
layers, pooling, preprocessing, precision). Raw inputs are featurized with the recorded spec
through the shared cache; a feature file with another spec is refused with the differences named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from featurizer import Extractor, FeatureFile, FeaturizerError, ReadOptions, RunOptions
from featurizer.cache import is_feature_file
from featurizer.engine import default_feature_name, featurize_with, inputs_for
from featurizer.spec import check_compatible
from featurizer.storage import absolute, atomic_write_text, claim, default_outputs, guarding, location, write_csv
from pipelines.evaluate._evalfiles import evaluation_report, plot_precision_recall, write_prediction_files
from pipelines.evaluate._slices import group_report, plot_groups, read_groups
from pipelines.fit import (
    evaluate_tasks,
    fit_fixed,
    labelled,
    overlap_warnings,
    read_xy,
    task_prediction_rows,
    unknown_label_warnings,
)
from pipelines.heads import FairMixture, calibration_report, compare_mitigated, plot_reliability, scores_of
from pipelines.models import ModelCard, head_of, load_model, record_evaluation
from pipelines.report import check_report_path, pyplot, save_png, write_report

# What each of evaluate's outputs is, for the output guard: one kind never replaces another.
EVALUATE_KINDS = {
    "output": "report",
    "png": "picture",
    "reliability": "picture",
    "groups": "picture",
    "pr": "picture",
    "predictions": "table",
    "errors": "table",
    "html": "page",
}


class ModelInputs(NamedTuple):
    X: np.ndarray
    y: np.ndarray | None
    ids: list[str]
    sources: list[str] | None
    views: np.ndarray | None = None  # views x items x dim, for test-time augmentation
    columns: dict | None = None  # the input table's columns, for the tasks of a multi-task model
    labels: list[str] | None = None  # the file's own labels, for a task fitted on them


def model_features(
    card: ModelCard,
    data: str | os.PathLike,
    run: RunOptions | None = None,
    read: ReadOptions | None = None,
    tta: int = 0,
) -> ModelInputs:
    """(X, labels, ids, sources, views) for ``data``: a feature file (checked against the card) or raw inputs.

    Raw inputs are featurized with exactly the card's spec (``Extractor(card.spec)``: same model,
    weights found by hash, layers, pooling, precision and runtime), through the shared cache.
    ``tta=N`` also gives N augmented views of each image (a feature file must hold them).
    """
    run = run or RunOptions()
    data = location(data)
    if tta and card.spec.modality != "image":
        raise FeaturizerError("test-time augmentation makes views of images; this model reads texts")
    if tta and card.tasks:
        raise FeaturizerError("test-time augmentation is for single-task classifiers; this model has several tasks")
    if is_feature_file(data):
        features_path = data
    else:
        extractor = Extractor(card.spec, run)
        inputs = inputs_for(extractor, data, read)
        features_path = run.cache() / "predict" / default_feature_name(inputs.origin or str(data), card.spec)
        report = featurize_with(extractor, inputs, features_path, force=True, augment=tta)
        if report.errors:
            print(report.summary())
    with FeatureFile(features_path) as features:
        check_compatible(card.spec, features.spec, str(data))
        X, y = read_xy(features, card.spec.layers)
        columns = features.columns
        if card.label_column:  # fitted on a column of the input: its cells are the test labels, if it has them
            cells = columns.get(card.label_column)
            y = None if cells is None else np.asarray(cells, dtype=object).astype(str)
        views = None
        if tta:
            if features.views < tta:
                raise FeaturizerError(
                    f"{data} holds {features.views} augmented views per image, not {tta}: featurize it with "
                    f"--augment {tta}, or give the raw images"
                )
            views = np.concatenate([features.read_views(name)[:tta] for name in card.spec.layers], axis=2)
        return ModelInputs(X, y, features.ids, features.sources, views, columns, features.labels)


def averaged_scores(model, X: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
    """Class scores of the head for ``X``, averaged with those of its augmented views when given."""
    head = head_of(model)
    scores = scores_of(head, X)
    if views is None or not len(views):
        return scores
    return (scores + sum(scores_of(head, view) for view in views)) / (len(views) + 1)


def predict_rows(
    model, card: ModelCard, X: np.ndarray, ids: list[str], views: np.ndarray | None = None
) -> tuple[list[str], list[list]]:
    """CSV header and rows: id, predicted label, one probability column per class (averaged over views)."""
    scores = averaged_scores(model, X, views)
    classes = [str(c) for c in model.classes_]
    predicted = np.asarray(classes)[scores.argmax(axis=1)]
    header = ["id", "label", *(f"p_{c}" for c in classes)]
    rows = [[i, p, *(f"{s:.6f}" for s in row)] for i, p, row in zip(ids, predicted, scores)]
    return header, rows


def evaluate(
    model,
    X: np.ndarray,
    y: np.ndarray,
    *,
    report_path: str | os.PathLike | None = None,
    png_path: str | os.PathLike | None = None,
    reliability_path: str | os.PathLike | None = None,
    about: dict | None = None,
    views: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    groups_png: str | os.PathLike | None = None,
    notes: list[str] | None = None,
    items: tuple[list[str], list[str]] | None = None,
    files: dict | None = None,
) -> dict:
    """Accuracy, macro-F1, per-class precision and recall, and calibration (expected calibration
    error and Brier score on the items whose label is a class of the model); optionally a JSON
    report, a confusion-matrix PNG and a reliability diagram.

    ``about`` (what was scored: model file, test data, spec) is written at the top of the report.
    ``items`` (ids, sources) name the test items for ``files`` (``pipelines._evalfiles``): keys
    ``predictions`` and ``errors`` (CSVs), ``pr`` (PNG), ``html`` (the report), ``map`` and ``modality``.
    """
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    y = None if y is None else np.asarray(y).astype(str)
    if y is not None:  # the rows ``labelled`` keeps
        views = None if views is None else views[:, y != ""]
        groups = None if groups is None else np.asarray(groups)[y != ""]
        if items is not None:
            keep = np.flatnonzero(y != "")
            items = ([items[0][i] for i in keep], [items[1][i] for i in keep])
    X, y, warnings = labelled(X, y, "the test data")
    warnings = [*(notes or []), *warnings]
    if y is None:
        raise FeaturizerError("the test data has no labels to evaluate against")
    classes = [str(c) for c in model.classes_]
    warnings += unknown_label_warnings(y, classes, "the model")
    if views is None:
        predicted = np.asarray(head_of(model).predict(X)).astype(str)
    else:  # test-time augmentation: the class of the averaged scores
        predicted = np.asarray(classes)[averaged_scores(model, X, views).argmax(axis=1)]
    labels = sorted(set(classes) | set(y))
    per_class = classification_report(y, predicted, labels=labels, output_dict=True, zero_division=0)
    report = {
        **(about or {}),
        "warnings": warnings,
        "unknown_labels": {c: int((y == c).sum()) for c in sorted(set(y) - set(classes))},
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "per_class": {c: {k: float(v) for k, v in per_class[c].items()} for c in labels},
        "labels": labels,
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
    }
    known = np.isin(y, classes)
    if known.any():
        proba = averaged_scores(model, X[known], None if views is None else views[:, known])
        column = {c: i for i, c in enumerate(classes)}
        truth = np.array([column[c] for c in y[known]])
        report["calibration"] = calibration_report(proba, truth)
        if reliability_path:
            names = " on ".join(Path(report[k]).name for k in ("model", "test") if report.get(k))
            plot_reliability(proba, truth, reliability_path, names)
    if groups is not None:
        report["by_group"] = group_report(y, predicted, groups, labels)
        if isinstance(head_of(model), FairMixture):  # the gap it was fitted to close, before and after, on these items
            report["mitigation"] = compare_mitigated(head_of(model), X, y, groups)
        if report["by_group"]["small_groups"]:
            shown = ", ".join(map(repr, report["by_group"]["small_groups"][:5]))
            warnings.append(f"groups with a single item ({shown}): their accuracy is 0 or 1 and says little")
        if groups_png:
            names = " on ".join(Path(report[k]).name for k in ("model", "test") if report.get(k))
            plot_groups(report["by_group"], report["accuracy"], groups_png, names)
    if report_path:
        atomic_write_text(report_path, json.dumps(report, indent=2))
    if png_path:
        plot_confusion(report, png_path)
    if files:
        write_evaluation_files(model, report, X, y, views, items, files)
    return report


def write_evaluation_files(model, report: dict, X, y, views, items, files: dict) -> None:
    """The per-item CSVs, precision-recall curves and HTML report that ``files`` asks for."""

    classes = [str(c) for c in model.classes_]
    scores = averaged_scores(model, X, views)
    ids, sources = items or ([str(i) for i in range(len(y))], [""] * len(y))
    names = " on ".join(Path(report[k]).name for k in ("model", "test") if report.get(k))
    if files.get("predictions"):
        write_prediction_files(files["predictions"], files["errors"], ids, sources, y, classes, scores)
    if files.get("pr"):
        plot_precision_recall(y, classes, scores, files["pr"], names)
    if files.get("html"):
        modality = files.get("modality", "image")
        page = evaluation_report(report, X, y, classes, scores, ids, sources, modality, files.get("map", "auto"))
        write_report(page, files["html"])


def plot_confusion(report: dict, path: str | os.PathLike) -> Path:
    """The confusion matrix normalised by row (the share of each true class predicted as each
    column): by raw counts a small class looks empty. The counts stay in the JSON report."""

    plt = pyplot()
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = report["labels"]
    size = max(4.5, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    counts = np.asarray(report["confusion_matrix"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ConfusionMatrixDisplay(shares, display_labels=labels).plot(
        ax=ax,
        cmap="Blues",
        colorbar=False,
        values_format=".2f",
        xticks_rotation=45 if len(labels) > 4 else "horizontal",
        im_kw={"vmin": 0, "vmax": 1},
    )
    names = " on ".join(Path(report[k]).name for k in ("model", "test") if report.get(k))
    ax.set_title(
        f"{names}\naccuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}, {report['n']} items; "
        "rows: share of each true class",
        fontsize=10,
    )
    fig.tight_layout()
    return save_png(fig, path)


def predict_file(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    trust: bool = False,
    run: RunOptions | None = None,
    read: ReadOptions | None = None,
    tta: int = 0,
) -> dict[str, int]:
    """``xfer predict``: predictions of a saved model for ``data`` written as CSV; returns counts per
    label (for a multi-task model, rows per task).

    ``tta=N`` averages the probabilities of each image with those of N augmented views of it.
    """
    model, card = load_model(model_path, trust=trust)
    found = model_features(card, data, run, read, tta)
    check_width(model, found.X, data)
    if card.tasks:
        header, rows = task_prediction_rows(head_of(model), found.X, found.ids)
        write_csv(output, header, rows)
        return {task["name"]: len(rows) for task in card.tasks}
    header, rows = predict_rows(model, card, found.X, found.ids, found.views)
    write_csv(output, header, rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
    return counts


def evaluate_file(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    report_path: str | os.PathLike | None = None,
    png_path: str | os.PathLike | None = None,
    reliability_path: str | os.PathLike | None = None,
    *,
    trust: bool = False,
    run: RunOptions | None = None,
    read: ReadOptions | None = None,
    tta: int = 0,
    by: str | None = None,
    groups_png: str | os.PathLike | None = None,
    files: dict | None = None,
) -> dict:
    """``xfer evaluate``: a saved model scored on labelled ``data``; the report names the model, data and spec.

    ``files``: the per-item CSVs, PR curves and HTML report to write (see ``evaluate``).

    ``by``: a column of the input table, or a CSV of id,group, to report metrics per group.
    """
    if files and files.get("html"):
        check_report_path(files["html"])  # before the work, not after
    model, card = load_model(model_path, trust=trust)
    if card.tasks and by:
        raise FeaturizerError("--by reports a single classifier per group; this model has several tasks")
    found = model_features(card, data, run, read, tta)
    X, y = found.X, found.y
    about = {
        "format": "featurizer-evaluation/1",
        "model": absolute(model_path),
        "model_sha256": card.sha256,
        "test": absolute(data),
        "spec": json.loads(card.spec.to_json()),
        "tta_views": tta,
    }
    check_width(model, X, data)
    scored = X if y is None or card.tasks else X[np.asarray(y).astype(str) != ""]
    overlap = training_overlap(card, data, scored)
    if card.tasks:
        report = {**about, **evaluate_tasks(head_of(model), X, found.ids, found.columns, found.labels)}
        report["warnings"] = [*overlap, *report.get("warnings", [])]
        if report_path:
            atomic_write_text(report_path, json.dumps(report, indent=2))
        return report
    groups, notes = None, []
    if by:
        groups, notes = read_groups(by, data, found.ids, card.spec.modality, read)
    paths = {"report_path": report_path, "png_path": png_path, "reliability_path": reliability_path}
    slices = {"groups": groups, "groups_png": groups_png, "notes": [*overlap, *notes]}
    if card.adaptation and card.adaptation.get("method") != "none":  # the same head unadapted, side by side
        about["without_adaptation"] = unadapted_accuracy(card, X, y)
    items = (found.ids, found.sources or [""] * len(found.ids))
    files = {**(files or {}), "modality": card.spec.modality}
    return evaluate(model, X, y, **paths, about=about, views=found.views, **slices, items=items, files=files)


def evaluate_to_files(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    png: str | os.PathLike | None = None,
    html: str | os.PathLike | None = None,
    by: str | None = None,
    map_method: str = "auto",
    **options,
) -> tuple[dict, dict]:
    """``xfer evaluate``: ``evaluate_file`` with every output named (beside the model, by the test
    data, where not given) and claimed through the output guard before any work; the headline
    numbers are added to the model's card (``record_evaluation``). Returns the report and the
    outputs by role (report, png, reliability, groups, predictions, errors, pr, html, card)."""
    named = default_outputs("evaluate", location(model_path), data, png=png, by=bool(by))
    outputs = {**named, "output": output or named["output"], "html": html}
    with guarding(model_path, data, *([by] if by and location(by).suffix == ".csv" else [])):
        for role, written in outputs.items():
            if written is not None:  # never an input, nor a file xfer did not write, nor another kind of output
                claim(written, kind=EVALUATE_KINDS.get(role))
        files = {k: outputs[k] for k in ("predictions", "errors", "pr", "html")} | {"map": map_method}
        paths = (outputs["output"], outputs["png"], outputs["reliability"])
        report = evaluate_file(model_path, data, *paths, by=by, groups_png=outputs["groups"], files=files, **options)
        outputs["card"] = record_evaluation(model_path, report, by)  # its MODEL.md, None where not updated
    return report, outputs


def check_width(model, X: np.ndarray, where) -> None:
    """Refuse features of another width than the model reads (a card and a model that do not belong
    together, where the backbone's registry could not tell before featurizing)."""
    width = getattr(head_of(model), "n_features_in_", None)
    if isinstance(width, int | np.integer) and X.ndim == 2 and X.shape[1] != int(width):
        raise FeaturizerError(
            f"the card's layers give {X.shape[1]} values per item of {where}, but the model expects {int(width)}: "
            "the model and its card do not belong together"
        )


def training_overlap(card: ModelCard, data, X: np.ndarray) -> list[str]:
    """A warning when test items are items of the model's training file (``card.train``), by
    identical vectors; nothing when that file is gone or no longer holds the card's layers."""

    if not card.train:
        return []
    try:
        if not location(card.train).is_file():
            return []
        with FeatureFile(card.train) as f:
            X_train = read_xy(f, card.spec.layers)[0]
    except (FeaturizerError, OSError):
        return []
    return overlap_warnings(X_train, X, card.train, str(data), "the model's training file")


def unadapted_accuracy(card: ModelCard, X: np.ndarray, y: np.ndarray | None) -> float | None:
    """Test accuracy of the card's head and hyperparameters fitted on its training file without the
    adaptation; None when the training file is gone or the test data has no labels."""
    from sklearn.metrics import accuracy_score

    if y is None or not Path(card.train).is_file():
        return None
    with FeatureFile(card.train) as f:
        X_train, y_train, _ = labelled(*read_xy(f, card.spec.layers, card.label_column or None), card.train)
    params = {k: v for k, v in card.params.items() if k != "normalise"}
    normalise = card.params.get("normalise")
    try:
        head = fit_fixed(X_train, y_train, card.head, None if normalise == "default" else normalise, params).model
    except (ValueError, TypeError) as err:  # a card whose head or params are not this project's
        raise FeaturizerError(
            f"the card's head {card.head!r} with {card.params} cannot be fitted again for the comparison without "
            f"adaptation: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    y = np.asarray(y).astype(str)
    keep = y != ""
    return float(accuracy_score(y[keep], np.asarray(head.predict(X[keep])).astype(str)))
