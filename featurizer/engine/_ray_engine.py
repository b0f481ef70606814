"""The Ray engine of ``embed``: Ray Data streams the items' bytes to a pool of actors that featurize
them; the driver writes the shards.

The items are read by Ray Data's own readers (``featurizer._ray_read``) and reach the actors as
bytes, which they featurize without opening any source (``served_from_memory``), so a node need
not see the driver's disk. The actors send back vectors (a few kB an item, against the image's tens
of kB); the driver gathers them by shard and writes each shard the moment its last item arrives,
so a killed run keeps every shard written so far. Items a reader would not yield travel in the same
stream without bytes, and the actors read them from their sources. Texts, and whatever is left
when the stream ends (a row Ray skipped, or everything after a reader failed), are handed to the
actors by position in a second pass; the summary says how many items went each way, and why a
reader failed.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from featurizer.backbones import RunOptions
from featurizer.base import FeaturizerError, InputError, MissingPackageError
from featurizer.cache import CacheDamaged
from featurizer.engine._extract import Extractor, compute_items, write_feature_file
from featurizer.engine._ray_read import READ_FUNCTIONS, by_source_rows, read_plan, reader_rows
from featurizer.engine._shards import ShardPlan, compute_shard
from featurizer.inputs import Inputs
from featurizer.spec import FeatureSpec
from featurizer.storage import served_from_memory

BATCH_ROWS = 256  # items an actor featurizes per call: their bytes, and then their vectors, travel together


def embed_ray(
    inputs: Inputs,
    out: Path | str,
    todo: Sequence[ShardPlan],
    spec: FeatureSpec,
    run: RunOptions,
    *,
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
    started_here = not ray.is_initialized() and address is None and "RAY_ADDRESS" not in os.environ
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    check_gpus(ray.cluster_resources().get("GPU", 0), gpus_per_actor, local=started_here)
    from ray.data import ActorPoolStrategy, DataContext

    # one progress bar, over items, is ours; Ray Data's per-operator log lines stay in its log files
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    assembler = ShardAssembler(inputs, out, todo, spec, dims)
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
            batch_size=min(todo[0].stop - todo[0].start, BATCH_ROWS),
            num_gpus=gpus_per_actor or None,
            num_cpus=1,
        )
        batches = iter(results.iter_batches(batch_size=None, batch_format="numpy"))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except ray.exceptions.RayTaskError as err:
                raise remote_failure(str(err)) from None
            except (ValueError, OSError) as err:  # raised by Ray on the driver, planning the reads
                raise RemoteFailure(str(err).splitlines()[0][:300], ours=False) from None
            assembler.add(batch)  # a shard that cannot be written fails the run, as itself

    notes = []
    with assembler.progress(run.progress):
        plan = read_plan(inputs, assembler.missing())
        if plan.reader is not None:
            try:  # the readers' tasks need CPUs too: the pool grows into what they leave
                featurize(reader_rows(plan), ActorPoolStrategy(min_size=1, max_size=max(1, actors)))
            except RemoteFailure as err:
                if err.ours:  # featurizer's own error in an actor: the second pass would meet it again
                    raise
                read = f"Ray Data's read_{READ_FUNCTIONS[plan.reader]}"
                notes.append(f"{read} failed ({err}): the actors read the rest themselves")
        rest = assembler.missing()
        if rest:
            featurize(by_source_rows(rest), ActorPoolStrategy(size=max(1, min(actors, len(rest)))))
    assembler.finish()
    total = sum(s.stop - s.start for s in todo)
    if not inputs.from_files:
        return [f"{total} texts sent to the actors with the plan"]
    read = f"Ray Data's read_{READ_FUNCTIONS[plan.reader]}" if plan.reader else "no Ray Data reader (none covers them)"
    return [
        f"{assembler.streamed} of {total} items streamed by {read}; "
        f"{total - assembler.streamed} read by the actors from their sources",
        *notes,
    ]


_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit)): (.+)$", re.MULTILINE)


class RemoteFailure(FeaturizerError):
    """An error raised in a Ray task or actor, in one line; ``ours``: one of featurizer's own."""

    def __init__(self, message: str, ours: bool):
        super().__init__(message)
        self.ours = ours


