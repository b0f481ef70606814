"""The Ray engine of ``embed``: Ray Data reads the items' bytes, a pool of actors featurizes them,
the driver writes the shards.

Items held in files are read by Ray Data's own readers, as Ray schedules them: image files with
``read_binary_files``, members of WebDataset tar shards with ``read_webdataset``, image cells of
Parquet tables with ``read_parquet``. Objects in storage are read by whichever node runs the read,
through the same fsspec filesystem as the rest of featurizer (so the same credentials); local files
must be visible to the nodes, as for any Ray Data read. Each row is matched to its positions in the
plan by where it came from (the file; the shard and member; the file and row) and streams to the
actors as bytes, which they featurize without opening any source (``served_from_memory``). The
actors send back vectors (a few kB an item, against the image's tens of kB); the driver gathers
them by shard and writes each shard the moment its last item arrives, so a killed run keeps every
shard written so far. Texts, inputs that no single reader covers (local and remote paths mixed),
and items a reader did not yield (a missing file) are handed to the actors by position instead,
and read by them from their source, giving the same errors as the local engine.

``read_images`` is not used: it decodes with its own code into arrays of one size, which gives other
pixels than featurize's decoding, and loses the key of an item (its file's bytes).
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from featurizer._errors import FeaturizerError, InputError, MissingPackageError
from featurizer._extract import write_feature_file
from featurizer._inputs import Inputs, parquet_num_rows
from featurizer._resolve import RunOptions
from featurizer._shards import ShardPlan, compute_shard
from featurizer._spec import FeatureSpec
from featurizer._storage import PARQUET_SOURCE, TAR_SOURCE, filesystem, is_url, local_path, served_from_memory

READ_FUNCTIONS = {"files": "binary_files", "webdataset": "webdataset", "parquet": "parquet"}
_SEP = "\0"  # between the parts of a row's identity: a path never holds it


@dataclass
class ReadPlan:
    """What Ray Data reads for the shards to compute, and where each row it yields belongs."""

    reader: str  # a key of READ_FUNCTIONS
    paths: list[str]  # as the reader is given them (and reports them in its "path" column)
    protocol: str  # "" for local paths
    column: str = ""  # Parquet: the image column
    rows: dict[str, int] = field(default_factory=dict)  # Parquet: rows of each file
    extensions: list[str] | None = None  # files of a listed folder that the reader reads
    positions: dict[str, list[int]] = field(default_factory=dict)  # a row's identity -> plan positions


def read_plan(inputs: Inputs, todo: Sequence[ShardPlan]) -> ReadPlan | None:
    """The reader for these inputs' items in the shards ``todo``, or None where no single reader covers them."""
    if not inputs.from_files or not todo:
        return None
    positions = [p for s in todo for p in range(s.start, s.stop)]
    sources = [inputs.sources[p] for p in positions]
    if not sources or not all(isinstance(s, str) and s for s in sources):
        return None
    if all(s.startswith(TAR_SOURCE) for s in sources):
        reader, parts = "webdataset", [s[len(TAR_SOURCE) :].split("::", 1)[::-1] for s in sources]
    elif all(s.startswith(PARQUET_SOURCE) for s in sources):
        cells = [s[len(PARQUET_SOURCE) :].split("::", 1) for s in sources]
        parts = [(file, where.split("/", 1)) for where, file in cells]
        columns = {column for _, (_, column) in parts}
        if len(columns) != 1:
            return None
        reader = "parquet"
        parts = [(file, row) for file, (row, _) in parts]
    elif not any(s.startswith((TAR_SOURCE, PARQUET_SOURCE)) for s in sources):
        reader, parts = "files", [(s, "") for s in sources]
    else:
        return None
    protocols = {_protocol(file) for file, _ in parts}
    if len(protocols) != 1:
        return None
    names = {file: _reader_path(file) for file, _ in parts}
    plan = ReadPlan(reader, list(dict.fromkeys(names.values())), protocols.pop())
    if reader == "files" and _read_whole_folder(inputs, sources):
        plan.paths = [_reader_path(inputs.origin)]
        plan.extensions = sorted({posixpath.splitext(s)[1].lower() for s in sources})
    for pos, (file, part) in zip(positions, parts):
        plan.positions.setdefault(_identity(names[file], part), []).append(pos)
    if reader == "parquet":
        plan.column = columns.pop()
        plan.rows = {names[file]: parquet_num_rows(file) for file in dict.fromkeys(f for f, _ in parts)}
    return plan


