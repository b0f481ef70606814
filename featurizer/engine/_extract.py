"""Featurizing: inputs -> content keys -> cache lookup -> batches -> backbone -> pooled layers -> cache.

``Extractor`` computes the vectors of one ``FeatureSpec`` (made by ``featurizer._resolve``) and
holds the caches of its layers; it loads the network only when something is missing from the
cache, so a fully cached run never imports a model zoo. ``featurize`` is the whole job behind
``xfer featurize``: it also writes the feature file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from featurizer.backbones import (
    FeatureOptions,
    Resolved,
    RunOptions,
    is_out_of_memory,
    layer_dims,
    load_backbone,
    load_onnx,
    load_static,
    resolve,
    resolve_device,
    weights_for_spec,
    with_default_layers,
)
from featurizer.base import InputError, ItemError, raise_if_interrupted
from featurizer.cache import (
    CacheDamaged,
    EmbeddingStore,
    FeatureFileWriter,
    RemoteCache,
    check_output,
    lock_output,
    release_output,
    storable_text,
)
from featurizer.engine._memory import keep_freed_memory
from featurizer.inputs import (
    DecodedBatches,
    FileKeyMemo,
    ImageTransform,
    Inputs,
    ReadOptions,
    array_key,
    default_workers,
    guess_modality,
    pad_token_batch,
    read_inputs,
    text_key,
    view_spec,
)
from featurizer.spec import (
    CPU_RUNTIMES,
    IMAGE,
    BackboneConfig,
    ComputeMode,
    FeatureSpec,
    WeightsRef,
    auto_device_type,
    check_device_name,
    default_model,
    get_config,
    validate,
)
from featurizer.storage import atomic_output, claim, guarding, is_url, keeping_reads, write_csv, written_by_xfer

log = logging.getLogger(__name__)

ON_ERROR = ("skip", "fail")
WRITE_ROWS = 4096
TEXT_CHUNK = 8192  # texts tokenized and length-sorted together


@dataclass
class FeaturizeReport:
    """What a featurize run did: counts, failures, time and the file it wrote."""

    spec: FeatureSpec
    n_items: int
    n_computed: int
    n_cached: int
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    truncated: int = 0
    seconds: float = 0.0
    output: Path | str | None = None  # a URL for a file in object storage
    replaced: int = 0  # undecodable bytes that became U+FFFD
    unlabelled: int = 0  # items of a labelled input without a label
    notes: list[str] = field(default_factory=list)
    views: int = 0  # augmented views of each image also stored (featurize --augment)

    @property
    def n_ok(self) -> int:
        return self.n_items - len(self.errors)

    def summary(self) -> str:
        rate = f" ({self.n_computed / self.seconds:.1f} items/s)" if self.n_computed and self.seconds else ""
        lines = [*self.notes]
        lines += [
            f"{self.n_ok} of {self.n_items} items featurized with {self.spec.model} "
            f"[{', '.join(self.spec.layers)}]: {self.n_computed} computed, {self.n_cached} from cache, "
            f"{len(self.errors)} failed, in {self.seconds:.1f} s{rate}"
        ]
        if self.views:
            lines.append(f"and {self.views} augmented views of each image (random resized crop and flip)")
        for what, items in (("failed", self.errors), ("skipped", self.skipped)):
            if items:
                shown = "; ".join(f"{i}: {r}" for i, r in items[:5])
                lines.append(f"{len(items)} {what}: {shown}{' ...' if len(items) > 5 else ''}")
        if self.unlabelled:
            lines.append(
                f"{self.unlabelled} items have no label (blank, null or NaN): they are featurized, "
                "and fit, evaluate and fewshot leave them out"
            )
        if self.replaced:
            lines.append(f"{self.replaced} bytes could not be decoded and became U+FFFD (is --encoding right?)")
        if self.truncated:
            lines.append(f"{self.truncated} texts were longer than the model's maximum length and were truncated")
        if self.output:
            lines.append(f"wrote {self.output}")
            if self.errors or self.skipped:
                lines.append(f"wrote {errors_csv_path(self.output)}")
        return "\n".join(lines)


class Extractor:
    """Computes and caches the vectors of one feature spec.

    Build it from a spec (``Extractor(spec, run)`` or ``Extractor.from_spec(spec, device=...)``) or
    from what a user asks for (``Extractor.from_options``). The backbone is built on first need.
    """

    def __init__(self, spec: FeatureSpec, run: RunOptions | None = None, resolved: Resolved | None = None):
        self.spec = spec
        self.run = run or RunOptions()
        if resolved is not None and resolved.spec != spec:
            raise ValueError("resolved is the resolver's result for another spec")
        # the resolver's config and weights when it ran (from_options); from a spec alone, looked up once
        self.config: BackboneConfig = resolved.config if resolved else get_config(spec.model, spec.modality)
        self.weights: WeightsRef = resolved.weights if resolved else weights_for_spec(self.config, spec)
        self.cache_dir = self.run.cache()
        check_device_name(self.run.device)
        pinned = auto_device_type(spec.precision, spec.runtime)
        self._mode: ComputeMode | None = None
        if self.run.device != "auto" or pinned is not None:  # known without asking torch: check it now
            device_type = pinned if self.run.device == "auto" else self.run.device.partition(":")[0]
            self._mode = validate(spec.precision, spec.runtime, spec.modality, device_type)
        self._backbone = None
        self._backbone_of: Extractor | None = None  # an augmented view's extractor runs its base's network
        self.device = None
        self.forward_calls = 0
        self.truncated = 0  # texts longer than the model's maximum length in the last run
        self.stores = {name: EmbeddingStore(self.cache_dir, spec, name) for name in spec.layers}
        self.remote_cache = None  # a cache in object storage: mirrored in cache_dir, pulled now, pushed by compact
        if self.run.remote_cache():
            self.remote_cache = RemoteCache(self.run.remote_cache(), self.cache_dir)
            self.remote_cache.pull(store.dir for store in self.stores.values())

    @classmethod
    def from_spec(cls, spec: FeatureSpec, **run) -> Extractor:
        """An extractor that makes exactly ``spec``'s vectors; ``run`` are ``RunOptions`` fields."""
        return cls(spec, RunOptions(**run))

    @classmethod
    def for_model(cls, model: str | None = None, layers=None, **options) -> Extractor:
        """An extractor for a model name, with ``featurize``'s keyword options (feature and run options)."""
        features, run, read = split_options(model=model, layers=layers, **options)
        if read != ReadOptions():
            raise TypeError("an extractor reads no files: give read options to featurize")
        return cls.from_options(features, run)

    @classmethod
    def from_options(cls, options: FeatureOptions, run: RunOptions | None = None, modality: str | None = None):
        run = run or RunOptions()
        return cls.from_resolved(resolve(options, modality, run.device), run)

    @classmethod
    def from_resolved(cls, resolved: Resolved, run: RunOptions | None = None) -> Extractor:
        """An extractor for what ``resolve`` decided: its config and weights are used as they are."""
        return cls(resolved.spec, run, resolved)

    @property
    def modality(self) -> str:
        return self.spec.modality

    def layer_dims(self) -> list[int]:
        """The length of each layer's vector, in spec order (from the registry or a weightless skeleton)."""
        return layer_dims(self.spec)

    def _resolve_device(self):
        if self.device is None:
            self.device = resolve_device(self.run.device, auto_device_type(self.spec.precision, self.spec.runtime))
            self._mode = validate(self.spec.precision, self.spec.runtime, self.modality, self.device.type)
        return self.device

    @property
    def mode(self) -> ComputeMode:
        if self.spec.runtime in CPU_RUNTIMES and self._mode is not None:  # the CPU; asking torch would import it
            return self._mode
        self._resolve_device()
        return self._mode

    def _on_gpu(self) -> bool:
        """Whether batches run on a CUDA GPU (the ONNX runtime is CPU-only and never imports torch to ask)."""
        return self.spec.runtime == "torch" and self._resolve_device().type == "cuda"

    def views(self, count: int) -> list[Extractor]:
        """Extractors of augmented views 1..``count`` of this spec's images, sharing this network."""

        extractors = [Extractor(view_spec(self.spec, v), self.run) for v in range(1, count + 1)]
        for extractor in extractors:
            extractor._backbone_of = self
        return extractors

    def _load(self):
        if self._backbone is None and self._backbone_of is not None:
            self._backbone = self._backbone_of._load()
            self.device = self._backbone_of.device
        if self._backbone is None:
            if self.spec.runtime == "onnx":  # the CPU, and no torch import: start-up is most of a small run
                self._backbone = load_onnx(self.config, self.weights, self.mode, self.cache_dir)
                return self._backbone
            if self.spec.runtime == "numpy":  # a static token table
                self._backbone = load_static(self.config, self.weights, self.cache_dir)
                return self._backbone

            self._backbone = load_backbone(self.config, self.weights)
            self._backbone.to(self._resolve_device(), self.mode)
        return self._backbone

    # -- keys -----------------------------------------------------------------------------
    def keys(self, inputs: Inputs) -> tuple[list[bytes | None], list[tuple[str, str]]]:
        """Content key per item (``None`` where the item cannot be read) and the read errors."""
        files = [p for p, s in enumerate(inputs.sources) if isinstance(s, str) and inputs.from_files and s]
        file_keys = dict(zip(files, FileKeyMemo(self.cache_dir).keys([inputs.sources[p] for p in files])))
        keys: list[bytes | None] = []
        errors = []
        for pos, (item_id, source) in enumerate(zip(inputs.ids, inputs.sources)):
            if pos in file_keys:
                key = file_keys[pos]
            elif not isinstance(source, str):
                key = array_key(source)  # an image given in memory
            elif not inputs.from_files:
                key = text_key(source)
            else:
                key = InputError("empty path")
            if isinstance(key, Exception):
                reason = key.strerror if isinstance(key, OSError) and key.strerror else str(key)
                keys.append(None)
                errors.append((item_id, f"unreadable: {reason}"))
            else:
                keys.append(key)
        return keys, errors

    # -- computing ------------------------------------------------------------------------
    def ensure(
        self, inputs: Inputs, keys: Sequence[bytes | None], on_error: str = "skip"
    ) -> tuple[int, list[tuple[str, str]]]:
        """Compute and cache every item whose vectors are missing; (number computed, item errors).

        Items are computed once per content key; an item that fails fails for every input that
        holds the same content (two empty files, two blank cells), each named in the errors.
        """
        for store in self.stores.values():
            store.acquire()
        known = [k for k in keys if k is not None]
        present = [store.has(known) for store in self.stores.values()]
        need = {k for pos, k in enumerate(known) if not all(p[pos] for p in present)}
        todo, seen = [], set()
        for pos, k in enumerate(keys):
            if k in need and k not in seen:
                seen.add(k)
                todo.append(pos)
        if not todo:
            return 0, []
        if not self._on_gpu():  # a GPU's activations are not host memory
            keep_freed_memory()  # before decoding workers fork: they inherit it
        run = self._run_images if self.modality == IMAGE else self._run_texts
        failed = {keys[pos]: reason for pos, reason in run(inputs, keys, todo, on_error)}
        errors = [(item_id, failed[k]) for item_id, k in zip(inputs.ids, keys) if k in failed]
        return len(todo) - len(failed), errors

    def _progress(self, total: int):
        from tqdm.auto import tqdm

        unit = " img" if self.modality == IMAGE else " text"
        view = self.spec.preprocessing.get("augment", {}).get("view")
        desc = self.spec.model + (f" view {view}" if view else "")
        return tqdm(total=total, unit=unit, desc=desc, disable=not self.run.progress, dynamic_ncols=True)

    def _store_batch(self, keys: Sequence[bytes], vectors: dict[str, np.ndarray]) -> None:
        for name, store in self.stores.items():
            fresh = np.flatnonzero(~np.asarray(store.has(keys), dtype=bool))
            if len(fresh):
                store.add([keys[i] for i in fresh], vectors[name][fresh])
        raise_if_interrupted()  # the batch is kept; a Ctrl-C swallowed while computing it stops here

    def _run_images(self, inputs: Inputs, keys, todo: list[int], on_error: str) -> list[tuple[int, str]]:

        batch_size = self.run.batch_size or self.mode.default_batch_size
        workers = self.run.workers if self.run.workers is not None else default_workers()
        if len(todo) <= batch_size:
            workers = 0  # starting workers costs more than decoding one batch
        sources = [inputs.sources[p] for p in todo]
        batches = DecodedBatches(sources, ImageTransform(self.spec.preprocessing), batch_size, workers)
        # Worker processes decode from now on while the network is imported, built and loaded.
        errors = []
        with closing(batches):
            self._load()
            with self._progress(len(todo)) as bar:
                for positions, pixels, failures in batches:
                    for pos, reason in failures:
                        if on_error == "fail":
                            raise ItemError(f"cannot featurize {inputs.ids[todo[pos]]}: {reason}")
                        errors.append((todo[pos], reason))
                    if len(positions):
                        self._store_batch([keys[todo[p]] for p in positions], self._forward(pixels))
                    bar.update(len(positions) + len(failures))
        return errors

    def _run_texts(self, inputs: Inputs, keys, todo: list[int], on_error: str) -> list[tuple[int, str]]:

        backbone = self._load()
        batch_size = self.run.batch_size or self.mode.default_batch_size
        errors = []
        empty = [p for p in todo if not inputs.sources[p].strip()]
        for p in empty:
            if on_error == "fail":
                raise ItemError(f"cannot featurize {inputs.ids[p]}: empty text")
            errors.append((p, "empty text"))
        todo = [p for p in todo if inputs.sources[p].strip()]
        self.truncated = 0
        with self._progress(len(todo)) as bar:
            # Tokenize a chunk at a time: the tokenizer's per-text objects would otherwise grow with the input.
            for chunk_start in range(0, len(todo), TEXT_CHUNK):
                chunk = todo[chunk_start : chunk_start + TEXT_CHUNK]
                tokens, truncated = backbone.tokenize_counting([inputs.sources[p] for p in chunk])
                self.truncated += truncated
                order = np.argsort([len(t) for t in tokens], kind="stable")  # similar lengths share a batch
                for start in range(0, len(order), batch_size):
                    chosen = order[start : start + batch_size]
                    ids, mask = pad_token_batch([tokens[i] for i in chosen], backbone.pad_id)
                    batch = {"input_ids": ids, "attention_mask": mask}  # numpy; the backbone takes it on device
                    self._store_batch([keys[chunk[i]] for i in chosen], self._forward(batch))
                    bar.update(len(chosen))
        return errors

    def _forward(self, batch) -> dict[str, np.ndarray]:
        """Pooled vectors of every layer for one batch; on GPU out-of-memory, halve and go on."""
        size = len(batch["input_ids"]) if isinstance(batch, dict) else len(batch)
        limit = getattr(self, "_max_forward", None)  # learned from an out-of-memory error
        if limit is not None and size > limit:
            return self._forward_parts(batch, size, limit)
        try:
            vectors = self._backbone.pooled(batch, self.spec.layers, self.spec.pooling)
            self.forward_calls += 1
            return vectors
        except RuntimeError as err:
            if size == 1 or not self._on_gpu():
                raise

            if not is_out_of_memory(err):
                raise
        import torch

        torch.cuda.empty_cache()  # here, not in the except block: its traceback still holds the failed pass's tensors
        self._max_forward = size // 2
        log.warning("CUDA out of memory at batch size %d; going on with %d", size, self._max_forward)
        return self._forward_parts(batch, size, self._max_forward)

    def _forward_parts(self, batch, size: int, step: int) -> dict[str, np.ndarray]:
        outs = [self._forward(_slice(batch, start, min(size, start + step))) for start in range(0, size, step)]
        return {name: np.concatenate([o[name] for o in outs]) for name in self.spec.layers}

    # -- reading --------------------------------------------------------------------------
    def vectors(self, layer: str, keys: Sequence[bytes]) -> np.ndarray:
        """Cached vectors of ``layer`` for ``keys`` (all present), in order."""
        return self.stores[layer].get(keys)

    def compact(self) -> None:
        """Merge each layer's cache shards (when no other process uses them) and release the stores."""
        for store in self.stores.values():
            store.compact()
            store.release()
        if self.remote_cache is not None:
            self.remote_cache.push(store.dir for store in self.stores.values())


