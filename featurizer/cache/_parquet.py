"""Vectors as Parquet: one row per item (``id``, ``label``, ``source`` where known) and one
fixed-size list column of float32 per layer (int8, or packed bits as uint8, when quantised: the
calibration in ``featurizer.quantization``); the feature spec in the schema's metadata
(``featurizer.spec``), so the vectors stay tied to what made them. Written by ``xfer export
--format parquet`` and by ``xfer embed --format parquet`` (one file per shard)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from featurizer.base import FeaturizerError
from featurizer.cache._featurefile import FeatureFile
from featurizer.cache._quantize import check_quantization, dequantize, quantize, read_info
from featurizer.storage import pyarrow_modules

SPEC_KEY = b"featurizer.spec"
QUANTIZATION_KEY = b"featurizer.quantization"


def write_parquet(
    path: str | os.PathLike,
    columns: dict[str, list[str]],
    layers: dict[str, np.ndarray],
    spec: str,
    metadata: dict[str, str] | None = None,
    *,
    quantization: str | None = None,
) -> None:
    """Write one Parquet file (a local path) of ``columns`` and ``layers``, with the spec and ``metadata``;
    ``quantization`` (int8, binary) stores each layer's codes and their calibration instead of floats."""
    pa, pq = pyarrow_modules()
    check_quantization(quantization)
    arrays = {name: pa.array(values, pa.string()) for name, values in columns.items()}
    infos = {}
    for name, vectors in layers.items():
        if name in arrays:
            raise FeaturizerError(f"layer {name!r} has the name of a column; export as npy instead")
        values = np.ascontiguousarray(vectors, dtype=np.float32)
        if quantization:
            values, infos[name] = quantize(values, quantization)
        kind = {np.dtype(np.float32): pa.float32(), np.dtype(np.int8): pa.int8(), np.dtype(np.uint8): pa.uint8()}
        flat = pa.array(values.reshape(-1), kind[values.dtype])
        arrays[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    meta = {SPEC_KEY: spec.encode(), **{f"featurizer.{k}".encode(): v.encode() for k, v in (metadata or {}).items()}}
    if infos:
        meta[QUANTIZATION_KEY] = json.dumps(infos).encode()
    pq.write_table(pa.table(arrays).replace_schema_metadata(meta), Path(path))


def columns_and_layers(f) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """An open feature file's text columns (``id``, and ``label``, ``source`` where it has them) and layers."""
    columns = {"id": f.ids}
    if f.labels is not None:
        columns["label"] = f.labels
    if f.sources is not None:
        columns["source"] = f.sources
    return columns, {name: f.read(name) for name in f.layers}


def feature_file_as_parquet(
    features, path: str | os.PathLike, metadata: dict[str, str] | None = None, quantization: str | None = None
) -> None:
    """The feature file ``features`` (a path or URL) written as the Parquet file ``path`` (quantised if asked)."""

    with FeatureFile(features) as f:
        columns, layers = columns_and_layers(f)
        errors = {"errors": json.dumps(f.errors)} if f.errors else {}  # items that failed, with their reasons
        meta = {**(metadata or {}), **errors}
        write_parquet(path, columns, layers, f.spec.to_json(), meta, quantization=quantization)


def read_parquet_features(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray], str]:
    """(columns, layers, spec JSON) of a Parquet file of vectors; quantised layers come back as float32."""
    pa, pq = pyarrow_modules()
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if SPEC_KEY not in meta:
        raise FeaturizerError(f"{path} holds no featurizer vectors (no feature spec in its metadata)")
    infos = json.loads(meta[QUANTIZATION_KEY]) if QUANTIZATION_KEY in meta else {}
    columns, layers = {}, {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            layers[name] = column.flatten().to_numpy().reshape(len(column), column.type.list_size)
            if name in infos:
                layers[name] = dequantize(layers[name], read_info(infos[name]))
        else:
            columns[name] = column.to_pylist()
    return columns, layers, meta[SPEC_KEY].decode()
