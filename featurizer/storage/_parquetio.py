"""Parquet files read safely: one line naming a damaged file, and image cells read by row group.

A cell source (``parquet-cell://ROW/COLUMN::FILE``) is read with the rest of its row group, so a
decoding process holds a few row groups, not whole files; ``open_source`` reads cells through here.
"""

from __future__ import annotations

import bisect
import functools
import os
from collections.abc import Callable

from featurizer.base import FeaturizerError, InputError, MissingPackageError
from featurizer.storage._storage import (
    PARQUET_SOURCE,
    filesystem,
    is_url,
    member_of,
    register_source_reader,
    storage_errors,
)


def pyarrow_modules():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingPackageError("Parquet needs pyarrow: pip install 'featurizer[parquet]'") from None
    return pa, pq


def read_parquet(file: str | os.PathLike, read: Callable):
    """``read(pyarrow.parquet, path, filesystem)`` on a Parquet file, local (filesystem None) or a
    URL; a damaged or cut-short file is refused in one line naming it."""
    _, pq = pyarrow_modules()
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


def parquet_source(file: str, column: str, row: int) -> str:
    """The source of an image held as bytes in a Parquet file: the file, the column and the row."""
    return f"{PARQUET_SOURCE}{row}/{column}::{file}"


def parquet_address(source: str) -> tuple[str, str, int]:
    """(file, column, row) of a ``parquet_source``."""
    where, file = member_of(source)
    row, column = where.split("/", 1)
    return file, column, int(row)


@functools.lru_cache(maxsize=16)
def _row_group_starts(file: str) -> tuple[int, ...]:
    """The first row of each row group of a Parquet file, and its row count last."""
    meta = _parquet_file(file).metadata
    starts = [0]
    for g in range(meta.num_row_groups):
        starts.append(starts[-1] + meta.row_group(g).num_rows)
    return tuple(starts)


def parquet_num_rows(file: str) -> int:
    """Rows of a Parquet file, from its footer."""
    return _row_group_starts(file)[-1]


@functools.lru_cache(maxsize=4)
def _row_group_cells(file: str, column: str, group: int) -> list:
    """One row group's cells of ``column``: a decoding process holds a few row groups, not whole files."""
    return _parquet_file(file).read_row_group(group, columns=[column]).column(column).to_pylist()


@functools.lru_cache(maxsize=16)
def _parquet_file(file: str):
    """An open Parquet file (its footer read once): the row groups of a decoding process come from it."""
    return read_parquet(file, lambda pq, path, fs: pq.ParquetFile(fs.open(path, "rb") if fs else path))


def parquet_cell(source: str) -> bytes:
    """The bytes a ``parquet_source`` names, read with the rest of its row group."""
    file, column, row = parquet_address(source)
    starts = _row_group_starts(file)
    group = bisect.bisect_right(starts, row) - 1
    value = _row_group_cells(file, column, group)[row - starts[group]]
    if value is None:
        raise InputError(f"row {row} of {file} has no image in column {column!r}")
    return value


register_source_reader(PARQUET_SOURCE, parquet_cell)