def _slice(batch, start: int, stop: int):
    if isinstance(batch, dict):
        return {k: v[start:stop] for k, v in batch.items()}
    return batch[start:stop]


def split_options(**options) -> tuple[FeatureOptions, RunOptions, ReadOptions]:
    """Keyword arguments sorted into the three option objects by their field names (declared once, there)."""
    groups = [FeatureOptions, RunOptions, ReadOptions]
    names = [{f.name for f in fields(cls)} for cls in groups]
    unknown = sorted(set(options) - set().union(*names))
    if unknown:
        allowed = ", ".join(sorted(set().union(*names)))
        raise TypeError(f"unexpected option(s) {', '.join(unknown)}; the options are {allowed}")
    return tuple(cls(**{k: v for k, v in options.items() if k in n}) for cls, n in zip(groups, names))


def model_for(inputs: str | os.PathLike | Inputs, model: str | None) -> tuple[str, str]:
    """The model to run on ``inputs`` and the modality of their items, decided together, once.

    A named model decides the modality (an image-text model reads what the input holds); with none
    named, what the input holds decides both (``default_model`` of its modality).
    """
    if model and not get_config(model).image_text:
        return model, get_config(model).modality
    modality = inputs.modality if isinstance(inputs, Inputs) else guess_modality(inputs)
    return model or default_model(modality), modality


