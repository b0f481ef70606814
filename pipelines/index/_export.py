"""Feature files as what other tools read: Parquet (pandas, polars, Spark, vector databases) or NumPy;
or as a smaller feature file (h5, with ``quantization``), which every xfer command reads as it reads float ones.

With ``quantization`` (int8, binary: ``featurizer.cache._quantize``) each layer is stored as codes:
Parquet keeps the calibration in ``featurizer.quantization``, NumPy in ``quantization.json``, a
feature file beside each layer.

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
from featurizer.cache import (
    FeatureFileWriter,
    check_quantization,
    columns_and_layers,
    quantize,
    read_parquet_features,
    write_parquet,
)
from featurizer.storage import atomic_output, check_new_output, guarding

__all__ = ["EXPORT_FORMATS", "export", "read_parquet_features"]

EXPORT_FORMATS = ("parquet", "npy", "h5")


def export(
    features: str | os.PathLike,
    output: str | os.PathLike,
    format: str = "parquet",
    force: bool = False,
    quantization: str | None = None,
    calibration: str | os.PathLike | None = None,
) -> Path:
    """Write the feature file ``features`` as Parquet (a file), NumPy (a folder) or a feature file,
    quantised if asked (``calibration``: a quantised feature file whose ranges to reuse, e.g. the
    training set's for its test set); returns the output."""
    if format not in EXPORT_FORMATS:
        raise FeaturizerError(f"--format is one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
    if format == "h5" and not check_quantization(quantization):
        raise FeaturizerError("--format h5 writes a quantised copy of the feature file: add --quantize int8 or binary")
    check_quantization(quantization)
    if calibration is not None and format != "h5":
        raise FeaturizerError("--calibration applies to --format h5 (a quantised feature file)")
    with guarding(features):
        kind = "export" if format == "npy" else "features"
        output = check_new_output(output, force, folder=format == "npy", kind=kind)
        with atomic_output(output, kind=kind) as tmp, FeatureFile(features) as f:
            if format == "h5":
                _write_quantized_file(tmp, f, quantization, _calibration_of(calibration, f.layers))
            else:
                columns, layers = columns_and_layers(f)
                write = write_parquet if format == "parquet" else _write_npy
                write(tmp, columns, layers, f.spec.to_json(), quantization=quantization)
    return output


def _calibration_of(path: str | os.PathLike | None, layers: list[str]) -> dict[str, dict]:
    """Each layer's calibration in the quantised feature file ``path`` (none: each layer calibrates itself)."""
    if path is None:
        return {}
    with FeatureFile(path) as c:
        found = {layer: c.quantization(layer) for layer in layers if layer in c.layers}
    missing = [layer for layer in layers if not found.get(layer)]
    if missing:
        raise FeaturizerError(f"--calibration {path} holds no quantised layer {missing[0]!r}")
    return found


def _write_quantized_file(path: Path, f: FeatureFile, quantization: str, calibration: dict[str, dict]) -> None:
    """A feature file of ``f``'s items and columns, each layer stored as codes with its calibration."""
    origin = str(f.attrs.get("origin", ""))
    with FeatureFileWriter(path, f.spec, f.ids, f.labels, sources=f.sources, columns=f.columns, origin=origin) as w:
        for layer in f.layers:
            w.write_quantized(layer, f.read(layer), quantization, calibration.get(layer))
        if f.errors:
            w.write_errors(f.errors)


def _write_npy(
    folder: Path, columns: dict, layers: dict[str, np.ndarray], spec: str, quantization: str | None = None
) -> None:
    folder.mkdir(parents=True)
    infos = {}
    for name, vectors in layers.items():
        values = np.ascontiguousarray(vectors, dtype=np.float32)
        if quantization:
            values, infos[name] = quantize(values, quantization)
        np.save(folder / f"{name}.npy", values)
    if infos:
        (folder / "quantization.json").write_text(json.dumps(infos))
    (folder / "ids.txt").write_text("".join(json.dumps(i) + "\n" for i in columns["id"]))
    if "label" in columns:
        (folder / "labels.txt").write_text("".join(json.dumps(c) + "\n" for c in columns["label"]))
    (folder / "spec.json").write_text(spec)
