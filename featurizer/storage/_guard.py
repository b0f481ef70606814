"""The output guard: one rule for every file or folder a command writes for a user.

1. An output never is, contains or lies inside an input. Inputs are declared to the active guard
   (``guarding``) by the command and by the readers as they open things (feature files, models
   and their cards, the sources a table names). Places are compared as resolved real paths and by
   file identity (device and inode), so symbolic links, hard links, ``..`` and the spelling of a
   name on a case-insensitive disk all count; URLs are compared as text, folder by folder.
2. An output that exists is replaced only when xfer wrote it (``written_by_xfer``: recognised by its
   content, or by the marker file a folder output holds), only by the same kind of output
   (``kind_of``: a picture by a picture, never a feature file or a model by a report), and, where
   the command says so, only with ``--force``. A file or folder xfer did not write is never
   replaced, ``--force`` or not. A folder is xfer's only when it holds the marker, or when every
   file in it is one xfer writes: a ``manifest.json`` among a user's photos does not make them xfer's.

``claim`` checks both before any work is done; every writer (``featurizer._atomic``) asks
``refuse_input_write`` again at the moment it writes, so an input declared later (a source found
while reading) is safe too.
"""

from __future__ import annotations

import contextvars
import csv
import io
import json
import os
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from featurizer.base import InputError
from featurizer.storage._parquetio import parquet_metadata
from featurizer.storage._storage import container_of, exists, filesystem, is_url, local_path, open_source

# The file every folder output holds, so a later --force knows xfer wrote that folder.
FOLDER_MARKER = ".featurizer-output"
HTML_GENERATOR = '<meta name="generator" content="featurizer">'
PNG_SOFTWARE = "featurizer"
JSON_FORMAT_PREFIX = "featurizer-"
# The first line of every Markdown model card xfer writes (pipelines.models): how the guard knows it.
CARD_MARKER = "<!-- featurizer model card: written by xfer; `xfer card MODEL` renders it again -->"
HEAD_BYTES = 1 << 16


class OutputError(InputError):
    """An output that would destroy an input, or replace something xfer did not write."""


_ACTIVE: contextvars.ContextVar[Guard | None] = contextvars.ContextVar("featurizer_output_guard", default=None)


def _is_url(path) -> bool:

    return is_url(path)


def _url_text(url) -> str:
    return str(url).rstrip("/")


def _real(path) -> str:

    return os.path.realpath(os.path.abspath(os.fspath(local_path(path))))


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _existing_ancestors(real: str) -> Iterator[tuple[str, tuple[int, int]]]:
    """``real``'s folders from the nearest existing one up to the root, with their identities."""
    here = os.path.dirname(real)
    while True:
        ident = _identity(here)
        if ident is not None:
            yield here, ident
        parent = os.path.dirname(here)
        if parent == here:
            return
        here = parent