def featurize(
    inputs: str | os.PathLike | Inputs,
    model: str | None = None,
    layers: Sequence[str | int] | str | int | None = None,
    *,
    output: str | os.PathLike | None = None,
    store_dtype: str = "float32",
    on_error: str = "skip",
    force: bool = False,
    augment: int = 0,
    **options,
) -> FeaturizeReport:
    """Featurize ``inputs`` (a path or ``Inputs``) through the cache, writing a feature file to ``output``.

    ``options`` are the fields of ``FeatureOptions`` (``pooling``, ``weights``, ``precision``,
    ``runtime``), ``RunOptions`` (``device``, ``batch_size``, ``workers``, ``cache_dir``,
    ``progress``) and ``ReadOptions`` (``column``, ``label_column``, ``extensions``). Without a model,
    the registry's default for what the input holds is used. Only items missing from the cache are
    computed. With ``on_error='skip'`` unreadable items are recorded with their reason; with
    ``'fail'`` the first one stops the run with an ``ItemError``. ``augment=N`` also stores N
    augmented views of each image (``featurizer._augment``), cached under their own specs.
    """
    features, run, read = split_options(model=model, layers=layers, **options)
    return featurize_options(
        inputs,
        features,
        run,
        read,
        output=output,
        store_dtype=store_dtype,
        on_error=on_error,
        force=force,
        augment=augment,
    )


