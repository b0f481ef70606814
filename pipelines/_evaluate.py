"""Using a saved model: features that match its spec, predictions, and an evaluation report.

A model only accepts features made exactly as its training features were (same model, weights,
layers, pooling, preprocessing, precision). Raw inputs are featurized with the recorded spec
through the shared cache; a feature file with another spec is refused with the differences named.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, FeatureSpec, FeaturizerError, featurize
from featurizer._spec import POOLED_LAYERS
from featurizer._store import default_cache_dir
from pipelines._fit import head_of, read_xy
from pipelines._heads import scores_of
from pipelines._saved import ModelCard


def spec_differences(needed: FeatureSpec, found: FeatureSpec) -> list[str]:
    """What differs between the features a model needs and the ones offered (empty if compatible)."""
    out = []
    for name in ("model", "preprocessing", "precision"):
        if getattr(needed, name) != getattr(found, name):
            out.append(f"{name}: model needs {getattr(needed, name)!r}, got {getattr(found, name)!r}")
    if needed.weights_sha256 or found.weights_sha256:
        if needed.weights_sha256 != found.weights_sha256:
            out.append(f"weights sha256: model needs {needed.weights_sha256}, got {found.weights_sha256}")
    elif needed.weights != found.weights:
        out.append(f"weights: model needs {needed.weights!r}, got {found.weights!r}")
    for layer, pool in zip(needed.layers, needed.pooling):
        if layer not in found.layers:
            out.append(f"layer {layer!r} is missing")
        elif found.pooling[found.layers.index(layer)] != pool:
            out.append(f"layer {layer!r}: pooling {pool!r} needed, got {found.pooling[found.layers.index(layer)]!r}")
    return out


def check_compatible(card: ModelCard, found: FeatureSpec, where: str) -> None:
    diffs = spec_differences(card.spec, found)
    if diffs:
        raise FeaturizerError(f"{where} does not match the model's features: " + "; ".join(diffs))


def model_features(
    card: ModelCard,
    data: str | os.PathLike,
    *,
    cache_dir=None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(X, labels, ids) for ``data``: a feature file (checked against the card) or raw inputs (featurized)."""
    data = Path(data)
    if data.suffix in (".h5", ".hdf5") and data.is_file():
        features_path = data
    else:
        pooling = next((p for p, layer in zip(card.spec.pooling, card.spec.layers) if layer not in POOLED_LAYERS), None)
        features_path = (
            Path(cache_dir or default_cache_dir())
            / "predict"
            / (f"{data.stem or data.resolve().name}-{card.spec.model.replace('/', '_')}.h5")
        )
        report = featurize(
            data,
            card.spec.model,
            list(card.spec.layers),
            pooling,
            output=features_path,
            cache_dir=cache_dir,
            device=device,
            precision=card.spec.precision,
            batch_size=batch_size,
            progress=progress,
        )
        if report.errors:
            print(report.summary())
    with FeatureFile(features_path) as features:
        check_compatible(card, features.spec, str(data))
        X, y = read_xy(features, card.spec.layers)
        return X, y, features.ids


def predict_rows(model, card: ModelCard, X: np.ndarray, ids: list[str]) -> tuple[list[str], list[list]]:
    """CSV header and rows: id, predicted label, one probability column per class."""
    scores = scores_of(head_of(model), X)
    classes = [str(c) for c in model.classes_]
    predicted = np.asarray(classes)[scores.argmax(axis=1)]
    header = ["id", "label", *(f"p_{c}" for c in classes)]
    rows = [[i, p, *(f"{s:.6f}" for s in row)] for i, p, row in zip(ids, predicted, scores)]
    return header, rows


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def evaluate(
    model,
    X: np.ndarray,
    y: np.ndarray,
    *,
    report_path: str | os.PathLike | None = None,
    png_path: str | os.PathLike | None = None,
) -> dict:
    """Accuracy, macro-F1, per-class precision and recall; optionally a JSON report and a confusion-matrix PNG."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    if y is None:
        raise FeaturizerError("the test data has no labels to evaluate against")
    predicted = head_of(model).predict(X)
    labels = sorted(set(map(str, model.classes_)) | set(map(str, y)))
    y, predicted = np.asarray(y).astype(str), np.asarray(predicted).astype(str)
    per_class = classification_report(y, predicted, labels=labels, output_dict=True, zero_division=0)
    report = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "per_class": {c: {k: float(v) for k, v in per_class[c].items()} for c in labels},
        "labels": labels,
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
    }
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(report, indent=2))
    if png_path:
        plot_confusion(report, png_path)
    return report


def plot_confusion(report: dict, path: str | os.PathLike) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = report["labels"]
    size = max(4.5, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.asarray(report["confusion_matrix"]), display_labels=labels).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45 if len(labels) > 4 else "horizontal"
    )
    ax.set_title(
        f"accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}\n{report['n']} items", fontsize=10
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
