"""Files that appear whole or not at all: write to a temporary name beside the target, then rename.

Every file this project writes for users or for the cache goes through ``atomic_path``, so a crash
at any moment leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"


def temp_name(path: Path, prefix: str = ".") -> Path:
    """A unique hidden name beside ``path`` for its file in the making."""
    return path.with_name(f"{prefix}{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


@contextmanager
def atomic_path(path: str | os.PathLike, prefix: str = ".") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, prefix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def check_new_output(path: str | os.PathLike, force: bool) -> Path:
    """``path`` for a new output (file or folder): one that exists is refused unless ``force``."""
    from featurizer._errors import FeaturizerError

    path = Path(path)
    if path.exists() and not force:
        raise FeaturizerError(f"{path} exists; choose another -o (or --force to replace it)")
    return path


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """``atomic_path`` for an output that may be a folder: yield a temporary path beside ``path``
    (not created) to write a file or fill a folder; on success it replaces ``path`` (an old folder
    goes only then), on any exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files left beside ``path`` by killed writers (only safe to remove while holding its lock)."""
    return list(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"))
