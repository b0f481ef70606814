"""Files that appear whole or not at all: write to a temporary name beside the target, then rename.

Every file this project writes for users or for the cache goes through ``atomic_path``, so a crash
at any moment leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from featurizer.base import FeaturizerError, __version__
from featurizer.storage._guard import FOLDER_MARKER, claim, refuse_input_write
from featurizer.storage._storage import (
    filesystem,
    is_url,
    join,
    local_path,
    location,
    staging_dir,
    upload,
    upload_folder,
)

TMP_SUFFIX = ".tmp"


def temp_name(path: Path, prefix: str = ".") -> Path:
    """A unique hidden name beside ``path`` for its file in the making."""
    return path.with_name(f"{prefix}{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


@contextmanager
def atomic_path(path: str | os.PathLike, prefix: str = ".") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any exception it is removed.
    For a URL the temporary path is local and the file is uploaded once written."""

    refuse_input_write(path)
    if is_url(path):
        with _remote_output(str(path)) as tmp:
            yield tmp
        return
    path = Path(path)
    refuse_mangled_url(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, prefix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def refuse_mangled_url(path: Path) -> None:
    """A URL that went through ``Path`` (``s3://b/k`` became ``s3:/b/k``) is refused rather than
    written as a local folder named ``s3:``."""

    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/(?!/)", str(path)):
        raise FeaturizerError(f"{path} looks like a URL that lost a slash; this output cannot take a URL yet")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path | str:
    """Write a text file whole or not at all (a URL: uploaded once written)."""

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return location(path)


def check_new_output(
    path: str | os.PathLike, force: bool, folder: bool | None = None, inputs=(), kind: str | None = None
) -> Path | str:
    """``path`` for a new output (file or folder, local or a URL), through the output guard: never
    an input, never something xfer did not write, and an xfer output only with ``force``."""

    path = location(path)
    claim(path, folder=folder, force=force, needs_force=True, inputs=inputs, kind=kind)
    return path


@contextmanager
def local_copy_out(path: str | os.PathLike) -> Iterator[Path]:
    """A local path to write ``path`` at: itself where it is local (the writer makes it safe), a
    staged file uploaded whole on success where it is a URL."""
    if is_url(path):
        with atomic_output(path) as staged:
            yield staged
    else:
        yield Path(local_path(path))


@contextmanager
def atomic_output(path: str | os.PathLike, kind: str | None = None) -> Iterator[Path]:
    """``atomic_path`` for an output that may be a folder: yield a temporary path beside ``path``
    (not created) to write a file or fill a folder; on success it replaces ``path`` (an old folder
    goes only then), on any exception it is removed. For a URL the temporary path is local and
    the finished file or folder is uploaded (``featurizer._storage.upload``)."""

    refuse_input_write(path)
    if is_url(path):
        with _remote_output(str(path)) as tmp:
            yield tmp
            _mark_folder(tmp, kind)
        return
    path = Path(local_path(path))
    refuse_mangled_url(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        _mark_folder(tmp, kind)
        refuse_input_write(path)
        if path.is_dir():  # the old folder goes whole: renamed aside first, removed once the new one is in place
            aside = temp_name(path, prefix=".old-")
            os.replace(path, aside)
            os.replace(tmp, path)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _marker_text(kind: str | None = None) -> str:
    return json.dumps({"written_by": "featurizer", "version": __version__, **({"kind": kind} if kind else {})}) + "\n"


def _mark_folder(tmp: Path, kind: str | None = None) -> None:
    """A folder output holds a marker, so a later ``--force`` knows xfer wrote it and which kind of
    folder it is (featurizer.storage._guard)."""
    if tmp.is_dir():
        (tmp / FOLDER_MARKER).write_text(_marker_text(kind))


def mark_folder(path: str | os.PathLike, kind: str | None = None) -> None:
    """Mark a folder that xfer fills in place (an embed folder: its shards appear one by one) before
    its first file, so a run killed half way leaves a folder the guard knows as xfer's."""

    folder = location(path)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / FOLDER_MARKER).exists():
        atomic_write_text(folder / FOLDER_MARKER, _marker_text(kind))


@contextmanager
def _remote_output(url: str) -> Iterator[Path]:
    """A local path named as ``url``'s last part; what is written there is uploaded to ``url``, and
    any file the writer left beside it (an errors CSV) beside ``url``."""
    import posixpath
    import tempfile

    folder = Path(tempfile.mkdtemp(dir=staging_dir()))
    tmp = folder / (posixpath.basename(url.rstrip("/")) or "output")
    try:
        yield tmp
        for other in sorted(folder.iterdir()):
            if other != tmp and other.is_file():
                upload(other, join(posixpath.dirname(url.rstrip("/")), other.name))
        if tmp.is_dir():
            fs, root = filesystem(url)
            old = set(fs.find(root)) if fs.isdir(root) else set()
            upload_folder(tmp, url)
            new = {f"{root.rstrip('/')}/{p.relative_to(tmp).as_posix()}" for p in tmp.rglob("*") if p.is_file()}
            for stale in sorted(old - new):  # an old folder's other files go only now
                fs.rm_file(stale)
        else:
            upload(tmp, url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files left beside ``path`` by killed writers (only safe to remove while holding its lock)."""
    return list(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"))
