"""Featurizing: inputs -> content keys -> cache lookup -> batches -> backbone -> pooled layers -> cache.

``Extractor`` holds one feature spec and the caches of its layers; it loads the network only
when something is missing from the cache, so a fully cached run never imports a model zoo.
``featurize`` is the whole job behind ``xfer featurize``: it also writes the feature file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurizer._errors import FeaturizerError, InputError, ItemError
from featurizer._featurefile import FeatureFileWriter
from featurizer._inputs import Inputs, read_inputs
from featurizer._keys import FileKeyMemo, array_key, text_key
from featurizer._memory import keep_freed_memory
from featurizer._registry import IMAGE, BackboneConfig, get_config
from featurizer._spec import FeatureSpec, check_precision, resolve_layers, resolve_pooling
from featurizer._store import EmbeddingStore, default_cache_dir, lock_output
from featurizer._weights import WeightsRef, resolve_weights

log = logging.getLogger(__name__)

DEFAULT_IMAGE_MODEL = "efficientnet_lite0"
DEFAULT_TEXT_MODEL = "minilm"
ON_ERROR = ("skip", "fail")
WRITE_ROWS = 4096
TEXT_CHUNK = 8192  # texts tokenized and length-sorted together
# Measured on 2 cores (EfficientNet-Lite0, 224 px), with glibc's default thresholds: PyTorch ran
# batches of 32 1.5-1.9x faster than 64 (fp32 69 vs 36 img/s; bf16 167 vs 110). With freed memory
# kept (_memory.py) they are level (107-117 img/s fp32); 32 still holds half the memory in flight.
CPU_IMAGE_BATCH = 32
CPU_TEXT_BATCH = 64
GPU_BATCH = 256


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
    output: Path | None = None

    @property
    def n_ok(self) -> int:
        return self.n_items - len(self.errors)

    def summary(self) -> str:
        rate = f" ({self.n_computed / self.seconds:.1f} items/s)" if self.n_computed and self.seconds else ""
        lines = [
            f"{self.n_ok} of {self.n_items} items featurized with {self.spec.model} "
            f"[{', '.join(self.spec.layers)}]: {self.n_computed} computed, {self.n_cached} from cache, "
            f"{len(self.errors)} failed, in {self.seconds:.1f} s{rate}"
        ]
        for what, items in (("failed", self.errors), ("skipped", self.skipped)):
            if items:
                shown = "; ".join(f"{i}: {r}" for i, r in items[:5])
                lines.append(f"{len(items)} {what}: {shown}{' ...' if len(items) > 5 else ''}")
        if self.truncated:
            lines.append(f"{self.truncated} texts were longer than the model's maximum length and were truncated")
        if self.output:
            lines.append(f"wrote {self.output}")
            if self.errors or self.skipped:
                lines.append(f"wrote {errors_csv_path(self.output)}")
        return "\n".join(lines)


class Extractor:
    """Computes and caches the vectors of one feature spec.

    Parameters mirror ``featurize``. The backbone is built on first need, on ``device``.
    """

    def __init__(
        self,
        model: str = DEFAULT_IMAGE_MODEL,
        layers: Sequence[str | int] | None = None,
        pooling: str | None = None,
        *,
        weights: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str = "auto",
        precision: str = "fp32",
        runtime: str = "torch",
        batch_size: int | None = None,
        num_workers: int | None = None,
        progress: bool = True,
    ):
        from featurizer._onnx import check_runtime

        self.config: BackboneConfig = get_config(model)
        self.runtime = check_runtime(runtime, self.config.modality, precision, device)
        self.weights: WeightsRef = resolve_weights(self.config, weights)
        if self.runtime == "onnx" and self.modality != IMAGE and self.weights.kind != "folder":
            raise FeaturizerError(
                f"runtime 'onnx' exports a local model folder; {self.weights.location} is not one "
                "(use a built-in text model, hf/PATH, or --runtime torch)"
            )
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.device_name, self.precision = device, check_precision(precision)
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self._backbone = None
        self.device = None
        self.forward_calls = 0
        self.truncated = 0  # texts longer than the model's maximum length in the last run
        if not self.config.layers or (self.config.preprocessing is None and self.config.modality == IMAGE):
            self._load()  # zoo models: layers and preprocessing come from the built model
        layer_info = self.config.layers or self._backbone.layers
        names = resolve_layers(layer_info, layers, self.config.default_layer or "-1")
        self.spec = FeatureSpec(
            model=self.config.name,
            modality=self.config.modality,
            weights=self.weights.location,
            weights_sha256=self.weights.sha256,
            preprocessing=self._preprocessing(),
            precision=self.precision,
            layers=tuple(names),
            pooling=resolve_pooling(self.config.modality, names, pooling),
            runtime=self.runtime,
        )
        self.stores = {name: EmbeddingStore(self.cache_dir, self.spec.layer_spec(name)) for name in names}

    @property
    def modality(self) -> str:
        return self.config.modality

    def _preprocessing(self) -> dict:
        if self.modality == IMAGE:
            prep = self.config.preprocessing or self._load().preprocessing
            return {**prep, "jpeg_draft": True}  # decoding detail that can change pixels: part of the spec
        if self.config.preprocessing is not None:
            return self.config.preprocessing
        if self.weights.kind == "pretrained":
            return self._load().preprocessing
        from featurizer._preprocess import text_preprocessing

        return text_preprocessing(self.weights.location)

    def _resolve_device(self):
        if self.device is None:
            from featurizer._runtime import resolve_device

            self.device = resolve_device(self.device_name, self.precision)
        return self.device

    def _on_gpu(self) -> bool:
        """Whether batches run on a CUDA GPU (the ONNX runtime is CPU-only and never imports torch to ask)."""
        return self.runtime == "torch" and self._resolve_device().type == "cuda"

    def _default_batch_size(self) -> int:
        if self._on_gpu():
            return GPU_BATCH
        return CPU_IMAGE_BATCH if self.modality == IMAGE else CPU_TEXT_BATCH

    def _load(self):
        if self._backbone is None:
            if self.runtime == "onnx":  # the CPU, and no torch import: start-up is most of a small run
                from featurizer._onnx import load_onnx

                self._backbone = load_onnx(self.config, self.weights, self.precision, self.cache_dir)
                return self._backbone
            from featurizer._backbones import load_backbone

            self._backbone = load_backbone(self.config, self.weights)
            self._backbone.to(self._resolve_device(), self.precision)
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
        """Compute and cache every item whose vectors are missing; (number computed, item errors)."""
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
        errors = run(inputs, keys, todo, on_error)
        return len(todo) - len(errors), errors

    def _progress(self, total: int):
        from tqdm.auto import tqdm

        unit = " img" if self.modality == IMAGE else " text"
        return tqdm(total=total, unit=unit, desc=self.spec.model, disable=not self.progress, dynamic_ncols=True)

    def _store_batch(self, keys: Sequence[bytes], vectors: dict[str, np.ndarray]) -> None:
        for name, store in self.stores.items():
            fresh = np.flatnonzero(~np.asarray(store.has(keys), dtype=bool))
            if len(fresh):
                store.add([keys[i] for i in fresh], vectors[name][fresh])

    def _run_images(self, inputs: Inputs, keys, todo: list[int], on_error: str) -> list[tuple[str, str]]:
        from featurizer._decode import DecodedBatches, default_workers
        from featurizer._preprocess import ImageTransform

        batch_size = self.batch_size or self._default_batch_size()
        workers = self.num_workers if self.num_workers is not None else default_workers()
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
                        item_id = inputs.ids[todo[pos]]
                        if on_error == "fail":
                            raise ItemError(f"cannot featurize {item_id}: {reason}")
                        errors.append((item_id, reason))
                    if len(positions):
                        self._store_batch([keys[todo[p]] for p in positions], self._forward(pixels))
                    bar.update(len(positions) + len(failures))
        return errors

    def _run_texts(self, inputs: Inputs, keys, todo: list[int], on_error: str) -> list[tuple[str, str]]:
        from featurizer._preprocess import pad_token_batch

        backbone = self._load()
        batch_size = self.batch_size or self._default_batch_size()
        errors = []
        empty = [p for p in todo if not inputs.sources[p].strip()]
        for p in empty:
            if on_error == "fail":
                raise ItemError(f"cannot featurize {inputs.ids[p]}: empty text")
            errors.append((inputs.ids[p], "empty text"))
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
            from featurizer._runtime import is_out_of_memory

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


def _slice(batch, start: int, stop: int):
    if isinstance(batch, dict):
        return {k: v[start:stop] for k, v in batch.items()}
    return batch[start:stop]


def featurize(
    inputs: str | os.PathLike | Inputs,
    model: str | None = None,
    layers: Sequence[str | int] | None = None,
    pooling: str | None = None,
    *,
    output: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "fp32",
    runtime: str = "torch",
    batch_size: int | None = None,
    num_workers: int | None = None,
    float16: bool = False,
    on_error: str = "skip",
    progress: bool = True,
    column: str | None = None,
    label_column: str | None = None,
    extensions: Sequence[str] | None = None,
) -> FeaturizeReport:
    """Featurize ``inputs`` (a path or ``Inputs``) through the cache, writing a feature file to ``output``.

    Only items missing from the cache are computed. With ``on_error='skip'`` unreadable items are
    recorded with their reason; with ``'fail'`` the first one stops the run with an ``ItemError``.
    """
    started = time.perf_counter()
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    extractor = Extractor(
        model or DEFAULT_IMAGE_MODEL,
        layers,
        pooling,
        weights=weights,
        cache_dir=cache_dir,
        device=device,
        precision=precision,
        runtime=runtime,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    inputs = inputs_for(extractor, inputs, column=column, label_column=label_column, extensions=extensions)
    return featurize_with(extractor, inputs, output, float16=float16, on_error=on_error, started=started)


def inputs_for(extractor: Extractor, inputs: str | os.PathLike | Inputs, **read_options) -> Inputs:
    """``inputs`` read as items of the extractor's modality (a path), or checked against it (``Inputs``)."""
    if not isinstance(inputs, Inputs):
        return read_inputs(inputs, extractor.modality, **read_options)
    if inputs.modality != extractor.modality:
        raise InputError(f"{extractor.spec.model} is a {extractor.modality} model but the inputs are {inputs.modality}")
    return inputs