def _read_whole_folder(inputs: Inputs, sources: Sequence[str]) -> bool:
    """Whether Ray should list the input folder in storage rather than be given its objects one by
    one (it asks for each given object's size, one request each): when the folder is the input and
    at least half of its items are to be read (rows of the others are dropped when placed)."""
    folder = inputs.origin.rstrip("/") + "/"
    return is_url(inputs.origin) and 2 * len(sources) >= len(inputs) and all(s.startswith(folder) for s in sources)


def _protocol(path: str) -> str:
    return path.split("://", 1)[0] if is_url(path) else ""


def _reader_path(path: str) -> str:
    """A path as Ray Data's readers take and report it: absolute for a local file, without its
    protocol for an object (the filesystem is given to the reader)."""
    return filesystem(path)[1] if is_url(path) else os.path.abspath(local_path(path))


def _identity(path: str, part: str) -> str:
    return f"{path}{_SEP}{part}" if part else path


def arrow_filesystem(protocol: str):
    """The pyarrow filesystem Ray Data reads ``protocol``'s objects through: featurizer's fsspec
    filesystem (its credentials and endpoint), or None for local paths."""
    if not protocol:
        return None
    import pyarrow.fs

    fs, _ = filesystem(f"{protocol}://")
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def read_dataset(plan: ReadPlan):
    """Rows ``position``, ``payload`` (the item's bytes) for every planned item the reader yields."""
    import ray.data

    fs = arrow_filesystem(plan.protocol)
    if plan.reader == "files":
        data = ray.data.read_binary_files(
            plan.paths, filesystem=fs, include_paths=True, ignore_missing_paths=True, file_extensions=plan.extensions
        )
    elif plan.reader == "webdataset":
        data = ray.data.read_webdataset(plan.paths, filesystem=fs, decoder=None, include_paths=True)
    else:
        data = ray.data.read_parquet(plan.paths, filesystem=fs, include_paths=True, include_row_hash=True)
        data = data.select_columns([plan.column, "path", "row_hash"])
    place = functools.partial(
        _place_rows, reader=plan.reader, positions=plan.positions, column=plan.column, rows=plan.rows
    )
    return data.map_batches(place, batch_format="pyarrow")


def _place_rows(batch, *, reader: str, positions: dict, column: str, rows: dict):
    """A batch of reader rows as (position, payload) rows: one per planned position of each."""
    import pyarrow as pa

    out_positions, payloads = [], []

    def add(identity: str, payload) -> None:
        for pos in positions.get(identity, ()):
            if payload is not None:
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
                add(_identity(path, f"{key}.{name}"), payload)
    else:
        hashes = batch.column("row_hash").to_numpy()
        for path, digest, payload in zip(paths, hashes, batch.column(column).to_pylist()):
            row = _row_of_hash(path, rows[path]).get(int(digest))
            if row is not None:  # else (a Ray that numbers rows otherwise) the actors read the cell themselves
                add(_identity(path, str(row)), payload)
    return pa.table(
        {
            "position": pa.array(out_positions, pa.int64()),
            "payload": pa.array(payloads, pa.large_binary()),
        }
    )


@functools.lru_cache(maxsize=8)
def _row_of_hash(path: str, n_rows: int) -> dict[int, int]:
    """Row number of each ``row_hash`` Ray Data gives the rows of a Parquet file (its own function)."""
    from ray.data._internal.datasource_v2.common.synthesized_columns import _compute_row_hashes

    return {int(h): row for row, h in enumerate(_compute_row_hashes(path, 0, n_rows))}


