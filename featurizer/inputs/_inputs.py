"""Reading what the user points at into items with stable ids and optional labels.

Accepted: a folder in ImageFolder layout (class subfolders give labels), a folder of files
without labels, a CSV/TSV or JSONL file with a path or text column and an optional label column
(with or without a header; columns by name or 0-based position), and a plain text file with one
text a line. Files named in a CSV are read as data only.

The rules for odd inputs, each decided here once:

- Labels: a blank cell, JSON ``null`` and NaN (a float, or the text ``nan`` that pandas writes)
  mean "no label"; such items are featurized, stored with an empty label and counted, and the
  heads leave them out. Numbers are labels by value: ``1``, ``1.0`` and ``"1"`` are one class.
  Label columns are found in any record, not only the first.
- Tables: a byte-order mark is dropped; fields may be of any length; a row whose number of fields
  differs from the header's is refused with its line named (a wrong ``--sep`` looks like that);
  a JSON line that is not an object is refused with its line named; a file with NUL bytes is
  binary, not text, and is refused. Bytes that are not valid in ``--encoding`` become U+FFFD and
  are counted in the summary.
- Folders: names that are not valid UTF-8 get ids with the bad bytes escaped (``\\xff``); a
  directory reached twice through symbolic links is read once; FIFOs, devices, sockets and broken
  links are skipped with their reason (reading a FIFO would hang); hidden files are not read.
- Ids: an id is one item. An id given again (a repeated ``id`` cell of a table, a file name that
  escapes to another's id, a tar member written twice) is an error row of its own, with where the
  id was first seen, and the summary counts them (``unique_ids``); a CSV of id,label or id,group
  that gives an id twice is refused. The same content under two ids is two items (computed once).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import math
import os
import posixpath
import re
import stat
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from featurizer.base import FeaturizerError, InputError
from featurizer.spec import IMAGE, TEXT
from featurizer.storage import (
    absolute,
    filesystem,
    is_url,
    join,
    list_files,
    local_path,
    location,
    open_source,
    parquet_source,
    read_bytes,
    read_parquet,
    storage_errors,
    tar_index,
    tar_source,
)

# The extensions torchvision's ImageFolder reads: a folder scan skips (and reports) other files.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TEXT_EXTENSIONS = (".txt", ".md")
TABLE_EXTENSIONS = (".csv", ".tsv")
JSONL_EXTENSIONS = (".jsonl", ".ndjson")
PARQUET_EXTENSIONS = (".parquet", ".pq")
PATH_COLUMNS = ("path", "image", "image_path", "file", "filepath", "filename")
TEXT_COLUMNS = ("text", "sentence", "question", "content", "document")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "y")
MISSING_LABEL_TEXT = ("", "nan", "NaN", "NAN")
BINARY_PROBE = 8192


@dataclass(frozen=True)
class ReadOptions:
    """How to read an input path into items (never part of the feature spec)."""

    column: str | None = None  # CSV/JSONL column of paths or texts, by name or 0-based position; None: guessed
    label_column: str | None = None  # by name or position; None: guessed
    extensions: tuple[str, ...] | None = None  # file types read from a folder; None: the modality's
    encoding: str = "utf-8"
    sep: str | None = None  # field separator of a table; None: tab for .tsv, comma otherwise
    header: bool | None = None  # whether a table's first row names its columns; None: detected
    labels: str | None = None  # a CSV of id,label whose labels replace the input's (xfer suggest's loop)


@dataclass
class Inputs:
    """Items to featurize, in order: ``sources`` are file paths (images, text files) or texts.

    ``labels`` holds an empty string for an item without a label.
    """

    ids: list[str]
    sources: list[str]
    modality: str
    labels: list[str] | None = None
    from_files: bool = True
    skipped: list[tuple[str, str]] = field(default_factory=list)
    origin: str = ""
    replaced: int = 0  # characters that could not be decoded and became U+FFFD
    notes: list[str] = field(default_factory=list)  # how the input was read (columns chosen, ...)
    # every other column of a table (the labels' among them), cells as ``label_text`` reads them:
    # featurized once, any of them can be a task of ``xfer fit --label-column``
    columns: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def __post_init__(self) -> None:
        lengths = {len(self.sources), *(len(v) for v in self.columns.values())}
        if self.labels is not None:
            lengths.add(len(self.labels))
        if lengths - {len(self.ids)}:
            raise InputError("ids, sources, labels and columns must have the same length")

    def take(self, positions: Sequence[int]) -> Inputs:
        """The items at ``positions``, in that order, with their labels and columns."""
        return replace(
            self,
            ids=[self.ids[p] for p in positions],
            sources=[self.sources[p] for p in positions],
            labels=None if self.labels is None else [self.labels[p] for p in positions],
            columns={name: [cells[p] for p in positions] for name, cells in self.columns.items()},
        )

    @property
    def unlabelled(self) -> int:
        return 0 if self.labels is None else sum(1 for label in self.labels if label == "")


def read_inputs(path: str | os.PathLike, modality: str = IMAGE, options: ReadOptions | None = None) -> Inputs:
    """Items from a folder or a file; ``modality`` (image or text) says what the items are.

    With ``options.labels``, the labels of a CSV of id,label replace the input's own for those ids.
    """
    o = options or ReadOptions()
    inputs = unique_ids(_read_path(path, modality, o))  # the readers name places; this catches any other
    return with_labels(inputs, o.labels) if o.labels else inputs


def unique_ids(inputs: Inputs, places: Sequence[str] | None = None) -> Inputs:
    """``inputs`` with each item whose id an earlier item has turned into an error row, with where
    both are (``places[i]``: "line 7", say; by default the item's position): one id, one item."""
    first: dict[str, int] = {}
    keep, repeated = [], []
    for pos, item in enumerate(inputs.ids):
        if item in first:
            repeated.append((pos, first[item]))
        else:
            first[item] = pos
            keep.append(pos)
    if not repeated:
        return inputs

    def place(pos: int) -> str:
        return places[pos] if places is not None else f"item {pos + 1}"

    rows = [
        (inputs.ids[pos], duplicate_reason(inputs.ids[pos], f"at {place(pos)}, also {place(was)}"))
        for pos, was in repeated
    ]
    kept = inputs.take(keep)
    return replace(kept, skipped=[*inputs.skipped, *rows], notes=[*inputs.notes, duplicates_note(len(rows))])


def duplicate_reason(item: str, where: str) -> str:
    """The reason of the error row of an id met again, ``where`` saying where it is and was."""
    return f"duplicate id {item!r} ({where}): not featurized"


def duplicates_note(n: int) -> str:
    return f"{n} item(s) repeat an id already read: each is an error row, not featurized"


def with_labels(inputs: Inputs, labels_file: str | os.PathLike) -> Inputs:
    """``inputs`` with the labels of a CSV of id,label (header with ``id`` and ``label``, or two columns)."""
    path = Path(labels_file)
    if not path.is_file():
        raise InputError(f"labels file not found: {path}")
    text, _ = decode_file(path)
    rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    id_col, label_col, rows = id_value_columns(rows, "label", set(inputs.ids), path)
    # a blank cell leaves the item's own label as it was
    mapping = {row[id_col]: label_text(row[label_col]) for row in rows if label_text(row[label_col])}
    unknown = sorted(set(mapping) - set(inputs.ids))
    if len(unknown) == len(mapping):
        raise InputError(f"{path}: none of its ids is an item of {inputs.origin} (ids look like {inputs.ids[0]!r})")
    old = inputs.labels or [""] * len(inputs.ids)
    labels = [mapping.get(i, label) for i, label in zip(inputs.ids, old)]
    notes = [*inputs.notes, f"{len(mapping) - len(unknown)} labels read from {path.name}"]
    if unknown:
        notes.append(f"{len(unknown)} ids of {path.name} are not items of the input ({', '.join(unknown[:3])} ...)")
    return replace(inputs, labels=labels, notes=notes)


def id_value_columns(rows: list[list[str]], value: str, ids: set[str], path) -> tuple[int, int, list[list[str]]]:
    """(id column, value column, data rows) of a small CSV that maps ids to a value (labels, groups).

    A header naming ``id`` and ``value`` picks them; a file of exactly two columns is id then
    value, with or without a header (a first row whose id is no item is taken for one). Anything
    else is refused: guessing a column of a wider file could read ranks or scores as labels.
    """
    if not rows:
        raise InputError(f"{path} is empty; expected rows of id,{value}")
    header = [c.strip().lower() for c in rows[0]]
    if "id" in header and value in header:
        id_col, value_col = header.index("id"), header.index(value)
        data = rows[1:]
    elif all(len(row) == 2 for row in rows):
        id_col, value_col = 0, 1
        data = rows[1:] if rows[0][0] not in ids else rows
    else:
        raise InputError(f"{path}: name its columns 'id' and '{value}' in a header (it has {', '.join(rows[0])})")
    start = 1 + (data is not rows)  # the line number of the first data row
    short = [n for n, row in enumerate(data, start) if len(row) <= max(id_col, value_col)]
    if short:
        raise InputError(f"{path}, line {short[0]}: fewer fields than the header")
    seen: dict[str, int] = {}
    for n, row in enumerate(data, start):  # two values for one id: one would be picked silently
        if row[id_col] in seen:
            raise InputError(
                f"{path}: id {row[id_col]!r} is given twice (lines {seen[row[id_col]]} and {n}); "
                f"give each id one {value}"
            )
        seen[row[id_col]] = n
    return id_col, value_col, data


def _read_path(path: str | os.PathLike, modality: str, o: ReadOptions) -> Inputs:
    if is_url(path):
        return _read_url(str(path), modality, o)
    path = Path(local_path(path)).expanduser()
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir() and (kind := _table_folder([p.name for p in path.iterdir() if p.is_file()])):
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in kind)
        return (
            _read_parquet(files, str(path), modality, o)
            if kind == PARQUET_EXTENSIONS
            else _read_tars(files, str(path.resolve()), modality)
        )
    if path.is_dir():
        return _read_folder(path, modality, _extensions(o, modality), o)
    if not _is_regular(path):
        raise InputError(f"{path} is not a regular file (a FIFO, device or socket); give a file or a folder")
    suffix = path.suffix.lower()
    if suffix in TABLE_EXTENSIONS:
        return _read_table(path, modality, o)
    if suffix in JSONL_EXTENSIONS:
        return _read_jsonl(path, modality, o)
    if suffix in PARQUET_EXTENSIONS:
        return _read_parquet([str(path)], str(path), modality, o)
    if suffix in TAR_EXTENSIONS:
        return _read_tars([str(path)], str(path.resolve()), modality)
    if modality == TEXT:
        return _read_lines(path, o.encoding)
    if suffix in IMAGE_EXTENSIONS:
        return Inputs([path.name], [str(path)], IMAGE, origin=str(path.resolve()))
    raise InputError(
        f"cannot read {path}: give a folder of images, a CSV/TSV/JSONL file with a path column, or an image"
    )