def remote_failure(text: str) -> RemoteFailure:
    """One line for an error raised in a Ray task or actor: the first exception of the chain that
    Ray prints (the original, before Ray's own wrappers), named as featurize would name it here."""
    found = _RAISED.search(re.sub(r"\x1b\[[0-9;]*m", "", text))
    if found is None:
        return RemoteFailure(f"a Ray task failed: {text.strip().splitlines()[-1][:300]}", ours=False)
    kind, message = found.groups()
    if kind in _error_names(FeaturizerError):
        return RemoteFailure(message, ours=True)
    return RemoteFailure(f"a Ray task failed: {kind}: {message}", ours=False)


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


class ShardAssembler:
    """Vectors from the actors, gathered by shard; a shard is written once its last item is in."""

    def __init__(
        self, inputs: Inputs, out: Path | str, todo: Sequence[ShardPlan], spec: FeatureSpec, dims: Sequence[int]
    ):
        self.inputs, self.out, self.spec, self.dims = inputs, out, spec, list(dims)
        self.shards = sorted(todo, key=lambda s: s.start)
        self.starts = [s.start for s in self.shards]
        self.pending: dict[int, dict[int, tuple[str, list[np.ndarray]]]] = {s.index: {} for s in todo}
        self.bar = None
        self.streamed = 0  # items whose bytes came from a Ray Data reader

    @contextmanager
    def progress(self, show: bool) -> Iterator[None]:
        from tqdm.auto import tqdm

        total = sum(s.stop - s.start for s in self.shards)
        with tqdm(total=total, unit=" item", desc="embed (ray)", disable=not show, dynamic_ncols=True) as self.bar:
            yield

    def shard_of(self, position: int) -> ShardPlan:
        return self.shards[bisect.bisect_right(self.starts, position) - 1]

    def add(self, batch: dict) -> None:
        """Take a batch the actors sent back; rows of items already in (or of written shards) are ignored."""
        layers = [batch[f"v{j}"] for j in range(len(self.dims))]
        for i, (position, error, streamed) in enumerate(zip(batch["position"], batch["error"], batch["streamed"])):
            shard = self.shard_of(int(position))
            got = self.pending.get(shard.index)
            if got is None or int(position) in got:
                continue
            got[int(position)] = (str(error), [layer[i] for layer in layers])
            self.streamed += bool(streamed)
            self.bar.update(1)
            if len(got) == shard.stop - shard.start:
                self._write(shard)

    def missing(self) -> list[int]:
        """Positions of unwritten shards that no actor has sent back."""
        return [
            p
            for shard in self.shards
            if shard.index in self.pending
            for p in range(shard.start, shard.stop)
            if p not in self.pending[shard.index]
        ]

    def finish(self) -> None:
        if self.pending:
            raise FeaturizerError(f"the Ray actors sent back no vectors for shards {sorted(self.pending)}")

    def _write(self, shard: ShardPlan) -> None:
        got = self.pending[shard.index]  # dropped once written: a shard that failed to write is not done
        results = [got[p] for p in range(shard.start, shard.stop)]
        good = [n for n, (error, _) in enumerate(results) if not error]

        def rows(layer: str, positions: list[int]) -> np.ndarray:
            j = self.spec.layers.index(layer)
            return np.stack([results[n][1][j] for n in positions]).astype(np.float32, copy=False)

        def write(part, path, attrs):
            errors = [(part.ids[n], error) for n, (error, _) in enumerate(results) if error]
            write_feature_file(path, self.spec, self.dims, part, good, rows, errors, attrs=attrs)

        compute_shard(write, self.inputs, self.out, shard)
        del self.pending[shard.index]


class VectorWorker:
    """One per actor: builds the extractor of the driver's spec (loading the model once), then
    featurizes batches of items by position, from the bytes the readers sent or from their sources."""

    def __init__(self, inputs: Inputs, spec_json: str, run: dict):

        self.inputs = inputs
        self.extractor = Extractor(FeatureSpec.from_json(spec_json), RunOptions(**run))

    def __call__(self, batch: dict) -> dict:

        positions = [int(p) for p in batch["position"]]
        part = replace(self.inputs.take(positions), skipped=[], notes=[])
        sent = list(batch["payload"]) if "payload" in batch else [None] * len(positions)
        payloads = {part.sources[n]: bytes(data) for n, data in enumerate(sent) if data is not None}
        extractor = self.extractor
        with served_from_memory(payloads):
            keys, errors, good, _ = compute_items(extractor, part)
        reasons = dict(errors)
        out = {
            "position": np.asarray(positions, np.int64),
            "error": np.asarray([reasons.get(item, "") for item in part.ids], dtype=object),
            "streamed": np.asarray([data is not None for data in sent], dtype=bool),
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