def embed_ray(
    inputs: Inputs,
    out: Path | str,
    todo: Sequence[ShardPlan],
    spec: FeatureSpec,
    run: RunOptions,
    *,
    shard_size: int,
    dims: Sequence[int],
    address: str | None,
    actors: int,
    gpus_per_actor: float,
) -> list[str]:
    """Featurize the shards ``todo`` on Ray: items streamed by Ray Data's readers where one covers
    them, vectors computed by actors that each load the model once, shards written here. Returns
    notes on how the items were read."""
    try:
        import ray
    except ImportError:
        raise MissingPackageError("the Ray engine needs Ray: pip install 'featurizer[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    check_gpus(ray.cluster_resources().get("GPU", 0), gpus_per_actor, local=address is None)
    from ray.data import ActorPoolStrategy, DataContext

    # one progress bar, over items, is ours; Ray Data's per-operator log lines stay in its log files
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    assembler = ShardAssembler(inputs, out, todo, spec, dims, shard_size)
    constructor = {
        "inputs": inputs,
        "spec_json": spec.to_json(),
        "run": {**asdict(run), "progress": False, "workers": 0},
    }

    def featurize(rows, pool) -> None:
        results = rows.map_batches(
            VectorWorker,
            fn_constructor_kwargs=constructor,
            compute=pool,
            batch_size=min(shard_size, BATCH_ROWS),
            num_gpus=gpus_per_actor or None,
            num_cpus=1,
        )
        try:
            for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                assembler.add(batch)
        except ray.exceptions.RayTaskError as err:
            raise remote_failure(str(err)) from None

    with assembler.progress(run.progress):
        plan = read_plan(inputs, todo)
        if plan is not None:  # the readers' tasks need CPUs too: the pool grows into what they leave
            featurize(read_dataset(plan), ActorPoolStrategy(min_size=1, max_size=max(1, actors)))
        rest = assembler.missing()
        if rest:
            rows = ray.data.from_items([{"position": p} for p in rest])
            featurize(rows, ActorPoolStrategy(size=max(1, min(actors, len(rest)))))
    assembler.finish()
    total = sum(s.stop - s.start for s in todo)
    if not inputs.from_files:
        return [f"{total} texts sent to the actors with the plan"]
    if plan is None:
        return [f"{total} items read by the actors from their sources (no Ray Data reader covers these inputs)"]
    return [
        f"{assembler.streamed} of {total} items streamed by Ray Data's read_{READ_FUNCTIONS[plan.reader]}; "
        f"{total - assembler.streamed} read by the actors from their sources"
    ]


_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit)): (.+)$", re.MULTILINE)


def remote_failure(text: str) -> FeaturizerError:
    """One line for an error raised in a Ray task or actor: the first exception of the chain that
    Ray prints (the original, before Ray's own wrappers), named as featurize would name it here."""
    found = _RAISED.search(re.sub(r"\x1b\[[0-9;]*m", "", text))
    if found is None:
        return FeaturizerError(f"a Ray task failed: {text.strip().splitlines()[-1][:300]}")
    kind, message = found.groups()
    if kind in _error_names(FeaturizerError):
        return FeaturizerError(message)
    return FeaturizerError(f"a Ray task failed: {kind}: {message}")


def _error_names(kind: type) -> set[str]:
    return {kind.__name__}.union(*(_error_names(sub) for sub in kind.__subclasses__()))


def check_gpus(available: float, per_actor: float, local: bool) -> None:
    """Actors that ask for more GPUs than the cluster has would wait for them forever: refused on a
    Ray started here (nothing can add a GPU to it), a warning on a cluster (an autoscaler may)."""
    if per_actor <= available:
        return
    message = f"--gpus-per-actor {per_actor:g} but the Ray cluster has {available:g} GPUs"
    if local:
        raise InputError(f"{message} (a local Ray sees this machine's GPUs; leave --gpus-per-actor out on a CPU)")
    logging.getLogger(__name__).warning("%s now: the actors wait until one joins", message)


BATCH_ROWS = 256  # items an actor featurizes per call: its bytes, and then its vectors, travel together