def _read_url(url: str, modality: str, o: ReadOptions) -> Inputs:
    """The same inputs as ``_read_path``, from object storage: a folder is every object under a
    prefix; files are read whole (tables) or as they are decoded (images, tar members)."""
    _, root = filesystem(url)
    info = _url_info(url)
    url = url.rstrip("/")
    if info["type"] == "directory":
        names = [rel for rel, _ in list_files(url) if not any(part.startswith(".") for part in rel.split("/"))]
        top = [n for n in names if "/" not in n]
        if kind := _table_folder(top):
            files = [join(url, n) for n in top if Path(n).suffix.lower() in kind]
            return (
                _read_parquet(files, url, modality, o)
                if kind == PARQUET_EXTENSIONS
                else _read_tars(files, url, modality)
            )
        exts = _extensions(o, modality)
        skipped = [
            (n, f"extension {Path(n).suffix or '(none)'} not read") for n in names if Path(n).suffix.lower() not in exts
        ]
        kept = [n for n in names if Path(n).suffix.lower() in exts]
        if not kept:
            raise InputError(f"no {modality} files ({' '.join(exts)}) found in {url}")
        labels = [n.split("/", 1)[0] for n in kept] if all(n.count("/") == 1 for n in kept) else None
        if modality == TEXT:
            texts = [decode_data(read_bytes(join(url, n)), join(url, n), o.encoding) for n in kept]
            return Inputs(kept, [t for t, _ in texts], TEXT, labels, False, skipped, url, sum(r for _, r in texts))
        return Inputs(kept, [join(url, n) for n in kept], IMAGE, labels, skipped=skipped, origin=url)
    suffix = Path(root).suffix.lower()
    if suffix in TABLE_EXTENSIONS:
        return _read_table(url, modality, o)
    if suffix in JSONL_EXTENSIONS:
        return _read_jsonl(url, modality, o)
    if suffix in PARQUET_EXTENSIONS:
        return _read_parquet([url], url, modality, o)
    if suffix in TAR_EXTENSIONS:
        return _read_tars([url], url, modality)
    if modality == TEXT:
        return _read_lines(url, o.encoding)
    if suffix in IMAGE_EXTENSIONS:
        return Inputs([posixpath.basename(root)], [url], IMAGE, origin=url)
    raise InputError(f"cannot read {url}: give a folder of images, a CSV/TSV/JSONL/Parquet file or tar shards")


