"""Reading what the user points at into items with stable ids and optional labels.

Accepted: a folder in ImageFolder layout (class subfolders give labels), a folder of files
without labels, a CSV/TSV or JSONL file with a path or text column and an optional label column,
and a plain text file with one text a line. Files named in a CSV are read as data only.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featurizer._errors import InputError
from featurizer._registry import IMAGE, TEXT

# The extensions torchvision's ImageFolder reads: a folder scan skips (and reports) other files.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TEXT_EXTENSIONS = (".txt", ".md")
PATH_COLUMNS = ("path", "image", "image_path", "file", "filepath", "filename")
TEXT_COLUMNS = ("text", "sentence", "question", "content", "document")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "y")


@dataclass
class Inputs:
    """Items to featurize, in order: ``sources`` are file paths (images, text files) or texts."""

    ids: list[str]
    sources: list[str]
    modality: str
    labels: list[str] | None = None
    from_files: bool = True
    skipped: list[tuple[str, str]] = field(default_factory=list)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.sources) or (self.labels is not None and len(self.labels) != len(self.ids)):
            raise InputError("ids, sources and labels must have the same length")


@dataclass(frozen=True)
class ReadOptions:
    """How to read an input path into items (never part of the feature spec)."""

    column: str | None = None  # CSV/JSONL column of paths or texts; None: guessed
    label_column: str | None = None  # None: guessed
    extensions: tuple[str, ...] | None = None  # file types read from a folder; None: the modality's
    encoding: str = "utf-8"


def read_inputs(path: str | os.PathLike, modality: str = IMAGE, options: ReadOptions | None = None) -> Inputs:
    """Items from a folder or a file; ``modality`` (image or text) says what the items are."""
    o = options or ReadOptions()
    column, label_column, extensions, encoding = o.column, o.label_column, o.extensions, o.encoding
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions) if extensions else None
        return _read_folder(
            path, modality, exts or (IMAGE_EXTENSIONS if modality == IMAGE else TEXT_EXTENSIONS), encoding
        )
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_table(path, modality, column, label_column, encoding, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, modality, column, label_column, encoding)
    if modality == TEXT:
        return _read_lines(path, encoding)
    if suffix in IMAGE_EXTENSIONS:
        return Inputs([path.name], [str(path)], IMAGE, origin=str(path.resolve()))
    raise InputError(
        f"cannot read {path}: give a folder of images, a CSV/TSV/JSONL file with a path column, or an image"
    )


def texts_as_inputs(texts: Sequence[str]) -> Inputs:
    """In-memory texts as items; ids are their positions."""
    return Inputs([str(i) for i in range(len(texts))], [str(t) for t in texts], TEXT, from_files=False)


def _read_folder(root: Path, modality: str, exts: tuple[str, ...], encoding: str) -> Inputs:
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            file = Path(dirpath) / name
            if file.suffix.lower() in exts:
                files.append(file)
            else:
                reason = f"extension {file.suffix or '(none)'} not read (reads {' '.join(exts)}; add more with --ext)"
                skipped.append((file.relative_to(root).as_posix(), reason))
    if not files:
        raise InputError(f"no {modality} files ({' '.join(exts)}) found in {root}")
    ids = [f.relative_to(root).as_posix() for f in files]
    # ImageFolder layout: every file sits in a class subfolder directly under the root.
    labelled = all(i.count("/") == 1 for i in ids)
    labels = [i.split("/", 1)[0] for i in ids] if labelled else None
    if modality == TEXT:
        sources = [f.read_text(encoding=encoding, errors="replace") for f in files]
        return Inputs(ids, sources, TEXT, labels, from_files=False, skipped=skipped, origin=str(root.resolve()))
    return Inputs(ids, [str(f) for f in files], IMAGE, labels, skipped=skipped, origin=str(root.resolve()))


def _pick(
    columns: Sequence[str], asked: str | None, candidates: Sequence[str], what: str, required: bool
) -> str | None:
    if asked is not None:
        if asked not in columns:
            raise InputError(f"column {asked!r} not found; the columns are: {', '.join(columns)}")
        return asked
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if required:
        raise InputError(
            f"no {what} column found (looked for {', '.join(candidates)}); the columns are: "
            f"{', '.join(columns)}. Name one with --column"
        )
    return None


def _records_to_inputs(
    records: list[dict], path: Path, modality: str, column: str | None, label_column: str | None
) -> Inputs:
    if not records:
        raise InputError(f"{path} holds no rows")
    columns = list(records[0].keys())
    candidates = PATH_COLUMNS if modality == IMAGE else TEXT_COLUMNS
    col = _pick(columns, column, candidates, "image path" if modality == IMAGE else "text", True)
    lab = _pick(columns, label_column, LABEL_COLUMNS, "label", False)
    idc = "id" if "id" in columns else None
    ids = [str(r[idc]) if idc else str(i) for i, r in enumerate(records)]
    if len(set(ids)) != len(ids):
        raise InputError(f"the id column of {path} has repeated values")
    values = ["" if r.get(col) is None else str(r[col]) for r in records]
    if modality == IMAGE:
        values = [str((path.parent / v).resolve()) if v else "" for v in values]
    labels = ["" if r.get(lab) is None else str(r[lab]) for r in records] if lab else None
    return Inputs(ids, values, modality, labels, from_files=modality == IMAGE, origin=str(path.resolve()))


def _read_table(path: Path, modality: str, column, label_column, encoding: str, delimiter: str) -> Inputs:
    with open(path, newline="", encoding=encoding, errors="replace") as f:
        records = list(csv.DictReader(f, delimiter=delimiter))
    return _records_to_inputs(records, path, modality, column, label_column)


def _read_jsonl(path: Path, modality: str, column, label_column, encoding: str) -> Inputs:
    records = []
    with open(path, encoding=encoding, errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
    return _records_to_inputs(records, path, modality, column, label_column)


def _read_lines(path: Path, encoding: str) -> Inputs:
    """One text a line; blank lines are skipped, ids are 0-based line numbers so they stay stable."""
    ids, texts = [], []
    with open(path, encoding=encoding, errors="replace", newline=None) as f:
        for number, line in enumerate(f):
            text = line.rstrip("\n")
            if text.strip():
                ids.append(str(number))
                texts.append(text)
    if not texts:
        raise InputError(f"{path} holds no text")
    return Inputs(ids, texts, TEXT, from_files=False, origin=str(path.resolve()))


def guess_modality(path: str | os.PathLike) -> str:
    """Whether a path holds images or texts, to pick a default model when none is named."""
    path = Path(path).expanduser()
    if path.is_dir():
        suffixes = [p.suffix.lower() for p in path.rglob("*") if p.is_file()]
        images = sum(s in IMAGE_EXTENSIONS for s in suffixes)
        return IMAGE if images >= sum(s in TEXT_EXTENSIONS for s in suffixes) else TEXT
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return IMAGE
    if suffix in (".csv", ".tsv", ".jsonl", ".ndjson") and path.is_file():
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.readline()
        fields = (
            json.loads(head).keys()
            if suffix in (".jsonl", ".ndjson") and head.strip()
            else head.replace("\t", ",").split(",")
        )
        names = {str(c).strip().strip('"').lower() for c in fields}
        return IMAGE if names & set(PATH_COLUMNS) else TEXT
    return TEXT
