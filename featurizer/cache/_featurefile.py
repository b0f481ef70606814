"""Feature files: one HDF5 file of ids, labels, one dataset per layer, and the full feature spec.

Layout::

    /ids                 (n,) str      stable item ids (relative paths or row numbers)
    /labels              (n,) str      when the input had labels
    /sources             (n,) str      image paths or the texts themselves, when given as such
    /features/<layer>    (n, d) float  one chunked dataset per layer (float32, or float16 on request)
    /errors/ids, /errors/reasons       items that could not be featurized, with the reason
    attrs: format, spec (JSON), versions (JSON), created; a merged file: shard_stamps (JSON)

A merged file (``xfer merge``) reads its vectors from the shard files beside it (HDF5 virtual
datasets). It records each shard's relative name, size, modification time and SHA-256 when it is
written, and every open checks them first: a shard whose size and time are as recorded is taken
as it was (one ``stat``), any other is checksummed, and a missing or changed one is refused by
name. A shard rewritten to the same size with its time set back cannot be seen without reading
it: ``FeatureFile(path, checksums=True)`` (and ``xfer merge`` again) checksums every shard.

A file is written under a temporary name and renamed over the target when complete, so a
reader never sees a half-written file and an interrupted run leaves the old file intact.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np

from featurizer.base import FeaturizerError, InputError
from featurizer.cache._quantize import dequantize, info_json, quantize, read_info
from featurizer.spec import FeatureSpec
from featurizer.storage import (
    H5Output,
    as_os_error,
    claim,
    declare_inputs,
    file_sha256,
    is_url,
    local_path,
    location,
    open_source,
)

FORMAT = "featurizer-features/1"
CHUNK_ROWS = 1024
_STR = h5py.string_dtype("utf-8")
STAMPS = "shard_stamps"  # attribute of a merged file: [{file, size, mtime_ns, sha256}] of its shards
_VERSIONED = ("featurizer", "torch", "torchvision", "timm", "transformers", "h5py", "numpy", "scikit-learn")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a vector (read from metadata, no imports)."""
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


STORE_DTYPES = ("float32", "float16")


