"""Feature files as what other tools read: Parquet (pandas, polars, Spark, vector databases) or NumPy.

Parquet: as ``featurizer._parquet`` writes it (a row per item, a list column per layer, the spec
in the metadata). NumPy: a folder with one
``LAYER.npy`` per layer (items x dim, float32), ``ids.txt`` (one id a line, JSON-escaped) and
``spec.json``; ``labels.txt`` when the file has labels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, FeaturizerError
from featurizer.cache import columns_and_layers, read_parquet_features, write_parquet
from featurizer.storage import atomic_output, check_new_output, guarding

__all__ = ["EXPORT_FORMATS", "export", "read_parquet_features"]

EXPORT_FORMATS = ("parquet", "npy")


def export(
    features: str | os.PathLike, output: str | os.PathLike, format: str = "parquet", force: bool = False
) -> Path:
    """Write the feature file ``features`` as Parquet (a file) or NumPy (a folder); returns the output."""
    if format not in EXPORT_FORMATS:
        raise FeaturizerError(f"--format is one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
    with guarding(features):
        kind = "export" if format == "npy" else "features"
        output = check_new_output(output, force, folder=format == "npy", kind=kind)
        with FeatureFile(features) as f:
            columns, layers = columns_and_layers(f)
            spec = f.spec.to_json()
        with atomic_output(output, kind=kind) as tmp:
            (write_parquet if format == "parquet" else _write_npy)(tmp, columns, layers, spec)
    return output


def _write_npy(folder: Path, columns: dict, layers: dict[str, np.ndarray], spec: str) -> None:
    folder.mkdir(parents=True)
    for name, vectors in layers.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    (folder / "ids.txt").write_text("".join(json.dumps(i) + "\n" for i in columns["id"]))
    if "label" in columns:
        (folder / "labels.txt").write_text("".join(json.dumps(c) + "\n" for c in columns["label"]))
    (folder / "spec.json").write_text(spec)