def _url_info(url: str) -> dict:
    """fsspec's info on ``url``; a missing bucket, missing credentials or a missing key said in one line."""
    fs, root = filesystem(url)
    with storage_errors(url):
        try:
            return fs.info(root)
        except FileNotFoundError:
            fs.ls(root.split("/", 1)[0])  # a missing bucket says so; a missing key is not found
            raise InputError(f"input not found: {url}") from None


def _extensions(o: ReadOptions, modality: str) -> tuple[str, ...]:
    if o.extensions:
        return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in o.extensions)
    return IMAGE_EXTENSIONS if modality == IMAGE else TEXT_EXTENSIONS


def _beside(table: str | Path, value: str) -> str:
    """A path read from a table, relative to the table's folder unless absolute or a URL."""
    if is_url(value) or os.path.isabs(value):
        return value
    if is_url(table):
        scheme, rest = str(table).split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), value))}"
    return str((Path(table).parent / value).resolve())


def texts_as_inputs(texts: Sequence[str]) -> Inputs:
    """In-memory texts as items; ids are their positions."""
    return Inputs([str(i) for i in range(len(texts))], [str(t) for t in texts], TEXT, from_files=False)


# --- Decoding -------------------------------------------------------------------------------


class _Replacements:
    """A codecs error handler that replaces undecodable bytes with U+FFFD and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, err: UnicodeDecodeError):
        self.count += err.end - err.start
        return "\ufffd", err.end


def decode_file(path: Path | str, encoding: str = "utf-8") -> tuple[str, int]:
    """A text file's contents (a local path or a URL) and how many bytes could not be decoded."""
    return decode_data(location(path).read_bytes(), path, encoding)