def featurize_options(
    inputs: str | os.PathLike | Inputs,
    features: FeatureOptions,
    run: RunOptions | None = None,
    read: ReadOptions | None = None,
    *,
    output: str | os.PathLike | None = None,
    default_output: bool = False,
    store_dtype: str = "float32",
    on_error: str = "skip",
    force: bool = False,
    augment: int = 0,
) -> FeaturizeReport:
    """``featurize`` with its options as objects (what ``xfer featurize`` calls).

    With ``default_output`` and no ``output``, the feature file goes into the cache folder under a
    name that carries the input, the model and a digest of both (``default_feature_name``).
    """
    started = time.perf_counter()
    model, modality = model_for(inputs, features.model)
    features = with_default_layers(replace(features, model=model), modality)
    extractor = Extractor.from_options(features, run, modality)
    inputs = inputs_for(extractor, inputs, read)
    if output is None and default_output:
        output = extractor.cache_dir / default_feature_name(inputs.origin, extractor.spec)
    return featurize_with(
        extractor,
        inputs,
        output,
        store_dtype=store_dtype,
        on_error=on_error,
        force=force,
        started=started,
        augment=augment,
    )


def refuse_model_as_inputs(inputs: str | os.PathLike) -> None:
    """A saved model (a skops zip) given where inputs go is said to be one, not read as lines of text."""
    path = str(inputs)
    if is_url(path) or not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    if zipped or path.lower().endswith(".skops"):
        raise InputError(f"{path} is a saved model, not inputs: give images, texts, a table or a feature file")


