"""Feature files as what other tools read: Parquet (pandas, polars, Spark, vector databases) or NumPy.

Parquet: one row per item with ``id``, ``label`` and ``source`` where the file has them, and one
fixed-size list column of float32 per layer; the feature spec is in the schema's metadata
(``featurizer.spec``), so the vectors stay tied to what made them. NumPy: a folder with one
``LAYER.npy`` per layer (items x dim, float32), ``ids.txt`` (one id a line, JSON-escaped) and
``spec.json``; ``labels.txt`` when the file has labels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, FeaturizerError
from featurizer._atomic import atomic_output, check_new_output

FORMATS = ("parquet", "npy")
SPEC_KEY = b"featurizer.spec"


def export(
    features: str | os.PathLike, output: str | os.PathLike, format: str = "parquet", force: bool = False
) -> Path:
    """Write the feature file ``features`` as Parquet (a file) or NumPy (a folder); returns the output."""
    if format not in FORMATS:
        raise FeaturizerError(f"--format is one of {', '.join(FORMATS)}, not {format!r}")
    output = check_new_output(output, force)
    with FeatureFile(features) as f:
        columns = {"id": f.ids}
        if f.labels is not None:
            columns["label"] = f.labels
        if f.sources is not None:
            columns["source"] = f.sources
        layers = {name: f.read(name) for name in f.layers}
        spec = f.spec.to_json()
    with atomic_output(output) as tmp:
        (_write_parquet if format == "parquet" else _write_npy)(tmp, columns, layers, spec)
    return output


def _write_parquet(path: Path, columns: dict, layers: dict[str, np.ndarray], spec: str) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        from featurizer._errors import MissingPackageError

        raise MissingPackageError("Parquet needs pyarrow: pip install 'featurizer[parquet]'") from None

    arrays = {name: pa.array(values, pa.string()) for name, values in columns.items()}
    for name, vectors in layers.items():
        if name in arrays:
            raise FeaturizerError(f"layer {name!r} has the name of a column; rename nothing, export as npy")
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        arrays[name] = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    table = pa.table(arrays).replace_schema_metadata({SPEC_KEY: spec.encode()})
    pq.write_table(table, path)


def _write_npy(folder: Path, columns: dict, layers: dict[str, np.ndarray], spec: str) -> None:
    folder.mkdir(parents=True)
    for name, vectors in layers.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    (folder / "ids.txt").write_text("".join(json.dumps(i) + "\n" for i in columns["id"]))
    if "label" in columns:
        (folder / "labels.txt").write_text("".join(json.dumps(c) + "\n" for c in columns["label"]))
    (folder / "spec.json").write_text(spec)


def read_parquet_features(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray], str]:
    """(columns, layers, spec JSON) of a Parquet file written by ``export``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if SPEC_KEY not in meta:
        raise FeaturizerError(f"{path} was not written by xfer export (no feature spec in its metadata)")
    columns, layers = {}, {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            layers[name] = column.flatten().to_numpy().reshape(len(column), column.type.list_size)
        else:
            columns[name] = column.to_pylist()
    return columns, layers, meta[SPEC_KEY].decode()
