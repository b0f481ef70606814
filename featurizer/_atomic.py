"""Files that appear whole or not at all: write to a temporary name beside the target, then rename.

Every file this project writes for users or for the cache goes through ``atomic_path``, so a crash
at any moment leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import os
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


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files left beside ``path`` by killed writers (only safe to remove while holding its lock)."""
    return list(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"))