def inputs_for(extractor: Extractor, inputs: str | os.PathLike | Inputs, read: ReadOptions | None = None) -> Inputs:
    """``inputs`` read as items of the extractor's modality (a path), or checked against it (``Inputs``)."""
    read = read or ReadOptions()
    if not isinstance(inputs, Inputs):
        refuse_model_as_inputs(inputs)
        held = guess_modality(inputs)
        if held != extractor.modality and read.column is None and read.extensions is None:
            other = "an image" if held == IMAGE else "a text"
            raise InputError(
                f"{extractor.spec.model} is {'an image' if extractor.modality == IMAGE else 'a text'} model, but "
                f"{inputs} holds {held}s: use {other} model (-m {default_model(held)}), or name the column to read "
                "with --column"
            )
        return read_inputs(inputs, extractor.modality, read)
    if inputs.modality != extractor.modality:
        raise InputError(f"{extractor.spec.model} is a {extractor.modality} model but the inputs are {inputs.modality}")
    return inputs


def featurize_with(
    extractor: Extractor,
    inputs: Inputs,
    output=None,
    *,
    store_dtype: str = "float32",
    on_error: str = "skip",
    force: bool = False,
    attrs: dict | None = None,
    started: float | None = None,
    augment: int = 0,
) -> FeaturizeReport:
    """``featurize`` with an extractor that already exists (its model loaded once for many calls).

    An existing ``output`` made from other inputs, or that is no feature file, is refused unless ``force``.
    """
    started = time.perf_counter() if started is None else started
    if on_error not in ON_ERROR:
        raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    if augment and extractor.modality != IMAGE:
        raise InputError("--augment makes views of images; texts have none")
    if augment < 0:
        raise InputError(f"augment must be 0 or more views, not {augment}")
    remote = is_url(output)  # object storage: written locally, then uploaded whole (no lock there to take)
    lock = lock_output(Path(output)) if output is not None and not remote else None
    guard_stack = ExitStack()
    try:
        guard = guard_stack.enter_context(guarding(inputs.origin))
        guard.add_sources(inputs.sources if inputs.from_files else [])
        weights = extractor.spec.weights  # a local checkpoint or model folder is an input too
        if weights and not is_url(weights) and os.path.exists(weights):
            guard.add(weights)
        if remote:
            check_output(str(output), inputs.origin, force)
            with atomic_output(str(output)) as local:
                report = _featurize(extractor, inputs, local, store_dtype, on_error, attrs, started, augment)
            report.output = str(output)
            return report
        if output is not None:
            check_output(Path(output), inputs.origin, force)
            claim(errors_csv_path(Path(output)), kind="table")  # the list of failed items beside it, before the work
        return _featurize(extractor, inputs, output, store_dtype, on_error, attrs, started, augment)
    finally:
        guard_stack.close()
        extractor.compact()
        if lock is not None:
            release_output(lock)