class FeatureFileWriter:
    """Writes a feature file to a temporary name; ``close()`` renames it into place.

    The one writer of the layout: ``featurize`` fills layers with ``write_layer``, ``merge`` links
    them to shard files with ``link_layer``. Use as a context manager: on an exception the
    temporary file is removed and any existing file at ``path`` is left as it was.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        spec: FeatureSpec,
        ids: Sequence[str],
        labels: Sequence[str] | None = None,
        *,
        sources: Sequence[str] | None = None,
        columns: dict[str, Sequence[str]] | None = None,
        dtype: str = "float32",
        origin: str = "",
        attrs: dict | None = None,
        size_hint: int = 0,
    ):
        if dtype not in STORE_DTYPES:
            raise InputError(f"store dtype must be one of {', '.join(STORE_DTYPES)}, not {dtype!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._output = H5Output(self.path, size_hint)  # in memory, or checked for room: a full disk is an OSError
        self._file = self._output.file
        self._dtype = np.dtype(dtype)
        self.n = len(ids)
        f = self._file
        f.attrs.update(
            format=FORMAT,
            spec=spec.to_json(),
            versions=json.dumps(library_versions()),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            float16=dtype == "float16",
            origin=storable_text(origin),
            **(attrs or {}),
        )
        f.create_dataset("ids", data=list(ids), dtype=_STR)
        if labels is not None:
            f.create_dataset("labels", data=list(labels), dtype=_STR)
            f.attrs["classes"] = json.dumps(sorted(set(labels)))
        if sources is not None:
            f.create_dataset("sources", data=list(sources), dtype=_STR)
        if columns:  # the input table's other columns: cells as text, one row per column
            cells = np.array([list(values) for values in columns.values()], dtype=object)
            cells = cells.reshape(len(columns), len(ids))
            f.create_dataset("columns", data=cells, dtype=_STR)
            f.attrs["columns"] = json.dumps(list(columns))
        f.create_group("features")

    def write_layer(self, layer: str, start: int, vectors: np.ndarray) -> None:
        """Write rows ``start:start+len(vectors)`` of a layer's dataset (created on first write)."""
        group = self._file["features"]
        if layer not in group:
            chunks = (min(self.n, CHUNK_ROWS), vectors.shape[1]) if self.n else None  # no items: an empty matrix
            group.create_dataset(layer, shape=(self.n, vectors.shape[1]), dtype=self._dtype, chunks=chunks)
        group[layer][start : start + len(vectors)] = vectors.astype(self._dtype, copy=False)

    def write_quantized(self, layer: str, vectors: np.ndarray, method: str, calibration: dict | None = None) -> None:
        """All of a layer's vectors, quantised (``int8`` or ``binary``; calibrated on them, or as
        ``calibration`` says), with what reads them back as floats."""
        codes, info = quantize(vectors, method, calibration)
        chunks = (min(self.n, CHUNK_ROWS), codes.shape[1]) if self.n and codes.shape[1] else None
        dataset = self._file["features"].create_dataset(layer, data=codes, chunks=chunks)
        dataset.attrs["quantization"] = info_json(info)

    def write_view(self, layer: str, view: int, views: int, start: int, vectors: np.ndarray) -> None:
        """Rows ``start:`` of augmented view ``view`` (0-based) of a layer: ``/views/<layer>`` is views x n x d."""
        group = self._file.require_group("views")
        if layer not in group:
            chunks = (1, min(self.n, CHUNK_ROWS), vectors.shape[1]) if self.n else None
            shape = (views, self.n, vectors.shape[1])
            group.create_dataset(layer, shape=shape, dtype=self._dtype, chunks=chunks)
            self._file.attrs["views"] = views
        group[layer][view, start : start + len(vectors)] = vectors.astype(self._dtype, copy=False)

    def link_layer(self, layer: str, parts: Sequence[tuple[Path, int]], dim: int) -> None:
        """A layer whose rows live in other feature files: (file, rows) in order, as an HDF5 virtual dataset.

        Source paths are stored relative to this file, so the folder can move as a whole; reading
        checks that every source is there (``FeatureFile``), since HDF5 would read a missing one as zeros.
        """
        layout = h5py.VirtualLayout(shape=(self.n, dim), dtype=self._dtype)
        start = 0
        for path, rows in parts:
            if rows:
                name = self._relative(path)
                layout[start : start + rows] = h5py.VirtualSource(name, f"features/{layer}", shape=(rows, dim))
            start += rows
        self._file["features"].create_virtual_dataset(layer, layout)

    def stamp_sources(self, sources: Sequence[tuple[Path, os.stat_result, str]]) -> None:
        """Record what the linked files were when they were checked: (file, its ``stat`` taken
        before its checksum, SHA-256). ``FeatureFile`` compares them on every open."""
        stamps = [
            {"file": self._relative(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            for path, st, digest in sources
        ]
        self._file.attrs[STAMPS] = json.dumps(stamps)

    def _relative(self, path: Path) -> str:
        """A linked file's name as the virtual datasets store it: relative to this file's folder."""
        return os.path.relpath(path, self.path.parent)

    def write_errors(self, errors: Sequence[tuple[str, str]]) -> None:
        if errors:
            group = self._file.create_group("errors")
            group.create_dataset("ids", data=[i for i, _ in errors], dtype=_STR)
            group.create_dataset("reasons", data=[r for _, r in errors], dtype=_STR)

    def close(self) -> Path:
        return self._output.commit()

    def abort(self) -> None:
        self._output.abort()

    def __enter__(self) -> FeatureFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self.abort()
        converted = as_os_error(exc, self.path)
        if converted is not exc:
            raise converted from None


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_feature_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file (by its signature, not its name); ``FeatureFile`` checks the rest."""
    try:
        with open_source(path) as f:
            return f.read(8) == HDF5_SIGNATURE
    except (OSError, FeaturizerError):
        return False


def storable_text(text: str) -> str:
    """Text as HDF5 can store it: NUL becomes U+FFFD, bytes of a file name that are not UTF-8 are escaped."""
    text = text.replace("\x00", "\ufffd")
    try:
        return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (from a JSON escape, say)
        return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def check_output(path: Path | str, origin: str, force: bool = False) -> None:
    """Refuse an output that is an input or that xfer did not write, ``force`` or not, and one made
    from other inputs unless ``force`` (``path`` local or a URL; the rules: featurizer._guard)."""

    claim(path, kind="features")
    if force or not location(path).exists():
        return
    try:  # its attributes only (not FeatureFile): a merged file whose shards are gone can still be replaced
        with open_source(path) if is_url(path) else nullcontext(path) as where, h5py.File(where, "r") as f:
            made_from = f.attrs.get("origin", "") if f.attrs.get("format") == FORMAT else None
    except (OSError, FeaturizerError):
        made_from = None
    if made_from is None:
        raise InputError(
            f"output {path} exists and is not a feature file; choose another -o (or --force to replace it)"
        )
    origin = storable_text(origin)
    if made_from and origin and made_from != origin:
        raise InputError(
            f"output {path} holds features of {made_from}, not {origin}; choose another -o (or --force to replace it)"
        )


class FeatureFile:
    """Read a feature file: ``ids``, ``labels``, ``spec``, ``layers`` and ``read(layer)``.

    A merged file's shards are checked on open against the stamps recorded at merge (size and
    modification time; the SHA-256 when those differ, or for every shard with ``checksums``).
    """

    def __init__(self, path: str | os.PathLike, *, checksums: bool = False):
        self._handle = None
        self._checksums = checksums
        if is_url(path):  # in object storage: HDF5 read through a file object, in the backend's blocks
            self._open_url(str(path))
            return
        self.path = Path(local_path(path))
        if self.path.is_dir() or (self.path.is_file() and not is_feature_file(self.path)):
            raise InputError(
                f"{self.path} is not a feature file; if it holds inputs (images, texts, a CSV), "
                f"run 'xfer featurize {self.path}' first"
            )
        try:
            self._file = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as err:
            raise InputError(f"cannot open feature file {self.path}: {err}") from None
        if self._file.attrs.get("format") != FORMAT:
            self._file.close()
            raise InputError(f"{self.path} is not a featurizer feature file")
        try:
            self._check_virtual_sources()
        except InputError:
            self._file.close()
            raise

    def _open_url(self, url: str) -> None:
        self.path = url
        self._handle = open_source(url)
        if self._handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            self._handle.close()
            raise InputError(f"{url} is not a feature file")
        self._handle.seek(0)
        self._file = h5py.File(self._handle, "r")
        virtual = any(d.is_virtual for d in self._file["features"].values()) if "features" in self._file else False
        if self._file.attrs.get("format") != FORMAT or virtual:
            self.close()
            raise InputError(
                f"{url} is not a featurizer feature file"
                if not virtual
                else f"{url} reads its vectors from shard files beside it, which object storage cannot serve; "
                "merge the shards with a target in object storage (vectors copied)"
            )

    def _check_virtual_sources(self) -> None:
        """Refuse a merged file whose shard files are missing or are not the files it was merged
        from (HDF5 would read zeros for a missing one, and any bytes of a changed one)."""
        extents: dict[str, list[tuple[str, tuple[int, int]]]] = {}  # shard name -> (dataset, rows x width read)
        for dset in self._file["features"].values():
            if not dset.is_virtual:
                continue
            for source in dset.virtual_sources():
                (first, _), (last, width) = source.vspace.get_select_bounds()
                extents.setdefault(source.file_name, []).append((source.dset_name, (last - first + 1, width + 1)))
        if not extents:
            return
        # The shards, their checksums and the manifest are inputs of whatever reads this file: no
        # output of the running command may replace them, nor a folder that holds them.
        shards = [self._shard(name) for name in extents]
        folders = {os.path.dirname(s) for s in shards}
        manifests = [os.path.join(d, m) for d in folders for m in ("_manifest.json", "manifest.json")]
        declare_inputs(*shards, *(s + ".sha256" for s in shards), *(m for m in manifests if os.path.exists(m)))
        stamps = self._file.attrs.get(STAMPS)
        if stamps is None:
            bad = {name: why for name in extents if (why := self._unstamped_problem(name, extents[name]))}
        else:
            recorded = {stamp["file"]: stamp for stamp in json.loads(stamps)}
            bad = {name: why for name in extents if (why := self._stamp_problem(name, recorded.get(name)))}
        if bad:
            shown = "; ".join(f"{self._shard(name)} {why}" for name, why in list(bad.items())[:5])
            more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise InputError(
                f"{self.path} reads its vectors from shard files that are not those it was merged from: {shown}{more}; "
                "restore the shards, or re-run 'xfer embed' and 'xfer merge'"
            )

    def _shard(self, name: str) -> str:
        return os.path.normpath(self.path.parent / name)

    def _stamp_problem(self, name: str, stamp: dict | None) -> str | None:
        """Why a shard is not the one recorded at merge, None when it is: its size and time as
        recorded (one stat), else its SHA-256."""
        if stamp is None:
            return "is not among the shards recorded at merge"
        path = Path(self._shard(name))
        try:
            st = os.stat(path)
        except OSError:
            return "is missing"
        if not self._checksums and (st.st_size, st.st_mtime_ns) == (stamp.get("size"), stamp.get("mtime_ns")):
            return None
        try:
            return None if file_sha256(path) == stamp.get("sha256") else "changed since the merge (another SHA-256)"
        except OSError as err:
            return f"cannot be read ({err.strerror or err})"

    def _unstamped_problem(self, name: str, extents: list[tuple[str, tuple[int, int]]]) -> str | None:
        """A file merged before stamps were recorded: each shard checksummed against the manifest
        of its folder (or its .sha256 sidecar), which is what merge checked; none: refused."""
        path = Path(self._shard(name))
        if not path.is_file():
            return "is missing"
        expected = _recorded_sha256(path)
        if expected is None:
            return "has no checksum to check it against (no manifest.json or .sha256 beside it)"
        try:
            if file_sha256(path) != expected:
                return "does not match its checksum in the manifest"
        except OSError as err:
            return f"cannot be read ({err.strerror or err})"
        if not all(_holds(path, dataset, shape) for dataset, shape in extents):
            return "does not hold the rows the merged file reads"
        return None

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_json(self._file.attrs["spec"])

    @property
    def versions(self) -> dict[str, str]:
        return json.loads(self._file.attrs["versions"])

    @property
    def ids(self) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else s for s in self._file["ids"].asstr()[:]]

    @property
    def labels(self) -> list[str] | None:
        return list(self._file["labels"].asstr()[:]) if "labels" in self._file else None

    @property
    def columns(self) -> dict[str, list[str]]:
        """The input table's other columns (name: cells as text), empty for folders and older files."""
        if "columns" not in self._file:
            return {}
        names = json.loads(self._file.attrs["columns"])
        cells = self._file["columns"].asstr()[:] if len(self) else [[] for _ in names]
        return {name: list(row) for name, row in zip(names, cells)}

    def column(self, name: str) -> list[str]:
        """The cells of one column of the input table; an error naming the columns there are."""
        columns = self.columns
        if name not in columns:
            there = ", ".join(map(repr, columns)) if columns else "none (folders keep only their labels)"
            raise InputError(f"{self.path} has no column {name!r}; its columns: {there}")
        return columns[name]

    @property
    def sources(self) -> list[str] | None:
        """Image paths or texts of the items, when the file records them."""
        return list(self._file["sources"].asstr()[:]) if "sources" in self._file else None

    @property
    def layers(self) -> list[str]:
        """Layer names in the order of the spec."""
        present = set(self._file["features"])
        return [name for name in self.spec.layers if name in present]

    @property
    def errors(self) -> list[tuple[str, str]]:
        if "errors" not in self._file:
            return []
        g = self._file["errors"]
        return list(zip(g["ids"].asstr()[:], g["reasons"].asstr()[:]))

    @property
    def attrs(self) -> dict:
        return dict(self._file.attrs)

    def __len__(self) -> int:
        return len(self._file["ids"])

    def quantization(self, layer: str) -> dict | None:
        """How ``layer`` was quantised (method, dim, calibration ranges), or None for float vectors."""
        text = self._file["features"][layer].attrs.get("quantization")
        if text is None:
            return None
        try:
            return read_info(text)
        except (ValueError, InputError) as err:
            raise InputError(f"{self.path}: layer {layer!r}: {err}") from None

    def shape(self, layer: str) -> tuple[int, ...]:
        """(items, dim) of ``layer``'s vectors (of the vectors a quantised layer's codes stand for)."""
        shape = tuple(self._file["features"][layer].shape)
        info = self.quantization(layer)
        return shape if info is None else (shape[0], info["dim"])

    def dtype(self, layer: str) -> np.dtype:
        return self._file["features"][layer].dtype

    def _stored_as(self, layer: str) -> str:
        info = self.quantization(layer)
        return str(self.dtype(layer)) if info is None else info["method"]

    @property
    def views(self) -> int:
        """Augmented views stored per item (``featurize --augment``), 0 if none."""
        return int(self._file.attrs.get("views", 0))

    def read_views(self, layer: str) -> np.ndarray:
        """The augmented views of ``layer``: views x items x dim, float32 (views x items x 0 when there are none)."""
        if not self.views:
            return np.zeros((0, len(self), self.shape(layer)[1]), np.float32)
        return self._file["views"][layer][:].astype(np.float32, copy=False)

    def read(self, layer: str | None = None) -> np.ndarray:
        """All vectors of ``layer`` (default: the first) as float32."""
        layer = layer or self.layers[0]
        if layer not in self._file["features"]:
            raise InputError(f"{self.path} has no layer {layer!r}; it has {', '.join(self.layers)}")
        codes, info = self._file["features"][layer][:], self.quantization(layer)
        return codes.astype(np.float32, copy=False) if info is None else dequantize(codes, info)

    def describe(self) -> dict:
        """What ``xfer info`` shows: items, layers, labels, errors, the spec, versions, input and date."""
        labels = self.labels
        return {
            "file": str(self.path),
            "items": len(self),
            "origin": self.attrs.get("origin", ""),
            "layers": {name: {"shape": list(self.shape(name)), "dtype": self._stored_as(name)} for name in self.layers},
            "labels": None if labels is None else {c: labels.count(c) for c in sorted(set(labels))},
            "columns": list(self.columns),
            "errors": self.errors,
            "views": self.views,
            "spec": json.loads(self.spec.to_json()),
            "versions": self.versions,
            "created": self.attrs.get("created"),
        }

    def close(self) -> None:
        self._file.close()
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> FeatureFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _recorded_sha256(shard: Path) -> str | None:
    """A shard's SHA-256 as its folder records it: the manifest's entry, else the .sha256 sidecar."""
    try:
        entries = json.loads((shard.parent / "manifest.json").read_text())["shards"]
        found = [e.get("sha256") for e in entries if isinstance(e, dict) and e.get("file") == shard.name]
        if found and isinstance(found[0], str):
            return found[0]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return shard.with_name(f"{shard.name}.sha256").read_text().strip() or None
    except OSError:
        return None


def _holds(path: Path, dataset: str, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a readable HDF5 file with ``dataset`` of at least ``shape``."""
    try:
        with h5py.File(path, "r") as f:
            found = f[dataset].shape if dataset in f else None
    except OSError:
        return False
    return found is not None and len(found) == len(shape) and all(a >= b for a, b in zip(found, shape))