def decode_data(data: bytes, path, encoding: str = "utf-8") -> tuple[str, int]:
    """Bytes of the text file ``path`` as text, and how many bytes could not be decoded (they become U+FFFD).

    A UTF-8 byte-order mark is dropped; a file with NUL bytes in its first 8 KB is binary and refused.
    """
    if b"\x00" in data[:BINARY_PROBE] and not encoding.lower().startswith(("utf-16", "utf-32", "utf16", "utf32")):
        raise InputError(f"{path} is a binary file, not text (it holds NUL bytes); give a text, CSV or JSONL file")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r} (try utf-8, latin-1 or cp1252)") from None
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig"):
        encoding = "utf-8-sig"
    counter = _Replacements()
    name = f"featurizer-count-{id(counter)}"
    codecs.register_error(name, counter)
    return data.decode(encoding, errors=name), counter.count


# --- Folders --------------------------------------------------------------------------------


def _display(name: str) -> str:
    """A file name as valid UTF-8 text: bytes that are not UTF-8 are shown escaped (``\\xff``)."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _file_kind(path: Path) -> str | None:
    """None for a regular file, else why it is not read."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        return f"unreadable: {err.strerror or err}" if not path.is_symlink() else "broken symbolic link"
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"{kind}, not a regular file: not read"


