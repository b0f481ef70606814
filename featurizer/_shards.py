"""Batch-embedding a dataset as shards: the local engine and the Ray engine share everything here.

The inputs are cut, in order, into shards of ``shard_size`` items. Each shard becomes a feature
file ``OUT/shard-00000.h5`` (written under a temporary name, then renamed) with a ``.sha256``
sidecar written after it; ``OUT/manifest.json`` lists the shards, their ids and checksums. A
re-run skips every shard whose file matches its checksum and recomputes only the missing or
damaged ones, so a killed worker or driver loses at most the shards in flight. ``merge`` joins the
shards into one feature file whose vectors are HDF5 virtual datasets over the shard files.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from featurizer._errors import FeaturizerError, InputError, MissingPackageError
from featurizer._featurefile import _STR, FORMAT, FeatureFile
from featurizer._inputs import Inputs
from featurizer._keys import sha256_file

MANIFEST = "manifest.json"
ENGINES = ("local", "ray")


@dataclass
class EmbedReport:
    out: Path
    n_shards: int
    computed: list[int]
    skipped: list[int]
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.n_shards} shards in {self.out}: {len(self.computed)} computed, {len(self.skipped)} already "
            f"complete, in {self.seconds:.1f} s"
        )


def shard_path(out: Path, index: int) -> Path:
    return out / f"shard-{index:05d}.h5"


def file_sha256(path: Path) -> str:
    return sha256_file(path).hexdigest()


def shard_is_complete(out: Path, index: int) -> bool:
    """A shard counts only if its file exists and matches the checksum written after it."""
    path, side = shard_path(out, index), shard_path(out, index).with_suffix(".h5.sha256")
    if not (path.is_file() and side.is_file()):
        return False
    return side.read_text().strip() == file_sha256(path)


def subset(inputs: Inputs, start: int, stop: int) -> Inputs:
    labels = inputs.labels[start:stop] if inputs.labels is not None else None
    return Inputs(
        inputs.ids[start:stop],
        inputs.sources[start:stop],
        inputs.modality,
        labels,
        from_files=inputs.from_files,
        origin=inputs.origin,
    )


def compute_shard(featurize_fn: Callable, inputs: Inputs, out: Path, index: int, shard_size: int) -> dict:
    """Featurize one shard into its file, then write its checksum; returns its manifest entry."""
    part = subset(inputs, index * shard_size, (index + 1) * shard_size)
    path = shard_path(out, index)
    report = featurize_fn(part, path)
    side = path.with_suffix(".h5.sha256")
    tmp = side.with_name(f".{side.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(file_sha256(path))
    os.replace(tmp, side)
    return {"index": index, "file": path.name, "n": len(part), "errors": len(report.errors)}


def plan(inputs: Inputs, out: Path, shard_size: int) -> tuple[int, list[int], list[int]]:
    """(number of shards, shards to compute, shards already complete)."""
    if shard_size < 1:
        raise InputError("shard size must be at least 1")
    n_shards = max(1, -(-len(inputs) // shard_size))
    done = [i for i in range(n_shards) if shard_is_complete(out, i)]
    return n_shards, [i for i in range(n_shards) if i not in set(done)], done


def write_manifest(out: Path, n_shards: int, shard_size: int, spec_json: str, inputs: Inputs) -> Path:
    entries = []
    for i in range(n_shards):
        path = shard_path(out, i)
        start, stop = i * shard_size, min(len(inputs), (i + 1) * shard_size)
        entries.append(
            {
                "index": i,
                "file": path.name,
                "first_id": inputs.ids[start],
                "last_id": inputs.ids[stop - 1],
                "n": stop - start,
                "sha256": path.with_suffix(".h5.sha256").read_text().strip(),
            }
        )
    manifest = {
        "format": "featurizer-shards/1",
        "spec": json.loads(spec_json),
        "shard_size": shard_size,
        "n_items": len(inputs),
        "shards": entries,
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)
    return out / MANIFEST


def embed_local(inputs: Inputs, out: Path, todo: Sequence[int], shard_size: int, featurize_fn: Callable) -> None:
    for index in todo:
        compute_shard(featurize_fn, inputs, out, index, shard_size)


def embed_ray(
    inputs: Inputs,
    out: Path,
    todo: Sequence[int],
    shard_size: int,
    featurize_kwargs: dict,
    *,
    address: str | None,
    workers: int,
    gpus_per_worker: float,
) -> None:
    """Shards as rows of a Ray Dataset, mapped by a pool of actors that each load the model once."""
    try:
        import ray
    except ImportError:
        raise MissingPackageError("the Ray engine needs Ray: pip install 'featurizer[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    worker = _ray_worker_class()
    dataset = ray.data.from_items([{"index": int(i)} for i in todo], override_num_blocks=max(1, len(todo)))
    results = dataset.map_batches(
        worker,
        fn_constructor_kwargs={
            "inputs": inputs,
            "out": str(out),
            "shard_size": shard_size,
            "featurize_kwargs": featurize_kwargs,
        },
        batch_size=1,
        concurrency=max(1, workers),
        num_gpus=gpus_per_worker or None,
        num_cpus=1,
    )
    for _ in results.iter_rows():  # each row: a finished shard (its file and checksum are on disk)
        pass


def _ray_worker_class():
    class ShardWorker:
        """One per actor: builds the extractor (and loads the model) once, then featurizes shards."""

        def __init__(self, inputs, out, shard_size, featurize_kwargs):
            from featurizer._extract import Extractor

            self.inputs, self.out, self.shard_size = inputs, Path(out), shard_size
            self.extractor = Extractor(**featurize_kwargs)

        def __call__(self, batch):
            from featurizer._extract import featurize_with

            entries = [
                compute_shard(
                    lambda part, path: featurize_with(self.extractor, part, path),
                    self.inputs,
                    self.out,
                    int(i),
                    self.shard_size,
                )
                for i in batch["index"]
            ]
            return {"index": np.asarray([e["index"] for e in entries]), "n": np.asarray([e["n"] for e in entries])}

    return ShardWorker


def merge(out: str | os.PathLike, target: str | os.PathLike | None = None) -> Path:
    """Join the shards of ``out`` into one feature file; vectors are virtual datasets over the shards."""
    out = Path(out)
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{out} has no {MANIFEST}: run 'xfer embed' first (or let it finish)")
    manifest = json.loads(manifest_path.read_text())
    target = Path(target) if target else out / "merged.h5"
    shards = [out / s["file"] for s in manifest["shards"]]
    for entry, path in zip(manifest["shards"], shards):
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            raise FeaturizerError(f"shard {path.name} is missing or damaged: re-run 'xfer embed' to recompute it")
    ids, labels, sources, errors, sizes = [], [], [], [], []
    first = FeatureFile(shards[0])
    spec_json, layers, attrs = first.attrs["spec"], first.layers, first.attrs
    dims = {layer: first.shape(layer)[1] for layer in layers}
    dtypes = {layer: first.dtype(layer) for layer in layers}
    first.close()
    for path in shards:
        with FeatureFile(path) as f:
            ids += f.ids
            sizes.append(len(f))
            labels += f.labels or []
            sources += f.sources or []
            errors += f.errors
    total = sum(sizes)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(
            format=FORMAT,
            spec=spec_json,
            versions=attrs["versions"],
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            float16=bool(attrs.get("float16", False)),
            merged_from=json.dumps([p.name for p in shards]),
        )
        f.create_dataset("ids", data=ids, dtype=_STR)
        if len(labels) == total:
            f.create_dataset("labels", data=labels, dtype=_STR)
            f.attrs["classes"] = json.dumps(sorted(set(labels)))
        if len(sources) == total:
            f.create_dataset("sources", data=sources, dtype=_STR)
        group = f.create_group("features")
        for layer in layers:
            layout = h5py.VirtualLayout(shape=(total, dims[layer]), dtype=dtypes[layer])
            start = 0
            for path, n in zip(shards, sizes):
                if n:
                    # relative to the merged file, so the folder can move as a whole
                    name = os.path.relpath(path, target.parent)
                    layout[start : start + n] = h5py.VirtualSource(name, f"features/{layer}", shape=(n, dims[layer]))
                start += n
            group.create_virtual_dataset(layer, layout)
        if errors:
            g = f.create_group("errors")
            g.create_dataset("ids", data=[i for i, _ in errors], dtype=_STR)
            g.create_dataset("reasons", data=[r for _, r in errors], dtype=_STR)
    os.replace(tmp, target)
    return target


def embed(
    inputs: str | os.PathLike | Inputs,
    out: str | os.PathLike,
    model: str | None = None,
    layers=None,
    pooling: str | None = None,
    *,
    engine: str = "local",
    shard_size: int = 1000,
    address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0,
    weights=None,
    cache_dir=None,
    device: str = "auto",
    precision: str = "fp32",
    runtime: str = "torch",
    batch_size: int | None = None,
    progress: bool = True,
    column: str | None = None,
    label_column: str | None = None,
    extensions: Sequence[str] | None = None,
) -> EmbedReport:
    """Featurize ``inputs`` into sharded feature files under ``out`` with a manifest; resumable."""
    from featurizer._extract import DEFAULT_IMAGE_MODEL, Extractor, featurize_with, inputs_for

    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    started = time.perf_counter()
    spec = {
        "model": model or DEFAULT_IMAGE_MODEL,
        "layers": layers,
        "pooling": pooling,
        "weights": weights,
        "cache_dir": cache_dir,
        "device": device,
        "precision": precision,
        "runtime": runtime,
        "batch_size": batch_size,
    }
    if engine == "ray" and str(device).startswith("cuda") and not gpus_per_worker:
        raise InputError(
            f"--device {device} with the Ray engine needs --gpus-per-worker (1 for a GPU each): "
            "Ray hides GPUs from actors that do not ask for one"
        )
    # With Ray the actors featurize; the driver only plans, so it keeps its model (if it loads one) off the GPU.
    local = Extractor(**{**spec, "device": "cpu"} if engine == "ray" else spec, progress=progress)
    inputs = inputs_for(local, inputs, column=column, label_column=label_column, extensions=extensions)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_shards, todo, done = plan(inputs, out, shard_size)
    if engine == "local":
        embed_local(inputs, out, todo, shard_size, lambda part, path: featurize_with(local, part, path))
    elif todo:
        embed_ray(
            inputs,
            out,
            todo,
            shard_size,
            {**spec, "progress": False, "num_workers": 0},
            address=address,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
        )
    write_manifest(out, n_shards, shard_size, local.spec.to_json(), inputs)
    return EmbedReport(out, n_shards, list(todo), done, time.perf_counter() - started)