class Guard:
    """The inputs of one command, and the check of its outputs against them."""

    def __init__(self) -> None:
        self._files: dict[tuple[int, int], str] = {}  # identity -> name, of every input that exists
        self._dirs: dict[tuple[int, int], str] = {}  # identity -> name, of input folders
        self._above: dict[tuple[int, int], str] = {}  # identity of every folder holding an input -> that input
        self._reals: dict[str, str] = {}  # real path -> name, of inputs (those not there yet too)
        self._urls: dict[str, str] = {}
        self._sources: dict[str, list[str]] = {}  # file name (case-folded) -> absolute paths of named sources
        self._sources_real: list[str] | None = None

    def add(self, *paths) -> None:
        """Declare ``paths`` (files, folders, URLs; None is skipped) as inputs of the command."""
        for path in paths:
            if path is None or path == "":
                continue
            if _is_url(path):
                self._urls.setdefault(_url_text(path), str(path))
                continue
            real = _real(path)
            if real in self._reals:
                continue
            self._reals[real] = str(path)
            ident = _identity(real)
            if ident is not None:
                self._files[ident] = str(path)
                if os.path.isdir(real):
                    self._dirs[ident] = str(path)
            for _, above in _existing_ancestors(real):
                self._above.setdefault(above, str(path))

    def add_sources(self, sources: Iterable) -> None:
        """Declare the files a table or list names (there may be many: they are resolved only when
        an output shares their file name)."""

        for source in sources:
            if not isinstance(source, str) or not source:
                continue
            source = container_of(source) or source  # a tar member or a table cell: its file
            if _is_url(source):
                self._urls.setdefault(_url_text(source), source)
                continue
            self._sources.setdefault(os.path.basename(source).casefold(), []).append(os.path.abspath(source))
        self._sources_real = None

    def overlap(self, output, inside: bool = True) -> str | None:
        """Why ``output`` may not be written (it is, holds or, with ``inside``, lies inside an
        input), or None."""
        if _is_url(output):
            out = _url_text(output)
            for url, name in self._urls.items():
                if out == url:
                    return f"is the input {name}"
                if inside and out.startswith(url + "/"):
                    return f"lies inside the input {name}"
                if url.startswith(out + "/"):
                    return f"holds the input {name}"
            return None
        real = _real(output)
        ident = _identity(real)
        if real in self._reals:
            return f"is the input {self._reals[real]}"
        if ident is not None:
            if ident in self._files:
                return f"is the input {self._files[ident]}"
            if ident in self._above:
                return f"holds the input {self._above[ident]}"
        for _, above in _existing_ancestors(real) if inside else ():
            if above in self._dirs:
                return f"lies inside the input folder {self._dirs[above]}"
        for name in self._named_sources(output, real, ident):
            return f"is {name}, one of the inputs"
        if ident is not None and os.path.isdir(real):
            prefix = real + os.sep
            for source in self._resolved_sources():
                if source.startswith(prefix):
                    return f"holds {source}, one of the inputs"
        return None

    def _named_sources(self, output, real: str, ident) -> Iterator[str]:
        for source in self._sources.get(os.path.basename(real).casefold(), []):
            if source == real or os.path.realpath(source) == real or (ident is not None and _identity(source) == ident):
                yield source

    def _resolved_sources(self) -> list[str]:
        if self._sources_real is None:
            self._sources_real = [os.path.realpath(s) for paths in self._sources.values() for s in paths]
        return self._sources_real


@contextmanager
def guarding(*inputs) -> Iterator[Guard]:
    """The command's guard, with ``inputs`` declared: the active one if a command is running
    (nested calls add to it), else a new one for the duration of the block."""
    active = _ACTIVE.get()
    if active is not None:
        active.add(*inputs)
        yield active
        return
    guard = Guard()
    guard.add(*inputs)
    token = _ACTIVE.set(guard)
    try:
        yield guard
    finally:
        _ACTIVE.reset(token)


@contextmanager
def amending(path) -> Iterator[None]:
    """Let the running command rewrite ``path``, one of its inputs that it updates in place (a
    model's JSON card recording an evaluation), for the duration of the block; every other input
    stays guarded. Without an active guard it changes nothing."""
    guard = _ACTIVE.get()
    if guard is None:
        yield
        return
    real, ident = _real(path), _identity(_real(path))
    narrower = Guard()
    narrower.__dict__.update({k: dict(v) if isinstance(v, dict) else v for k, v in guard.__dict__.items()})
    narrower._reals.pop(real, None)
    if ident is not None:
        narrower._files.pop(ident, None)
    token = _ACTIVE.set(narrower)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def declare_inputs(*paths, sources: Iterable = ()) -> None:
    """Readers call this for what they read; without an active guard it does nothing."""
    guard = _ACTIVE.get()
    if guard is not None:
        guard.add(*paths)
        if sources:
            guard.add_sources(sources)