def compute_items(
    extractor: Extractor, inputs: Inputs, on_error: str = "skip"
) -> tuple[list[bytes | None], list[tuple[str, str]], list[int], int]:
    """Key every item and compute those the cache lacks: (keys, errors in input order, positions of
    the items that have vectors, number computed). What both engines of embed and featurize do."""
    keys, errors = extractor.keys(inputs)
    if errors and on_error == "fail":
        raise ItemError(f"cannot featurize {errors[0][0]}: {errors[0][1]}")
    computed, item_errors = extractor.ensure(inputs, keys, on_error)
    order = {item: pos for pos, item in enumerate(inputs.ids)}
    errors = sorted(errors + item_errors, key=lambda error: order.get(error[0], -1))
    failed = {i for i, _ in errors}
    good = [pos for pos, (k, i) in enumerate(zip(keys, inputs.ids)) if k is not None and i not in failed]
    return keys, errors, good, computed


def _featurize(
    extractor: Extractor, inputs: Inputs, output, store_dtype: str, on_error: str, attrs, started: float, augment: int
):
    views = extractor.views(augment)
    try:
        with keeping_reads():  # objects in storage read to key them are decoded from memory
            keys, errors, good, computed = compute_items(extractor, inputs, on_error)
            kept = set(good)
            good_keys = [k if pos in kept else None for pos, k in enumerate(keys)]
            for view in views:  # the same images, cropped and flipped: they decoded once, so they decode again
                view.ensure(inputs, good_keys, "fail")
        report = FeaturizeReport(
            extractor.spec, len(inputs), computed, len(good) - computed, errors, inputs.skipped, extractor.truncated
        )
        report.replaced, report.unlabelled, report.notes = inputs.replaced, inputs.unlabelled, inputs.notes
        report.views = augment
        if output is not None:
            write = (extractor, inputs, keys, good, output, errors + inputs.skipped, store_dtype, attrs, views)
            try:
                report.output = write_features(*write)
            except CacheDamaged:  # found damaged while reading: moved aside; compute its items again, once
                extractor.ensure(inputs, keys, on_error)
                for view in views:
                    view.ensure(inputs, good_keys, "fail")
                report.output = write_features(*write)
    finally:
        for view in views:
            view.compact()  # after writing: the views' shards stay put while the file is read from them
    report.seconds = time.perf_counter() - started
    return report