class ShardAssembler:
    """Vectors from the actors, gathered by shard; a shard is written once its last item is in."""

    def __init__(self, inputs, out, todo, spec: FeatureSpec, dims: Sequence[int], shard_size: int):
        self.inputs, self.out, self.spec, self.dims, self.shard_size = inputs, out, spec, list(dims), shard_size
        self.shards = {s.index: s for s in todo}
        self.pending: dict[int, dict[int, tuple[str, list[np.ndarray]]]] = {s.index: {} for s in todo}
        self.bar = None
        self.streamed = 0  # items whose bytes came from a Ray Data reader

    @contextmanager
    def progress(self, show: bool):
        from tqdm.auto import tqdm

        total = sum(s.stop - s.start for s in self.shards.values())
        with tqdm(total=total, unit=" item", desc="embed (ray)", disable=not show, dynamic_ncols=True) as self.bar:
            yield

    def add(self, batch: dict) -> None:
        layers = [batch[f"v{j}"] for j in range(len(self.dims))]
        for i, (position, error) in enumerate(zip(batch["position"], batch["error"])):
            position = int(position)
            index = position // self.shard_size
            got = self.pending.get(index)
            if got is None or position in got:
                continue
            got[position] = (str(error), [layer[i] for layer in layers])
            if len(got) == self.shards[index].stop - self.shards[index].start:
                self._write(index)
        self.bar.update(len(batch["position"]))
        self.streamed += int(np.sum(batch["streamed"]))

    def missing(self) -> list[int]:
        """Positions of unwritten shards that no actor has sent back."""
        return [
            p
            for index, got in self.pending.items()
            for p in range(self.shards[index].start, self.shards[index].stop)
            if p not in got
        ]

    def finish(self) -> None:
        if self.pending:
            raise FeaturizerError(f"the Ray actors sent back no vectors for shards {sorted(self.pending)}")

    def _write(self, index: int) -> None:
        shard, got = self.shards[index], self.pending.pop(index)
        results = [got[p] for p in range(shard.start, shard.stop)]
        good = [n for n, (error, _) in enumerate(results) if not error]

        def rows(layer: str, positions: list[int]) -> np.ndarray:
            j = self.spec.layers.index(layer)
            return np.stack([results[n][1][j] for n in positions]).astype(np.float32, copy=False)

        def write(part, path, attrs):
            errors = [(part.ids[n], error) for n, (error, _) in enumerate(results) if error]
            write_feature_file(path, self.spec, self.dims, part, good, rows, errors, attrs=attrs)

        compute_shard(write, self.inputs, self.out, shard)


class VectorWorker:
    """One per actor: builds the extractor of the driver's spec (loading the model once), then
    featurizes batches of items by position, from the bytes the readers sent or from their sources."""

    def __init__(self, inputs: Inputs, spec_json: str, run: dict):
        from featurizer._extract import Extractor

        self.inputs = inputs
        self.extractor = Extractor(FeatureSpec.from_json(spec_json), RunOptions(**run))

    def __call__(self, batch: dict) -> dict:
        from featurizer._store import CacheDamaged

        positions = [int(p) for p in batch["position"]]
        part = replace(self.inputs.take(positions), skipped=[], notes=[])
        payloads = {}
        if "payload" in batch:
            payloads = {part.sources[n]: bytes(data) for n, data in enumerate(batch["payload"])}
        extractor = self.extractor
        with served_from_memory(payloads):
            keys, failed = extractor.keys(part)
            _, item_errors = extractor.ensure(part, keys, "skip")
        reasons = dict(failed + item_errors)
        errors = [reasons.get(item, "") for item in part.ids]
        good = [n for n, (key, error) in enumerate(zip(keys, errors)) if key is not None and not error]
        out = {
            "position": np.asarray(positions, np.int64),
            "error": np.asarray(errors, dtype=object),
            "streamed": np.full(len(positions), bool(payloads)),
        }
        for j, (layer, dim) in enumerate(zip(extractor.spec.layers, extractor.layer_dims())):
            vectors = np.zeros((len(positions), dim), np.float32)
            if good:
                try:
                    vectors[good] = extractor.vectors(layer, [keys[n] for n in good])
                except CacheDamaged:  # moved aside when found: compute these items again, once
                    with served_from_memory(payloads):
                        extractor.ensure(part, keys, "skip")
                    vectors[good] = extractor.vectors(layer, [keys[n] for n in good])
            out[f"v{j}"] = vectors
        extractor.compact()
        return out