def refuse_input_write(path, inside: bool = False) -> None:
    """Raise if writing ``path`` would replace or delete an input of the running command (with
    ``inside``, also if it would write into an input folder)."""
    guard = _ACTIVE.get()
    if guard is not None:
        why = guard.overlap(path, inside)
        if why is not None:
            raise OutputError(f"output {path} {why}; choose another output (an input is never written, --force or not)")


def claim(
    path,
    *,
    folder: bool | None = False,
    force: bool = False,
    needs_force: bool = False,
    what: str = "output",
    inputs: Iterable = (),
    kind: str | None = None,
) -> None:
    """Check a command's output before the work: never an input, never something xfer did not
    write, never another kind of output; an xfer output that exists is replaced only with
    ``force`` when ``needs_force``.

    ``folder`` says whether the output is a folder (True), a file (False) or either (None). An
    empty folder may always be written into: there is nothing in it to lose. ``inputs`` are
    declared first (to the running command's guard, or for this check alone). ``kind`` is what
    will be written (one of ``KINDS``; None: read from the name's suffix)."""
    with guarding(*inputs):
        refuse_input_write(path, inside=True)
    if not _exists(path):
        return
    is_dir = _is_dir(path)
    if is_dir and folder is False:
        raise OutputError(f"{what} {path} is a folder; give a file name")
    if folder and not is_dir:
        raise OutputError(f"{what} {path} is a file, not a folder; choose another output")
    if is_dir and not _is_url(path) and not any(os.scandir(os.fspath(path))):
        return
    if not written_by_xfer(path):
        raise OutputError(
            f"{what} {path} exists and was not written by xfer; it is never replaced (--force or not): "
            "move it away or choose another output"
        )
    new = kind or (FOLDER if is_dir else KIND_BY_SUFFIX.get(posixpath.splitext(str(path))[1].lower()))
    old = kind_of(path)
    if new and old and old != new and not (is_dir and FOLDER in (new, old)):
        raise OutputError(
            f"{what} {path} holds {KINDS[old]}, and this command writes {KINDS[new]}: one kind of output never "
            "replaces another (--force or not); choose another output"
        )
    if needs_force and not force:
        raise OutputError(f"{what} {path} exists; choose another output (or --force to replace it)")


def _exists(path) -> bool:
    if _is_url(path):
        return exists(str(path))
    return os.path.lexists(_real(path)) or os.path.lexists(os.fspath(path))


def _is_dir(path) -> bool:
    if _is_url(path):
        fs, root = filesystem(str(path))
        return fs.isdir(root)
    return os.path.isdir(os.fspath(path))


# --- What xfer wrote ---------------------------------------------------------------------------


def written_by_xfer(path) -> bool:
    """Whether the file or folder at ``path`` (local or a URL) is one xfer wrote, by its content."""
    if _is_dir(path):
        return _folder_is_ours(path)
    try:
        head = _head(path)
    except OSError:
        return False
    return _file_is_ours(path, head)


def _head(path) -> bytes:

    with open_source(path) as f:
        return f.read(HEAD_BYTES)


def _join(path, name: str):
    if _is_url(path):
        return posixpath.join(str(path).rstrip("/"), name)
    return os.path.join(os.fspath(path), name)


