"""Batch-embedding a dataset as shards: the local engine and the Ray engine share everything here.

The inputs are cut, in order, into shards of ``shard_size`` items. Each shard becomes a feature
file ``OUT/shard-00000.h5`` (written under a temporary name, then renamed) with a ``.sha256``
sidecar written after it; ``OUT/manifest.json`` lists the shards, their ids and checksums. A shard
file records its feature spec and a digest of the ids it was planned to hold, so a re-run reuses a
shard only when its checksum, its spec and its ids all match: another ``--layer``, another
``--shard-size`` or a grown input recomputes exactly the shards that changed (through the cache,
so only new items cost a forward pass). Items of the input that no shard holds (a repeated id, a
file of another type) are listed in the manifest with their reason. ``merge`` joins the shards
into one feature file whose vectors are HDF5 virtual datasets over the shard files, with those
items as error rows and a stamp of each shard, which every open of the merged file checks.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from featurizer.base import FeaturizerError, InputError
from featurizer.cache import FeatureFile, FeatureFileWriter, check_output, feature_file_as_parquet
from featurizer.inputs import Inputs
from featurizer.spec import FeatureSpec
from featurizer.storage import (
    atomic_output,
    atomic_write_text,
    claim,
    default_outputs,
    exists,
    file_sha256,
    ids_sha256,
    is_url,
    join,
    list_files,
    local_copy_out,
    location,
    parquet_metadata,
    remove,
    staging_dir,
)

MANIFEST = "manifest.json"
# Parquet shards: the manifest and checksums start with "_", which Parquet readers (pyarrow,
# Spark, polars) skip, so the folder reads as one table
PARQUET_MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "featurizer-shards/2"
ENGINES = ("local", "ray")
SHARD_INPUTS = "shard_inputs"  # attribute of a shard file: the digest of the ids it was planned to hold
_SHARD_NAME = re.compile(r"shard-(\d{5,})(\.h5|\.parquet)")
FORMATS = {"h5": ".h5", "parquet": ".parquet"}  # embed --format: a feature file or a Parquet file per shard
SHARD_FORMATS = tuple(FORMATS)


@dataclass
class EmbedReport:
    out: Path
    n_shards: int
    computed: list[int]
    skipped: list[int]
    seconds: float
    notes: list[str] = field(default_factory=list)  # how the items were read (the Ray engine)
    # items of the input in no shard (a repeated id, a file of another type), with the reason: in
    # the manifest, and error rows of the merged file
    not_read: list[tuple[str, str]] = field(default_factory=list)
    input_notes: list[str] = field(default_factory=list)  # how the input was read (columns, repeated ids)

    def summary(self) -> str:
        lines = [
            *self.input_notes,
            f"{self.n_shards} shards in {self.out}: {len(self.computed)} computed, {len(self.skipped)} already "
            f"complete, in {self.seconds:.1f} s",
            *self.notes,
        ]
        if self.not_read:
            shown = "; ".join(f"{i}: {r}" for i, r in self.not_read[:5])
            lines.append(
                f"{len(self.not_read)} skipped: {shown}{' ...' if len(self.not_read) > 5 else ''} "
                f"(listed in the manifest; error rows of the merged file)"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class ShardPlan:
    """Shard ``index`` holds ``inputs[start:stop]``."""

    index: int
    start: int
    stop: int
    suffix: str = ".h5"
    quantization: str | None = None  # Parquet shards: int8 or binary codes instead of float32

    def path(self, out: Path | str) -> Path | str:
        return shard_path(out, self.index, self.suffix)


def shard_path(out: Path | str, index: int, suffix: str = ".h5") -> Path | str:
    """The shard's file: a path in a local ``out``, a URL in one in object storage."""
    return location(out) / f"shard-{index:05d}{suffix}"


def sidecar(path: Path | str) -> Path | str:
    """The checksum file of a shard (hidden from Parquet readers for a Parquet shard)."""
    path = location(path)
    return path.with_name(f"_{path.name}.sha256" if path.name.endswith(".parquet") else f"{path.name}.sha256")


def manifest_name(suffix: str) -> str:
    return PARQUET_MANIFEST if suffix == ".parquet" else MANIFEST


def _name(path: Path | str) -> str:
    return posixpath.basename(str(path))


