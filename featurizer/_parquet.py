"""Vectors as Parquet: one row per item (``id``, ``label``, ``source`` where known) and one
fixed-size list column of float32 per layer; the feature spec in the schema's metadata
(``featurizer.spec``), so the vectors stay tied to what made them. Written by ``xfer export
--format parquet`` and by ``xfer embed --format parquet`` (one file per shard)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from featurizer._errors import FeaturizerError, MissingPackageError

SPEC_KEY = b"featurizer.spec"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingPackageError("Parquet needs pyarrow: pip install 'featurizer[parquet]'") from None
    return pa, pq


def write_parquet(
    path: str | os.PathLike,
    columns: dict[str, list[str]],
    layers: dict[str, np.ndarray],
    spec: str,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write one Parquet file (a local path) of ``columns`` and ``layers``, with the spec and ``metadata``."""
    pa, pq = _pyarrow()
    arrays = {name: pa.array(values, pa.string()) for name, values in columns.items()}
    for name, vectors in layers.items():
        if name in arrays:
            raise FeaturizerError(f"layer {name!r} has the name of a column; export as npy instead")
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        arrays[name] = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    meta = {SPEC_KEY: spec.encode(), **{f"featurizer.{k}".encode(): v.encode() for k, v in (metadata or {}).items()}}
    pq.write_table(pa.table(arrays).replace_schema_metadata(meta), Path(path))


def columns_and_layers(f) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """An open feature file's text columns (``id``, and ``label``, ``source`` where it has them) and layers."""
    columns = {"id": f.ids}
    if f.labels is not None:
        columns["label"] = f.labels
    if f.sources is not None:
        columns["source"] = f.sources
    return columns, {name: f.read(name) for name in f.layers}


def feature_file_as_parquet(features, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """The feature file ``features`` (a path or URL) written as the Parquet file ``path``."""
    from featurizer._featurefile import FeatureFile

    with FeatureFile(features) as f:
        columns, layers = columns_and_layers(f)
        errors = {"errors": json.dumps(f.errors)} if f.errors else {}  # items that failed, with their reasons
        write_parquet(path, columns, layers, f.spec.to_json(), {**(metadata or {}), **errors})


def read_parquet(file: str | os.PathLike, read: Callable):
    """``read(pyarrow.parquet, path, filesystem)`` on a Parquet file, local (filesystem None) or a
    URL; a damaged or cut-short file is refused in one line naming it."""
    from featurizer._errors import InputError
    from featurizer._storage import filesystem, is_url, storage_errors

    _, pq = _pyarrow()
    try:
        if is_url(file):
            fs, inner = filesystem(str(file))
            with storage_errors(str(file)):
                return read(pq, inner, fs)
        return read(pq, os.fspath(file), None)
    except FeaturizerError:
        raise
    except Exception as err:
        raise InputError(f"{file}: not a readable Parquet file ({str(err).splitlines()[0]})") from None


def parquet_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``featurizer.*`` metadata of a Parquet file (local or a URL), without its ``featurizer.`` prefix."""
    schema = read_parquet(path, lambda pq, p, fs: pq.read_schema(p, filesystem=fs))
    meta = schema.metadata or {}
    return {k.decode()[len("featurizer.") :]: v.decode() for k, v in meta.items() if k.startswith(b"featurizer.")}


def read_parquet_features(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray], str]:
    """(columns, layers, spec JSON) of a Parquet file of vectors."""
    pa, pq = _pyarrow()
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if SPEC_KEY not in meta:
        raise FeaturizerError(f"{path} holds no featurizer vectors (no feature spec in its metadata)")
    columns, layers = {}, {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            layers[name] = column.flatten().to_numpy().reshape(len(column), column.type.list_size)
        else:
            columns[name] = column.to_pylist()
    return columns, layers, meta[SPEC_KEY].decode()