def _read_folder(root: Path, modality: str, exts: tuple[str, ...], options: ReadOptions) -> Inputs:
    """Every file with one of ``exts`` under ``root``, in name order; class subfolders give labels."""
    files, skipped, seen_dirs = [], [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = os.stat(dirpath)
        if (here.st_dev, here.st_ino) in seen_dirs:  # reached again through a symbolic link: a loop or a copy
            skipped.append(
                (_display(Path(dirpath).relative_to(root).as_posix()), "folder already read (symbolic link)")
            )
            dirnames[:] = []
            continue
        seen_dirs.add((here.st_dev, here.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            file = Path(dirpath) / name
            rel = _display(file.relative_to(root).as_posix())
            if file.suffix.lower() not in exts:
                reason = f"extension {file.suffix or '(none)'} not read (reads {' '.join(exts)}; add more with --ext)"
                skipped.append((rel, reason))
            elif (why := _file_kind(file)) is not None:
                skipped.append((rel, why))
            else:
                files.append(file)
    if not files:
        raise InputError(f"no {modality} files ({' '.join(exts)}) found in {root}")
    ids = [_display(f.relative_to(root).as_posix()) for f in files]
    # ImageFolder layout: every file sits in a class subfolder directly under the root.
    labelled = all(i.count("/") == 1 for i in ids)
    labels = [i.split("/", 1)[0] for i in ids] if labelled else None
    origin = str(root.resolve())
    # a name that is not UTF-8 shows its bytes escaped, which another file's name can spell out
    places = [f"file {os.fsencode(f.relative_to(root).as_posix())!r}" for f in files]
    if modality == TEXT:
        sources, replaced = [], 0
        for f in files:
            text, bad = decode_file(f, options.encoding)
            sources.append(text)
            replaced += bad
        return unique_ids(Inputs(ids, sources, TEXT, labels, False, skipped, origin, replaced), places)
    return unique_ids(Inputs(ids, [str(f) for f in files], IMAGE, labels, skipped=skipped, origin=origin), places)


# --- Tables ---------------------------------------------------------------------------------


def label_text(value) -> str:
    """A label as text; "" for no label (blank, null, NaN). Numbers by value: 1, 1.0 and "1" agree."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    text = str(value).strip()
    if text in MISSING_LABEL_TEXT:
        return ""
    try:  # "1.0" in one row and "1" in another: one class
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() and not text.lower().startswith(("inf", "-inf", "+inf")) else text


def _pick(
    columns: Sequence[str], asked: str | None, candidates: Sequence[str], what: str, required: bool
) -> str | None:
    if asked is not None:
        if asked in columns:
            return asked
        if asked.lstrip("-").isdigit() and -len(columns) <= int(asked) < len(columns):
            return columns[int(asked)]  # a position
        raise InputError(
            f"column {asked!r} not found; the columns are: {', '.join(map(repr, columns))} (or 0-based positions)"
        )
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if required:
        raise InputError(
            f"no {what} column found (looked for {', '.join(candidates)}); the columns are: "
            f"{', '.join(map(repr, columns))}. Name one with --column (a name or a 0-based position)"
        )
    return None


def _guess_headerless(records: list[dict], columns: list[str], modality: str, options: ReadOptions):
    """Text (or path) and label columns of a table without a header: the longest column holds the
    texts; a column with few distinct values, if any, the labels."""

    def mean_length(c):
        return sum(len(str(r.get(c) or "")) for r in records) / max(1, len(records))

    col = _pick(columns, options.column, (), "", False) or max(columns, key=mean_length)
    lab = _pick(columns, options.label_column, (), "", False)
    if lab is None and options.label_column is None:
        others = [c for c in columns if c != col]
        few = [c for c in others if len({r.get(c) for r in records}) <= max(2, len(records) // 2)]
        lab = few[0] if few else None
    return col, lab


def _records_to_inputs(
    records: list[dict],
    columns: list[str],
    path: str | Path,
    modality: str,
    options: ReadOptions,
    header: bool,
    replaced: int,
) -> Inputs:
    if not records:
        raise InputError(f"{path} holds no rows")
    notes = []
    if header:
        candidates = PATH_COLUMNS if modality == IMAGE else TEXT_COLUMNS
        col = _pick(columns, options.column, candidates, "image path" if modality == IMAGE else "text", True)
        lab = _pick(columns, options.label_column, LABEL_COLUMNS, "label", False)
    else:
        col, lab = _guess_headerless(records, columns, modality, options)
        notes.append(
            f"{_basename(path)} has no header: read column {col} as {'paths' if modality == IMAGE else 'texts'}"
            + (f" and column {lab} as labels" if lab is not None else ", no labels")
            + " (name them with --column / --label-column)"
        )
    idc = "id" if header and "id" in columns and col != "id" and lab != "id" else None
    ids = [str(r.get(idc)) if idc else str(i) for i, r in enumerate(records)]  # repeated: ``unique_ids``
    values = ["" if r.get(col) is None else str(r[col]) for r in records]
    if modality == IMAGE:
        values = [_beside(path, v) if v.strip() else "" for v in values]
    labels = [label_text(r.get(lab)) for r in records] if lab else None
    if labels is not None and all(label == "" for label in labels):
        notes.append(f"the label column {lab!r} is empty in every row: no labels")
        labels = None
    origin = absolute(path)
    others = {c: [label_text(r.get(c)) for r in records] for c in columns if c not in (col, idc)}
    return Inputs(ids, values, modality, labels, modality == IMAGE, [], origin, replaced, notes, others)


def _has_header(first: list[str], options: ReadOptions) -> bool:
    if options.header is not None:
        return options.header
    names = {c.strip().lower() for c in first}
    known = {*PATH_COLUMNS, *TEXT_COLUMNS, *LABEL_COLUMNS, "id"}
    asked = {
        str(c).lower()
        for c in (options.column, options.label_column)
        if c is not None and not str(c).lstrip("-").isdigit()
    }
    return bool(names & (known | asked))


def _header_under_another_sep(first: list[str], sep: str) -> bool:
    """Whether a row that is no header under ``sep`` would be one under another common separator."""
    known = {*PATH_COLUMNS, *TEXT_COLUMNS, *LABEL_COLUMNS}
    line = sep.join(first)
    for other in (",", "\t", ";", "|"):
        if other != sep and {c.strip().strip('"').lower() for c in line.split(other)} & known:
            return True
    return False


def _read_table(path: Path | str, modality: str, options: ReadOptions) -> Inputs:
    text, replaced = decode_file(path, options.encoding)
    sep = options.sep or ("\t" if str(path).lower().endswith(".tsv") else ",")
    if sep in ("\\t", "tab"):
        sep = "\t"
    csv.field_size_limit(sys.maxsize if sys.maxsize < 2**63 else 2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    numbered = []  # (line number in the file, fields), blank rows left out
    try:
        for row in reader:  # an empty line is no row; a row of empty fields is an item without text
            if row and not (len(row) == 1 and not row[0].strip()):
                numbered.append((reader.line_num, row))
    except csv.Error as err:
        raise InputError(f"{path}, line {reader.line_num}: not a readable table ({err}); check --sep") from None
    if not numbered:
        raise InputError(f"{path} holds no rows")
    header = _has_header(numbered[0][1], options)
    if not header and options.header is None and _header_under_another_sep(numbered[0][1], sep):
        raise InputError(
            f"{path}: the first row looks like a header split by another separator than {sep!r} "
            f"({sep.join(numbered[0][1])[:80]!r}); give the right --sep (or --no-header)"
        )
    if header:
        columns = [c.strip() for c in numbered[0][1]]
        if len(set(columns)) != len(columns) or not all(columns):
            raise InputError(f"{path}: the header has blank or repeated column names ({', '.join(map(repr, columns))})")
        numbered = numbered[1:]
    else:
        columns = [str(i) for i in range(len(numbered[0][1]))]
    ragged = [n for n, row in numbered if len(row) != len(columns)]
    if ragged:
        shown = ", ".join(map(str, ragged[:5])) + (" ..." if len(ragged) > 5 else "")
        raise InputError(
            f"{path}: {len(ragged)} row(s) do not have the {len(columns)} fields of the "
            f"{'header' if header else 'first row'} (line {shown}); check --sep (now {sep!r}) and quoting"
        )
    records = [dict(zip(columns, row)) for _, row in numbered]
    inputs = _records_to_inputs(records, columns, path, modality, options, header, replaced)
    return unique_ids(inputs, [f"line {n}" for n, _ in numbered])


def _read_jsonl(path: Path | str, modality: str, options: ReadOptions) -> Inputs:
    text, replaced = decode_file(path, options.encoding)
    records, columns, lines = [], {}, []
    for number, line in enumerate(text.split("\n"), 1):  # JSON escapes every other line break
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}, line {number}: a JSON {type(record).__name__}, not an object with named fields")
        records.append(record)
        lines.append(f"line {number}")
        columns.update(dict.fromkeys(record))  # every record's fields: the first may lack the label
    return unique_ids(_records_to_inputs(records, list(columns), path, modality, options, True, replaced), lines)


def _table_folder(names: Sequence[str]) -> tuple[str, ...] | None:
    """The extensions of a folder that is one table or one archive: Parquet files only (a
    partitioned table) or tar shards only (WebDataset); None for any other folder."""
    files = [n for n in names if not n.startswith((".", "_"))]
    for kind in (PARQUET_EXTENSIONS, TAR_EXTENSIONS):
        if files and all(Path(n).suffix.lower() in kind for n in files):
            return kind
    return None


def _basename(path: str | Path) -> str:
    return location(path).name


def _read_parquet(files: list[str], path: str, modality: str, options: ReadOptions) -> Inputs:
    """A Parquet file, or a folder of them read in name order as one table: a text column or an
    image column (paths, relative to the file, or the images' bytes), an optional label column and
    an id column, as for CSV. Image bytes stay in the file: an item's source names its row
    (``parquet_source``) and is read when it is decoded."""
    records, columns, byte_columns, places = [], {}, set(), []
    for file in files:
        schema = _parquet_table_schema(file)
        binary = {f.name for f in schema if str(f.type) in ("binary", "large_binary")}
        byte_columns |= binary
        columns.update(dict.fromkeys(schema.names))
        # the bytes stay where they are: only the other columns are read now
        table = _parquet_table(file, [n for n in schema.names if n not in binary])
        rows = table.to_pylist() if table.num_columns else [{} for _ in range(table.num_rows)]
        for n, row in enumerate(rows):
            row.update({b: parquet_source(file, b, n) for b in binary})
        records += rows
        places += [f"row {n} of {_basename(file)}" for n in range(len(rows))]
    # a folder's relative paths resolve against the folder, a file's against the file's folder
    base = path if path in files else join(path, "_")
    if modality == IMAGE:
        candidates = [c for c in columns if c in byte_columns]
        col = _pick(list(columns), options.column, (*PATH_COLUMNS, *candidates), "image", True)
        if col in byte_columns:
            inputs = _records_to_inputs(records, list(columns), base, modality, replace(options, column=col), True, 0)
            sources = [r[col] for r in records]
            notes = [*inputs.notes, f"images decoded from column {col!r}"]
            return unique_ids(replace(inputs, sources=sources, notes=notes), places)
    elif options.column in byte_columns:
        raise InputError(f"column {options.column!r} holds bytes, not texts")
    records = [{k: v for k, v in r.items() if k not in byte_columns} for r in records]
    kept = [c for c in columns if c not in byte_columns]
    return unique_ids(_records_to_inputs(records, kept, base, modality, options, True, 0), places)


def _parquet_table(file: str, columns: list[str] | None = None):
    return read_parquet(file, lambda pq, path, fs: pq.read_table(path, filesystem=fs, columns=columns))


# --- Tar shards (WebDataset) ------------------------------------------------------------------

TAR_EXTENSIONS = (".tar",)


def _read_tars(shards: list[str], origin: str, modality: str) -> Inputs:
    """WebDataset shards: members grouped into samples by key (a name up to its first dot), in
    order; ``jpg``/``png``/... is the image, ``txt`` the text (a column for images), ``cls`` the
    label. A sample's id is its key (with its shard's name when keys repeat across shards). A
    member written twice is read from its last copy, as tar extracts it, and one suffix under two
    cases (``a.jpg``, ``a.JPG``) from the later: each earlier copy of a sample is an error row."""
    samples: dict[tuple[str, str], dict[str, str]] = {}
    # members a sample has beyond one a suffix, each (the one not read, the one read): error rows
    copies: dict[tuple[str, str], list[tuple[str, str]]] = {}
    indexes = {shard: tar_index(shard) for shard in shards}  # a shard cut short is refused here
    for shard, index in indexes.items():
        written = _member_counts(shard) if index.repeated else {}
        for name in index:
            folder, base = posixpath.split(name)
            key, _, ext = base.partition(".")
            sample = samples.setdefault((shard, posixpath.join(folder, key)), {})
            lost = [(name, name)] * (written.get(name, 1) - 1)  # a name written twice: tar reads the last
            if ext.lower() in sample:  # a.jpg and a.JPG: one suffix, the later one is read
                lost.append((sample[ext.lower()], name))
            if lost:
                copies.setdefault((shard, posixpath.join(folder, key)), []).extend(lost)
            sample[ext.lower()] = name
    keys = [key for _, key in samples]
    unique = len(set(keys)) == len(keys)
    ids, sources, labels, captions, skipped = [], [], [], [], []
    for (shard, key), pairs in copies.items():  # one error row for each earlier copy of a sample
        item, counts = key if unique else f"{_basename(shard)}/{key}", Counter(pairs)
        for copy in range(max(counts.values())):
            lost = [pair for pair, n in counts.items() if n > copy]
            again = [read for was, read in lost if was == read]
            where = "; ".join(
                (
                    [f"an earlier copy of {', '.join(again)} in {_basename(shard)}: tar extracts the last"]
                    if again
                    else []
                )
                + [
                    f"{was} and {read} in {_basename(shard)} are one suffix: {read} is read"
                    for was, read in lost
                    if was != read
                ]
            )
            skipped.append((item, duplicate_reason(item, where)))
    image_exts = [e.lstrip(".") for e in IMAGE_EXTENSIONS]
    with contextlib.ExitStack() as stack:
        opened: dict[str, IO[bytes]] = {}  # one file object a shard for its small members: a URL's are
        # then read in the backend's blocks, not in one request per label

        def member_text(shard: str, name: str) -> str:
            if shard not in opened:
                opened[shard] = stack.enter_context(open_source(shard))
            offset, size = indexes[shard][name]
            opened[shard].seek(offset)
            return opened[shard].read(size).decode("utf-8", "replace").strip()

        for (shard, key), parts in samples.items():
            item = key if unique else f"{_basename(shard)}/{key}"
            if modality == IMAGE:
                ext = next((e for e in image_exts if e in parts), None)
                if ext is None:
                    skipped.append((item, f"no image in the sample (it has {', '.join(sorted(parts))})"))
                    continue
                sources.append(tar_source(parts[ext], shard))
                captions.append(member_text(shard, parts["txt"]) if "txt" in parts else "")
            else:
                if "txt" not in parts:
                    skipped.append((item, f"no txt in the sample (it has {', '.join(sorted(parts))})"))
                    continue
                sources.append(member_text(shard, parts["txt"]))
            ids.append(item)
            labels.append(label_text(member_text(shard, parts["cls"])) if "cls" in parts else "")
    if not ids:
        raise InputError(f"no {modality} samples found in the tar shards of {origin}")
    n_copies = sum(map(len, copies.values()))
    notes = [duplicates_note(n_copies)] if n_copies else []
    columns = {"txt": captions} if modality == IMAGE and any(captions) else {}
    if any(labels):
        columns["cls"] = labels
    return Inputs(
        ids,
        sources,
        modality,
        labels if any(labels) else None,
        modality == IMAGE,
        skipped,
        origin,
        notes=notes,
        columns=columns,
    )


def _member_counts(shard: str) -> dict[str, int]:
    """How many times each member name is written in a tar shard (its headers only; read only when
    the index says a name repeats, since the index keeps the last one)."""
    import tarfile

    with open_source(shard) as f, tarfile.open(fileobj=f, mode="r:") as tar:
        return Counter(m.name for m in tar.getmembers() if m.isfile())


def _read_lines(path: Path | str, encoding: str) -> Inputs:
    """One text a line; blank lines are skipped, ids are 0-based line numbers so they stay stable."""
    text, replaced = decode_file(path, encoding)
    ids, texts = [], []
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text)):  # universal newlines, as open() reads
        if line.strip():
            ids.append(str(number))
            texts.append(line)
    if not texts:
        raise InputError(f"{path} holds no text")
    return Inputs(ids, texts, TEXT, from_files=False, origin=absolute(path), replaced=replaced)


def guess_modality(path: str | os.PathLike) -> str:
    """Whether a path (local or a URL) holds images or texts, to pick a default model when none is named."""
    try:
        if is_url(path):
            url = str(path).rstrip("/")
            folder = _url_info(url)["type"] == "directory"  # storage errors are said here, not guessed past
            names = [rel for rel, _ in list_files(url)] if folder else []
        else:
            url = str(Path(local_path(path)).expanduser())
            folder = os.path.isdir(url)
            names = [p.relative_to(url).as_posix() for p in Path(url).rglob("*")] if folder else []
    except OSError:
        return TEXT  # unreadable: reading it later says why
    names = [n for n in names if not posixpath.basename(n).startswith(".")]
    if folder:
        top = [n for n in names if "/" not in n]
        if _table_folder(top):
            return guess_modality(join(url, sorted(top)[0]))
        suffixes = [Path(n).suffix.lower() for n in names]
        images = sum(s in IMAGE_EXTENSIONS for s in suffixes)
        return TEXT if sum(s in TEXT_EXTENSIONS for s in suffixes) > images else IMAGE
    suffix = Path(url).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return IMAGE
    try:
        if suffix in PARQUET_EXTENSIONS:
            schema = _parquet_table_schema(url)
            binary = any(str(f.type) in ("binary", "large_binary") for f in schema)
            return IMAGE if binary or {n.lower() for n in schema.names} & set(PATH_COLUMNS) else TEXT
        if suffix in TAR_EXTENSIONS:
            exts = {Path(n).suffix.lower() for n in tar_index(url)}
            return IMAGE if exts & set(IMAGE_EXTENSIONS) else TEXT
        if suffix in (*TABLE_EXTENSIONS, *JSONL_EXTENSIONS):
            with open_source(url) as f:
                head = f.readline().decode("utf-8-sig", "replace")
            fields = (
                json.loads(head).keys()
                if suffix in JSONL_EXTENSIONS and head.strip()
                else head.replace("\t", ",").split(",")
            )
            names = {str(c).strip().strip('"').lower() for c in fields}
            return IMAGE if names & set(PATH_COLUMNS) else TEXT
    except (OSError, ValueError, AttributeError, FeaturizerError):
        return TEXT
    return TEXT


def _parquet_table_schema(file: str):
    """A Parquet file's schema (arrow types, column names)."""
    return read_parquet(file, lambda pq, path, fs: pq.read_schema(path, filesystem=fs))
