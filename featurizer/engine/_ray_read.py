"""Ray Data's own readers for the items of a shard plan: which reader, and where each of its rows belongs.

Image files are read with ``read_binary_files``, members of WebDataset tar shards with
``read_webdataset``, image cells of Parquet tables with ``read_parquet``; objects in storage through
featurizer's own fsspec filesystem (its credentials, its endpoint). A row is placed by where it came
from: the file's path as Ray reports it; the shard and the member (``__key__`` and suffix); the file
and the row, recovered from Ray's ``row_hash`` with Ray's own function. Items the reader would not
yield (an empty or missing path, another store than the rest, a name Ray skips or cannot encode,
a shard whose samples are not contiguous or repeat a name) are planned as rows without bytes,
unioned with the reader's rows, and so is a null cell: the actors read those from their sources,
and their errors are the local engine's.

``read_images`` is not used: it decodes with its own code into arrays of one size, which gives other
pixels than featurize's decoding, and loses the key of an item (its file's bytes).
"""

from __future__ import annotations

import functools
import inspect
import os
import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from featurizer.inputs import Inputs
from featurizer.storage import (
    TAR_SOURCE,
    filesystem,
    is_url,
    local_path,
    member_of,
    object_stamps,
    parquet_address,
    parquet_num_rows,
    tar_index,
)

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.fs
    import ray.data

READ_FUNCTIONS = {"files": "binary_files", "webdataset": "webdataset", "parquet": "parquet"}
_SEP = "\0"  # between the parts of a row's identity: a path never holds it


@dataclass
class ReadPlan:
    """What a Ray Data reader reads for some positions of the plan, and where each row it yields belongs."""

    reader: str | None  # a key of READ_FUNCTIONS; None: every item goes to the actors by position
    paths: list[str] = field(default_factory=list)  # files as the reader is given them and reports them, or a folder
    protocol: str = ""  # "" for local paths
    column: str = ""  # Parquet: the image column
    rows: dict[str, int] = field(default_factory=dict)  # Parquet: rows of each file
    extensions: list[str] | None = None  # the files of a listed folder that the reader reads
    positions: dict[str, list[int]] = field(default_factory=dict)  # a row's identity -> plan positions
    by_source: list[int] = field(default_factory=list)  # positions the actors read from their sources


def read_plan(inputs: Inputs, positions: Sequence[int]) -> ReadPlan:
    """The reader for most of these positions' items; the rest, and all texts, by source."""
    positions = list(positions)
    if not inputs.from_files:
        return ReadPlan(None, by_source=positions)
    where = {p: _where(inputs.sources[p]) for p in positions}
    kinds = Counter((kind, _protocol(container)) for kind, container, _, _ in where.values() if kind)
    if not kinds:
        return ReadPlan(None, by_source=positions)
    (reader, protocol), _ = kinds.most_common(1)[0]
    plan = ReadPlan(reader, protocol=protocol)
    if reader == "parquet":  # the image column (one per table)
        plan.column = Counter(column for kind, _, _, column in where.values() if kind == reader).most_common(1)[0][0]
        if plan.column in ("path", "row_hash"):  # the names of Ray's own columns
            return ReadPlan(None, by_source=positions)
    covered = {p for p in positions if _covered(plan, *where[p])}
    names = {c: _reader_path(c) for c in dict.fromkeys(where[p][1] for p in covered)}
    if reader == "files":
        present = _existing(list(names))
        names = {c: n for c, n in names.items() if c in present}
        if _read_whole_folder(inputs, [c for c in names], len(positions)):
            skipped = (".", "_")  # Ray's folder listing leaves out these names
            folder = inputs.origin.rstrip("/") + "/"
            names = {c: n for c, n in names.items() if not c[len(folder) :].startswith(skipped)}
            plan.paths = [_reader_path(inputs.origin)]
            plan.extensions = sorted({posixpath.splitext(c)[1].lower() for c in names})
    elif reader == "webdataset":
        names = {c: n for c, n in names.items() if _contiguous(c)}
    else:
        plan.rows = {n: parquet_num_rows(c) for c, n in names.items()}
    plan.paths = plan.paths or list(names.values())
    for p in positions:
        _, container, part, _ = where[p]
        if p in covered and container in names:
            plan.positions.setdefault(_identity(names[container], part), []).append(p)
        else:
            plan.by_source.append(p)
    if not plan.positions:
        return ReadPlan(None, by_source=positions)
    return plan