def _marker(path) -> dict | None:
    """The marker a folder output holds (what wrote it, and which kind of folder), or None."""
    marker = _join(path, FOLDER_MARKER)
    if not _exists(marker):
        return None
    try:
        with open_source(marker) as f:
            data = json.loads(f.read(HEAD_BYTES).decode("utf-8"))
    except (ValueError, OSError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == "featurizer" else None


def _folder_is_ours(path) -> bool:
    if _marker(path) is not None:
        return True
    if _is_url(path):
        return False
    # A folder from before the marker: ours only when every file in it is one xfer writes, by content.
    files = [p for p in Path(path).rglob("*") if not p.is_dir()]
    return bool(files) and all(p.is_file() and not p.is_symlink() and _json_or_file_is_ours(p) for p in files)


def _json_or_file_is_ours(path: Path) -> bool:
    if path.suffix == ".npy" and (path.parent / "spec.json").is_file():  # a NumPy export's arrays, beside its spec
        return _json_is_ours(path.parent / "spec.json")
    try:
        return _file_is_ours(path, _head(path))
    except OSError:
        return False


# --- Kinds of output: one kind never replaces another -------------------------------------------

FOLDER = "folder"
KINDS = {
    "features": "a feature file",
    "model": "a model",
    "card": "a model card",
    "report": "a report",
    "page": "an HTML page",
    "picture": "a picture",
    "table": "a CSV table",
    "checksum": "a checksum",
    "manifest": "a shard manifest",
    "spec": "a feature spec",
    "tuned": "a tuned backbone's description",
    "card-md": "a model card in Markdown",
    FOLDER: "a folder",
    "embed": "an embed folder of shards",
    "index": "an index folder",
    "export": "an export folder",
    "audit": "an audit folder",
    "backbone": "a tuned backbone folder",
}
KIND_BY_SUFFIX = {
    ".h5": "features",
    ".hdf5": "features",
    ".parquet": "features",
    ".skops": "model",
    ".png": "picture",
    ".html": "page",
    ".csv": "table",
    ".sha256": "checksum",
    ".md": "card-md",
}
_JSON_KINDS = {
    "featurizer-model": "card",
    "featurizer-evaluation": "report",
    "featurizer-shards": "manifest",
    "featurizer-tuned": "tuned",
}


def kind_of(path) -> str | None:
    """What kind of xfer output is at ``path`` (a key of ``KINDS``), None when it cannot say."""
    if _is_dir(path):
        marker = _marker(path)
        if marker is not None:
            return marker.get("kind") if marker.get("kind") in KINDS else FOLDER
        return "embed" if _exists(_join(path, "_manifest.json")) or _exists(_join(path, "manifest.json")) else FOLDER
    try:
        head = _head(path)
    except OSError:
        return None
    if head.startswith(b"\x89HDF\r\n\x1a\n") or head.startswith(b"PAR1"):
        return "features"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "picture"
    if head.startswith(b"PK\x03\x04"):
        return "model"
    text = head.decode("utf-8", errors="replace")
    if text.startswith(CARD_MARKER):
        return "card-md"
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        data = _json_object(path, stripped)
        if data is None:
            return None
        fmt = str(data.get("format", ""))
        if fmt:
            return _JSON_KINDS.get(fmt.split("/")[0], "report")
        return "spec" if {"model", "modality", "layers"} <= data.keys() else "report"
    if HTML_GENERATOR in text or 'aria-label="map of the embeddings"' in text:
        return "page"
    if str(path).endswith(".sha256"):
        return "checksum"
    return "table"


def _json_is_ours(path) -> bool:
    try:
        return _file_is_ours(path, _head(path))
    except OSError:
        return False


def _file_is_ours(path, head: bytes) -> bool:
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return _hdf5_is_ours(path)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_software(head) == PNG_SOFTWARE
    if head.startswith(b"PK\x03\x04"):  # a skops model: ours when its card beside it is
        card = posixpath.splitext(str(path))[0] + ".json" if _is_url(path) else Path(path).with_suffix(".json")
        return _exists(card) and _json_is_ours(card)
    if head.startswith(b"PAR1"):
        return _parquet_is_ours(path)
    text = head.decode("utf-8", errors="replace")
    if text.startswith(CARD_MARKER):
        return True
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        return _json_text_is_ours(path, stripped)
    if HTML_GENERATOR in text or 'aria-label="map of the embeddings"' in text:
        return True
    if str(path).endswith(".sha256"):
        return len(text.strip()) == 64 and all(c in "0123456789abcdef" for c in text.strip())
    try:
        first = next(csv.reader(io.StringIO(text.splitlines()[0] if text else "")))
    except (StopIteration, csv.Error, IndexError):
        return False
    return is_xfer_header(first)


def _json_object(path, head: str) -> dict | None:
    """The JSON object a file holds (read whole when ``head`` is only its start), None if it holds none."""
    try:
        if len(head.encode()) >= HEAD_BYTES:  # a big JSON file: read it whole
            with open_source(path) as f:
                head = f.read().decode("utf-8").lstrip("\ufeff")
        data = json.loads(head)
    except (ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def _json_text_is_ours(path, head: str) -> bool:
    data = _json_object(path, head)
    if data is None:
        return False
    fmt = data.get("format", "")
    if isinstance(fmt, str) and fmt.startswith(JSON_FORMAT_PREFIX):
        return True
    # A feature spec (an index's or an export's spec.json), or an evaluation report from before
    # reports named their format.
    return {"model", "modality", "layers"} <= data.keys() or {"model_sha256", "test"} <= data.keys()


def _hdf5_is_ours(path) -> bool:
    import h5py

    try:
        with open_source(path) as f, h5py.File(f, "r") as h5:
            fmt = h5.attrs.get("format", "")
    except (OSError, ValueError):
        return False
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", errors="replace")
    return isinstance(fmt, str) and fmt.startswith(JSON_FORMAT_PREFIX)


def _parquet_is_ours(path) -> bool:
    try:
        return "spec" in parquet_metadata(path)
    except Exception:  # not a readable Parquet file, or pyarrow missing: not known to be ours
        return False


def _png_software(head: bytes) -> str | None:
    """The ``Software`` text of a PNG's tEXt chunks in ``head`` (matplotlib writes it from ``metadata``)."""
    at = 8
    while at + 8 <= len(head):
        size = int.from_bytes(head[at : at + 4], "big")
        kind = head[at + 4 : at + 8]
        data = head[at + 8 : at + 8 + size]
        if kind == b"tEXt" and b"\x00" in data:
            key, value = data.split(b"\x00", 1)
            if key == b"Software":
                return value.decode("latin-1")
        if kind == b"IDAT":
            return None
        at += 12 + size
    return None


# The headers xfer's CSVs begin with: how the output guard knows a CSV is one
# xfer wrote, and may be replaced. a header not recognised here makes a CSV that is never replaced, so a
# new kind of CSV belongs in this table (tests/test_guard.py checks the writers' headers).
XFER_HEADERS = (
    ("id", "reason"),  # the items that failed (featurize)
    ("id", "source", "label", "predicted", "correct", "confidence", "p_label"),  # evaluate
    ("rank", "id", "source", "predicted", "confidence", "score"),  # suggest
    ("cluster", "id", "source", "label", "similarity"),  # audit: near-duplicates
    ("rank", "id", "source", "label", "distance", "z"),  # audit: outliers
    ("test_id", "test_source", "train_id", "train_source", "similarity"),  # audit: leaks
    ("rank", "id", "source", "given", "suggested", "label_quality"),  # audit: label issues
    ("class", "items", "share", "oof_accuracy", "looks_like", "looks_like_items"),  # audit: classes
)


def is_xfer_header(header: Sequence[str]) -> bool:
    """Whether a CSV's first row is one xfer writes: a header of ``XFER_HEADERS``, predictions
    (``id, label, p_<class>...``) or a multi-task model's predictions (``id``, then per task its
    column and probabilities; a task's probability column ends in ``_p`` or holds ``_p_``)."""
    cells = tuple(header)
    if any(cells[: len(known)] == known for known in XFER_HEADERS):
        return True
    if cells[:2] == ("id", "label") and len(cells) > 2 and all(c.startswith("p_") for c in cells[2:]):
        return True
    return len(cells) > 2 and cells[0] == "id" and any(c.endswith("_p") or "_p_" in c for c in cells[1:])
