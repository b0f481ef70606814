"""SHA-256 of files, the one place that reads a file to fingerprint it.

``file_sha256`` reads the whole file every time (integrity checks: a model file, a shard);
``file_sha256_memo`` remembers the digest while the file's size and modification time stay the
same (fingerprints of weights, read on every run).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from featurizer.storage._storage import open_source

_BUFFER = 1 << 20


def sha256_file(path: str | os.PathLike, prefix: bytes = b"") -> hashlib._Hash:
    """A SHA-256 object over ``prefix`` and a file's bytes (a local path or a URL), read in 1 MiB chunks."""

    digest = hashlib.sha256(prefix)
    with open_source(path) as f:
        while chunk := f.read(_BUFFER):
            digest.update(chunk)
    return digest


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in full (no memo: this is the check against changes)."""
    return sha256_file(path).hexdigest()


def file_sha256_memo(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, remembered for as long as its size and modification time stay the same."""
    st = os.stat(path)
    return _memo(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _memo(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def ids_sha256(ids: Sequence[str]) -> str:
    """Hex SHA-256 of a list of item ids, in order (what a shard was planned to hold)."""
    return hashlib.sha256(json.dumps(list(ids)).encode("utf-8", errors="surrogatepass")).hexdigest()