def featurize_with(
    extractor: Extractor,
    inputs: Inputs,
    output=None,
    *,
    float16: bool = False,
    on_error: str = "skip",
    started: float | None = None,
) -> FeaturizeReport:
    """``featurize`` with an extractor that already exists (its model loaded once for many calls)."""
    started = time.perf_counter() if started is None else started
    lock = lock_output(Path(output)) if output is not None else None
    try:
        return _featurize(extractor, inputs, output, float16, on_error, started)
    finally:
        extractor.compact()
        if lock is not None:
            os.close(lock)


def _featurize(extractor: Extractor, inputs: Inputs, output, float16: bool, on_error: str, started: float):
    keys, errors = extractor.keys(inputs)
    if errors and on_error == "fail":
        raise ItemError(f"cannot featurize {errors[0][0]}: {errors[0][1]}")
    computed, item_errors = extractor.ensure(inputs, keys, on_error)
    errors += item_errors
    failed = {i for i, _ in errors}
    good = [pos for pos, (k, i) in enumerate(zip(keys, inputs.ids)) if k is not None and i not in failed]
    report = FeaturizeReport(
        extractor.spec, len(inputs), computed, len(good) - computed, errors, inputs.skipped, extractor.truncated
    )
    if output is not None:
        report.output = write_features(extractor, inputs, keys, good, output, errors + inputs.skipped, float16)
    report.seconds = time.perf_counter() - started
    return report


