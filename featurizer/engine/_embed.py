"""``embed``: a dataset featurized into shards by one of two engines, the local one or Ray.

The shards, the manifest and merging are shared (featurizer._shards); this module chooses the
engine and runs it, so neither engine reaches for the other.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields, replace

from featurizer.backbones import FeatureOptions, RunOptions, resolve
from featurizer.base import InputError
from featurizer.cache import check_quantization
from featurizer.engine._extract import Extractor, featurize_with, inputs_for, model_for, split_options
from featurizer.engine._ray_engine import embed_ray
from featurizer.engine._shards import (
    ENGINES,
    FORMATS,
    EmbedReport,
    embed_local,
    embedded_origin,
    plan_shards,
    remove_stale_shards,
    shard_is_complete,
    write_manifest,
)
from featurizer.inputs import Inputs, ReadOptions
from featurizer.storage import location, mark_folder


@dataclass(frozen=True)
class EmbedOptions:
    """How ``embed`` cuts and distributes the work (never part of the spec)."""

    engine: str = "local"  # or "ray"
    shard_size: int = 1000
    address: str | None = None  # a Ray cluster; None: start a local Ray
    actors: int = 1  # Ray actors, each loading the model once
    gpus_per_actor: float = 0
    format: str = "h5"  # each shard a feature file (h5) or a Parquet file (parquet)
    quantize: str | None = None  # Parquet shards: int8 or binary codes, calibrated per shard


def embed(
    inputs: str | os.PathLike | Inputs, out: str | os.PathLike, model=None, layers=None, **options
) -> EmbedReport:
    """Featurize ``inputs`` into sharded feature files under ``out`` with a manifest; resumable.

    ``options`` are ``featurize``'s (feature, run and read options) and ``EmbedOptions``' fields.
    Returns an ``EmbedReport``.
    """
    names = {f.name for f in fields(EmbedOptions)}
    engine = EmbedOptions(**{k: v for k, v in options.items() if k in names})
    features, run, read = split_options(
        model=model, layers=layers, **{k: v for k, v in options.items() if k not in names}
    )
    return embed_options(inputs, out, features, run, read, engine)


def embed_options(
    inputs: str | os.PathLike | Inputs,
    out: str | os.PathLike,
    features: FeatureOptions,
    run: RunOptions | None = None,
    read: ReadOptions | None = None,
    options: EmbedOptions | None = None,
) -> EmbedReport:
    """``embed`` with its options as objects (what ``xfer embed`` calls)."""
    o = options or EmbedOptions()
    engine, shard_size, address, actors, gpus_per_actor = o.engine, o.shard_size, o.address, o.actors, o.gpus_per_actor
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if o.format not in FORMATS:
        raise InputError(f"--format is one of {', '.join(FORMATS)}, not {o.format!r}")
    if check_quantization(o.quantize) and o.format != "parquet":
        raise InputError("--quantize applies to Parquet shards: add --format parquet")
    started = time.perf_counter()
    run = run or RunOptions()
    if engine == "ray" and str(run.device).startswith("cuda") and not gpus_per_actor:
        raise InputError(
            f"--device {run.device} with the Ray engine needs --gpus-per-actor (1 for a GPU each): "
            "Ray hides GPUs from actors that do not ask for one"
        )
    device = "cuda" if gpus_per_actor else run.device  # where the work runs decides runtime 'auto'
    model, modality = model_for(inputs, features.model)
    resolved = resolve(replace(features, model=model), modality, device)
    spec = resolved.spec
    # With Ray the actors featurize; the driver only plans, so it keeps any model it loads off the GPU.
    local = Extractor.from_resolved(resolved, replace(run, device="cpu") if engine == "ray" else run)
    inputs = inputs_for(local, inputs, read)
    out = location(out)
    previous = embedded_origin(out)
    if previous and previous != inputs.origin:  # a resume is the same inputs; an embed of others is never replaced
        raise InputError(
            f"{out} holds the embeddings of {previous}, not of {inputs.origin}; choose another -o or move it away"
        )
    mark_folder(out, kind="embed")  # before any shard: a killed run's folder is known as xfer's, and resumed
    shards = plan_shards(len(inputs), shard_size, FORMATS[o.format], o.quantize)
    done = [s for s in shards if shard_is_complete(s.path(out), spec, inputs.ids[s.start : s.stop], o.quantize)]
    todo = [s for s in shards if s not in done]
    remove_stale_shards(out, len(shards), FORMATS[o.format])
    notes = []
    if engine == "local":

        def featurize_fn(part, path, attrs):
            return featurize_with(local, part, path, attrs=attrs, force=True)

        embed_local(inputs, out, todo, featurize_fn)
    elif todo:
        notes = embed_ray(
            inputs, out, todo, spec, run, dims=local.layer_dims(), address=address, actors=actors,
            gpus_per_actor=gpus_per_actor,
        )  # fmt: skip
    write_manifest(out, shards, spec, inputs)
    return EmbedReport(
        out, len(shards), [s.index for s in todo], [s.index for s in done], time.perf_counter() - started, notes,
        list(inputs.skipped), list(inputs.notes),
    )  # fmt: skip