def _where(source) -> tuple[str | None, str, str, str]:
    """(reader, container, part, column) of an item's source: part names a member, or the row of
    a cell (with its column)."""
    if not isinstance(source, str) or not source.strip():
        return None, "", "", ""
    member = member_of(source)
    if member is None:
        return "files", source, "", ""
    if source.startswith(TAR_SOURCE):
        return "webdataset", member[1], member[0], ""
    file, column, row = parquet_address(source)
    return ("parquet" if _parquet_rows_known() else None), file, str(row), column


def _covered(plan: ReadPlan, kind: str | None, container: str, part: str, column: str) -> bool:
    """Whether the plan's reader yields this item whole, under a name Ray keeps."""
    same = kind == plan.reader and _protocol(container) == plan.protocol and column == plan.column
    return same and _ray_can_name(container)


def _existing(files: list[str]) -> set[str]:
    """The files that exist (one listing per folder in storage): a missing one is read by an
    actor, which gives it the local engine's error row, instead of being silently left out."""
    urls = [f for f in files if is_url(f)]
    present = set(object_stamps(urls))
    return present | {f for f in files if not is_url(f) and os.path.isfile(local_path(f))}


def _read_whole_folder(inputs: Inputs, files: Sequence[str], todo: int) -> bool:
    """Whether Ray should list the input folder in storage rather than be given its objects one by
    one (it asks for each given object's size, one request each): when the folder is the input and
    at least half of its items are to be read (rows of the others are dropped when placed)."""
    folder = inputs.origin.rstrip("/") + "/"
    return is_url(inputs.origin) and 2 * todo >= len(inputs) and all(f.startswith(folder) for f in files)


def _contiguous(shard: str) -> bool:
    """Whether Ray's reader takes the shard: each sample's members follow each other, no name is
    repeated, every member has a key before its extension (featurize groups them in any order)."""
    index = tar_index(shard)
    if index.repeated:
        return False
    keys = []
    for name in index:
        base = posixpath.basename(name)
        if base.startswith(".") or "." not in base or not _ray_can_name(name):
            return False
        keys.append(posixpath.join(posixpath.dirname(name), base.split(".", 1)[0]))
    runs = [k for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]]
    return len(runs) == len(set(runs))