def write_features(extractor: Extractor, inputs: Inputs, keys, good: list[int], output, errors, float16: bool) -> Path:
    """Write the feature file of items ``good`` from the cache, in input order, atomically."""
    ids = [inputs.ids[p] for p in good]
    labels = [inputs.labels[p] for p in good] if inputs.labels is not None else None
    sources = None
    if all(isinstance(s, str) for s in inputs.sources):  # HDF5 strings cannot hold NUL characters
        sources = [inputs.sources[p].replace("\x00", "\ufffd") for p in good]
    with FeatureFileWriter(output, extractor.spec, ids, labels, sources=sources, float16=float16) as writer:
        for layer in extractor.spec.layers:
            for start in range(0, len(good), WRITE_ROWS):
                chunk = [keys[p] for p in good[start : start + WRITE_ROWS]]
                writer.write_layer(layer, start, extractor.vectors(layer, chunk))
        writer.write_errors(errors)
    write_errors_csv(Path(output), errors)
    return Path(output)


def errors_csv_path(output: Path) -> Path:
    return output.with_name(output.stem + ".errors.csv")


def write_errors_csv(output: Path, errors: Sequence[tuple[str, str]]) -> None:
    """``OUT.errors.csv``: id and reason of every item not featurized (removed when there are none)."""
    import csv

    path = errors_csv_path(output)
    if not errors:
        path.unlink(missing_ok=True)
        return
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("id", "reason"), *errors])