def write_features(
    extractor: Extractor,
    inputs: Inputs,
    keys,
    good: list[int],
    output,
    errors,
    store_dtype: str = "float32",
    attrs: dict | None = None,
    views: Sequence[Extractor] = (),
) -> Path:
    """Write the feature file of items ``good`` from the cache, in input order, atomically; with
    ``views``, their vectors too (``/views/<layer>``, one row of views per item)."""

    def rows_of(source: Extractor) -> Callable[[str, list[int]], np.ndarray]:
        return lambda layer, positions: source.vectors(layer, [keys[p] for p in positions])

    dims = extractor.layer_dims()
    return write_feature_file(
        output, extractor.spec, dims, inputs, good, rows_of(extractor), errors, store_dtype, attrs,
        [rows_of(view) for view in views],
    )  # fmt: skip


def write_feature_file(
    output: str | os.PathLike,
    spec: FeatureSpec,
    dims: Sequence[int],
    inputs: Inputs,
    good: list[int],
    rows: Callable[[str, list[int]], np.ndarray],
    errors: Sequence[tuple[str, str]],
    store_dtype: str = "float32",
    attrs: dict | None = None,
    views: Sequence[Callable[[str, list[int]], np.ndarray]] = (),
) -> Path:
    """The feature file of ``inputs``' items at positions ``good``, in that order, and the errors of
    the rest; ``rows(layer, positions)`` gives their vectors (from the cache, or from Ray's actors)."""
    ids = [storable_text(inputs.ids[p]) for p in good]
    labels = [storable_text(inputs.labels[p]) for p in good] if inputs.labels is not None else None
    columns = {storable_text(name): [storable_text(cells[p]) for p in good] for name, cells in inputs.columns.items()}
    sources = None
    if all(isinstance(s, str) for s in inputs.sources):  # HDF5 strings: UTF-8, and no NUL characters
        sources = [storable_text(inputs.sources[p]) for p in good]
    width = (1 + len(views)) * sum(dims) * np.dtype(store_dtype).itemsize
    size = len(good) * width + sum(len(s) for s in sources or [])
    with FeatureFileWriter(
        output,
        spec,
        ids,
        labels,
        sources=sources,
        columns=columns,
        dtype=store_dtype,
        origin=inputs.origin,
        attrs=attrs,
        size_hint=size,
    ) as writer:
        for layer, dim in zip(spec.layers, dims):
            writer.write_layer(layer, 0, np.zeros((0, dim), np.float32))  # the layer exists even with no items
            for start in range(0, len(good), WRITE_ROWS):
                chunk = good[start : start + WRITE_ROWS]
                writer.write_layer(layer, start, rows(layer, chunk))
                for v, view in enumerate(views):
                    writer.write_view(layer, v, len(views), start, view(layer, chunk))
        errors = [(storable_text(i), storable_text(reason)) for i, reason in errors]
        writer.write_errors(errors)
    write_errors_csv(Path(output), errors)
    return Path(output)


def default_feature_name(origin: str, spec: FeatureSpec) -> str:
    """A feature file name that carries what makes it differ: the input's name, the model, and a short
    digest of the input's absolute path and the spec (two folders both named ``train`` do not collide)."""
    digest = hashlib.sha256(f"{origin}\0{spec.to_json()}".encode("utf-8", errors="surrogatepass")).hexdigest()[:8]
    stem = Path(origin).stem or Path(origin).name or "input"
    return f"{stem}-{spec.model.replace('/', '_')}-{digest}.h5"


def errors_csv_path(output: Path) -> Path:
    return output.with_name(output.stem + ".errors.csv")


def write_errors_csv(output: Path, errors: Sequence[tuple[str, str]]) -> None:
    """``OUT.errors.csv``: id and reason of every item not featurized (removed when there are none)."""
    path = errors_csv_path(output)
    if not errors:
        if path.is_file() and written_by_xfer(path):  # an earlier run's list, out of date now; never a user's file
            path.unlink()
        return
    write_csv(path, ("id", "reason"), errors)