def _ray_can_name(path: str) -> bool:
    """Whether Ray's readers keep this name as it is: UTF-8 text (pyarrow's paths are), no ``?``
    (its extension filter cuts names there)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "?" not in path


@functools.cache
def _parquet_rows_known() -> bool:
    """Whether this Ray has the row hashes ``_row_of_hash`` reads (else cells go by source). How it
    numbers rows is checked by the tests: a Ray that numbered them otherwise would leave rows
    unplaced, read by the actors after the stream, and the summary would show it."""
    try:
        import ray.data
        from ray.data._internal.datasource_v2.common.synthesized_columns import _compute_row_hashes  # noqa: F401
    except ImportError:
        return False
    return "include_row_hash" in inspect.signature(ray.data.read_parquet).parameters


def _protocol(path: str) -> str:
    return path.split("://", 1)[0] if is_url(path) else ""


def _reader_path(path: str) -> str:
    """A path as Ray Data's readers take and report it: absolute for a local file, without its
    protocol for an object (the filesystem is given to the reader)."""
    return filesystem(path)[1] if is_url(path) else os.path.abspath(local_path(path))


def _identity(path: str, part: str) -> str:
    return f"{path}{_SEP}{part}" if part else path


def arrow_filesystem(protocol: str) -> pyarrow.fs.FileSystem | None:
    """The pyarrow filesystem Ray Data reads ``protocol``'s objects through: featurizer's fsspec
    filesystem (its credentials and endpoint), or None for local paths."""
    if not protocol:
        return None
    import pyarrow.fs

    fs, _ = filesystem(f"{protocol}://")
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def by_source_rows(positions: Sequence[int]) -> ray.data.Dataset:
    """A Ray Dataset of rows ``position``, ``payload`` (null: the actor reads the item itself)."""
    import ray.data

    return ray.data.from_arrow(_rows(list(positions), [None] * len(positions)))


def reader_rows(plan: ReadPlan) -> ray.data.Dataset:
    """Rows ``position``, ``payload``: the items without bytes first, then every planned item the reader yields."""
    import ray.data

    fs = arrow_filesystem(plan.protocol)
    if plan.reader == "files":
        data = ray.data.read_binary_files(
            plan.paths, filesystem=fs, include_paths=True, ignore_missing_paths=True, file_extensions=plan.extensions
        )
    elif plan.reader == "webdataset":
        data = ray.data.read_webdataset(plan.paths, filesystem=fs, decoder=None, include_paths=True)
    else:
        extensions = sorted({posixpath.splitext(path)[1].lstrip(".").lower() for path in plan.paths})
        data = ray.data.read_parquet(  # its own default reads only ".parquet" files; featurize reads ".pq" too
            plan.paths, filesystem=fs, include_paths=True, include_row_hash=True, file_extensions=extensions
        )
        data = data.select_columns([plan.column, "path", "row_hash"])
    kwargs = {"reader": plan.reader, "column": plan.column, "rows": plan.rows, "positions": plan.positions}
    placed = data.map_batches(_place_rows, batch_format="pyarrow", fn_kwargs=kwargs)
    return by_source_rows(plan.by_source).union(placed) if plan.by_source else placed


def _rows(positions: list[int], payloads: list[bytes | None]) -> pyarrow.Table:
    import pyarrow as pa

    return pa.table({"position": pa.array(positions, pa.int64()), "payload": pa.array(payloads, pa.large_binary())})


def _place_rows(
    batch: pyarrow.Table, *, reader: str, positions: dict[str, list[int]], column: str, rows: dict[str, int]
) -> pyarrow.Table:
    """A batch of reader rows as (position, payload) rows: one per planned position of each; a
    null cell is a row without bytes (the actor reads it, and says why it is no image)."""
    out_positions, payloads = [], []

    def add(identity: str, payload) -> None:
        for pos in positions.get(identity, ()):
            out_positions.append(pos)
            payloads.append(payload)

    paths = batch.column("path").to_pylist()
    if reader == "files":
        for path, payload in zip(paths, batch.column("bytes").to_pylist()):
            add(path, payload)
    elif reader == "webdataset":
        keys = batch.column("__key__").to_pylist()
        members = [n for n in batch.column_names if not n.startswith("__") and n != "path"]
        for name in members:
            for path, key, payload in zip(paths, keys, batch.column(name).to_pylist()):
                if payload is not None:  # a sample without this member
                    add(_identity(path, f"{key}.{name}"), payload)
    else:
        hashes = batch.column("row_hash").to_numpy()
        for path, digest, payload in zip(paths, hashes, batch.column(column).to_pylist()):
            row = _row_of_hash(path, rows.get(path, 0)).get(int(digest))
            if row is not None:  # else (rows numbered otherwise) the actors read the cell after the stream
                add(_identity(path, str(row)), payload)
    return _rows(out_positions, payloads)


@functools.lru_cache(maxsize=8)
def _row_of_hash(path: str, n_rows: int) -> dict[int, int]:
    """Row number of each ``row_hash`` Ray Data gives the rows of a Parquet file (its own function)."""
    from ray.data._internal.datasource_v2.common.synthesized_columns import _compute_row_hashes

    return {int(h): row for row, h in enumerate(_compute_row_hashes(path, 0, n_rows))}