def plan_shards(n_items: int, shard_size: int, suffix: str = ".h5", quantization: str | None = None) -> list[ShardPlan]:
    if shard_size < 1:
        raise InputError("shard size must be at least 1")
    n_shards = max(1, -(-n_items // shard_size))
    return [
        ShardPlan(i, i * shard_size, min(n_items, (i + 1) * shard_size), suffix, quantization) for i in range(n_shards)
    ]


def shard_is_complete(path: Path | str, spec: FeatureSpec, ids: Sequence[str], quantization: str | None = None) -> bool:
    """A shard counts only if its file matches its checksum, and holds ``spec``'s vectors of exactly ``ids``
    (quantised as asked)."""
    if not (_is_file(path) and _is_file(sidecar(path))):
        return False
    if read_text(sidecar(path)).strip() != file_sha256(path):
        return False
    if str(path).endswith(".parquet"):
        try:
            meta = parquet_metadata(path)
        except (FeaturizerError, OSError, ValueError):
            return False
        same_spec = not spec.differences(FeatureSpec.from_json(meta.get("spec", "{}")))
        methods = {info.get("method") for info in json.loads(meta.get("quantization", "{}")).values()}
        same_codes = methods == ({quantization} if quantization else set())
        return same_spec and same_codes and meta.get(SHARD_INPUTS) == ids_sha256(ids)
    try:
        with FeatureFile(path) as f:
            return not spec.differences(f.spec) and f.attrs.get(SHARD_INPUTS) == ids_sha256(ids)
    except (InputError, ValueError, KeyError):
        return False


def subset(inputs: Inputs, start: int, stop: int) -> Inputs:
    return replace(inputs.take(range(start, stop)), skipped=[], notes=[], replaced=0)


def _is_file(path: Path | str) -> bool:
    return location(path).is_file()


def embedded_origin(out: Path | str) -> str | None:
    """The inputs an embed folder was made from (its manifest's origin), None when it has no readable manifest."""
    path = location(out) / MANIFEST
    try:
        return str(json.loads(read_text(path)).get("origin", "")) if path.exists() else None
    except (ValueError, OSError, AttributeError):
        return None


def read_text(path: Path | str) -> str:
    return location(path).read_text()


def compute_shard(featurize_fn: Callable, inputs: Inputs, out: Path | str, shard: ShardPlan) -> None:
    """Featurize one shard into its file, then write its checksum beside it (in object storage:
    featurized to a local file, uploaded, then its checksum: a shard without one does not count)."""
    part = subset(inputs, shard.start, shard.stop)
    path = shard.path(out)
    attrs = {SHARD_INPUTS: ids_sha256(part.ids)}
    if shard.suffix == ".parquet":  # featurized to a feature file aside, then written as Parquet
        with atomic_output(path) as local, tempfile.TemporaryDirectory(dir=staging_dir()) as aside:
            featurize_fn(part, Path(aside) / "shard.h5", attrs)
            feature_file_as_parquet(Path(aside) / "shard.h5", local, attrs, shard.quantization)
            digest = file_sha256(local)
    else:
        with local_copy_out(path) as local:
            featurize_fn(part, local, attrs)
            digest = file_sha256(local)
    atomic_write_text(sidecar(path), digest)


def write_manifest(out: Path | str, shards: Sequence[ShardPlan], spec: FeatureSpec, inputs: Inputs) -> Path:
    entries = [
        {
            "index": s.index,
            "file": _name(s.path(out)),
            "first_id": inputs.ids[s.start] if s.stop > s.start else None,
            "last_id": inputs.ids[s.stop - 1] if s.stop > s.start else None,
            "n": s.stop - s.start,
            "ids_sha256": ids_sha256(inputs.ids[s.start : s.stop]),
            "sha256": read_text(sidecar(s.path(out))).strip(),
        }
        for s in shards
    ]
    manifest = {
        "format": MANIFEST_FORMAT,
        "spec": json.loads(spec.to_json()),
        "origin": inputs.origin,
        "shard_format": shards[0].suffix.lstrip("."),
        "shard_size": shards[0].stop - shards[0].start if len(shards) > 1 else None,
        "n_items": len(inputs),
        "shards": entries,
        "skipped": [list(row) for row in inputs.skipped],  # error rows of items no shard holds; merge keeps them
    }
    return atomic_write_text(join(out, manifest_name(shards[0].suffix)), json.dumps(manifest, indent=1))


def remove_stale_shards(out: Path | str, n_shards: int, suffix: str = ".h5") -> None:
    """Shard files of an earlier plan with more shards than this one, or in the other format (their
    items are in this plan's shards)."""

    def stale(match) -> bool:
        return bool(match) and (int(match.group(1)) >= n_shards or match.group(2) != suffix)

    if is_url(out):
        for name, _ in list_files(str(out)) if exists(str(out)) else []:
            if stale(_SHARD_NAME.fullmatch(name)):
                remove(join(out, name))
                remove(sidecar(join(out, name)))
        return
    for path in out.glob("shard-*"):
        if stale(_SHARD_NAME.fullmatch(path.name)):
            path.unlink(missing_ok=True)
            sidecar(path).unlink(missing_ok=True)


def embed_local(inputs: Inputs, out: Path | str, todo: Sequence[ShardPlan], featurize_fn: Callable) -> None:
    for shard in todo:
        compute_shard(featurize_fn, inputs, out, shard)


def merge(out: str | os.PathLike, target: str | os.PathLike | None = None) -> Path | str:
    """Join the shards of ``out`` into one feature file; vectors are virtual datasets over the shards.

    Shards in object storage (or a target there) are copied instead: a virtual dataset can only
    point at local files. Refused: a manifest entry that points outside ``out``, a shard that is
    missing or does not match its checksum, and shards whose specs differ from the manifest's.
    """
    out = location(out)
    if _is_file(out / PARQUET_MANIFEST):
        raise InputError(
            f"the shards of {out} are Parquet files: together they are one table already "
            "(pyarrow.dataset, pandas, polars and Spark read the folder); merge joins feature files"
        )
    manifest_path = out / MANIFEST
    if not _is_file(manifest_path):
        raise InputError(f"{out} has no {MANIFEST}: run 'xfer embed' first (or let it finish)")
    try:
        manifest = json.loads(read_text(manifest_path))
        spec = FeatureSpec.from_json(json.dumps(manifest["spec"]))
        entries = manifest["shards"]
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{manifest_path} is not an 'xfer embed' manifest ({err})") from None
    shards = [_shard_in(out, entry) for entry in entries]
    target = target or default_outputs("merge", out)["output"]
    target = location(target)
    claim(target, inputs=[manifest_path, *shards], kind="features")  # never over a shard or the manifest
    check_output(target, str(manifest.get("origin", "")))  # a feature file of other inputs is never replaced
    ids, labels, sources, errors, sizes, columns, stamps = [], [], [], [], [], [], []
    dims, dtype = {}, "float32"
    for entry, path in zip(entries, shards):
        # stat first: a shard that changes while it is checksummed has another time than its stamp
        st = None if is_url(path) or not _is_file(path) else os.stat(path)
        digest = file_sha256(path) if _is_file(path) else None
        if digest is None or digest != entry.get("sha256"):
            raise FeaturizerError(f"shard {_name(path)} is missing or damaged: re-run 'xfer embed' to recompute it")
        stamps.append((path, st, digest))
        with FeatureFile(path) as f:
            diffs = spec.differences(f.spec)
            if diffs:
                raise FeaturizerError(
                    f"shard {_name(path)} was made with another spec than {MANIFEST} names ({'; '.join(diffs)}): "
                    "re-run 'xfer embed' to recompute it"
                )
            ids += f.ids
            sizes.append(len(f))
            labels.append(f.labels)
            sources.append(f.sources)
            columns.append(f.columns)
            errors += f.errors
            dims.update((layer, f.shape(layer)[1]) for layer in f.layers if len(f))
            dtype = "float16" if f.attrs.get("float16") else dtype
    errors += _manifest_skipped(manifest)  # items the input had but no shard holds (duplicates, other files)
    labels = None if any(part is None for part in labels) else [x for part in labels for x in part]
    sources = None if any(part is None for part in sources) else [x for part in sources for x in part]
    names = list(columns[0]) if columns and all(list(part) == list(columns[0]) for part in columns) else []
    columns = {name: [x for part in columns for x in part[name]] for name in names}
    copy = is_url(out) or is_url(target)
    attrs = {"merged_from": json.dumps([_name(p) for p in shards])}
    with (
        local_copy_out(target) as local,
        FeatureFileWriter(
            local,
            spec,
            ids,
            labels,
            sources=sources,
            columns=columns,
            dtype=dtype,
            origin=manifest.get("origin", ""),
            attrs=attrs,
        ) as writer,
    ):
        if not copy:  # what each shard was when checked: every open of the merged file compares
            writer.stamp_sources(stamps)
        for layer in spec.layers:
            if not copy:
                writer.link_layer(layer, list(zip(shards, sizes)), dims.get(layer, 0))
                continue
            start = 0
            writer.write_layer(layer, 0, np.zeros((0, dims.get(layer, 0)), np.float32))
            for path in shards:
                with FeatureFile(path) as f:
                    if len(f):
                        writer.write_layer(layer, start, f.read(layer))
                    start += len(f)
        writer.write_errors(errors)
    return target


def _manifest_skipped(manifest: dict) -> list[tuple[str, str]]:
    """The manifest's items that are in no shard, with the reason (none in manifests before they were recorded)."""
    rows = manifest.get("skipped") or []
    return [(str(row[0]), str(row[1])) for row in rows if isinstance(row, list | tuple) and len(row) == 2]


def _shard_in(out: Path | str, entry: dict) -> Path | str:
    """The shard file of a manifest entry, refusing names that lead outside the output folder."""
    name = str(entry.get("file", ""))
    if not _SHARD_NAME.fullmatch(name):
        raise FeaturizerError(f"{MANIFEST} names {name!r}, which is not a shard file inside {out}; refusing to merge")
    match = _SHARD_NAME.fullmatch(name)
    return shard_path(out, int(match.group(1)), match.group(2))
