"""Content digests: the cache key of an item is the SHA-256 of what it is, not of its name."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from featurizer.base import FeaturizerError
from featurizer.storage import is_url, object_stamps, read_object, served, sha256_file

FILE_PREFIX = b"file\0"


def file_key(path: str) -> bytes:
    """Digest of a file's bytes (a renamed or copied file keeps its key). An object in storage is
    read whole, so that ``keeping_reads`` can keep it for its decode."""
    if is_url(path):
        return bytes_key(read_object(path))
    return sha256_file(path, FILE_PREFIX).digest()


def bytes_key(data: bytes) -> bytes:
    """``file_key`` of a file holding ``data``: the key of bytes read by someone else (Ray Data's readers)."""
    return hashlib.sha256(FILE_PREFIX + data).digest()


def text_key(text: str) -> bytes:
    return hashlib.sha256(b"text\0" + text.encode("utf-8", errors="surrogatepass")).digest()


def array_key(image: np.ndarray | Image.Image) -> bytes:
    """Digest of decoded pixels, with their shape and type, for images given in memory."""
    array = np.ascontiguousarray(np.asarray(image))
    digest = hashlib.sha256(f"array\0{array.shape}\0{array.dtype.str}\0".encode())
    digest.update(array.data)
    return digest.digest()


def _memo_name(path: str) -> str:
    """A path as valid UTF-8 text: bytes of a name that are not UTF-8 are escaped (sqlite stores UTF-8)."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


class FileKeyMemo:
    """Remembers the content key of each file by its path, size, inode and times (as git's index does).

    A cached re-run then stats files instead of reading them. The memo lives in the cache folder
    (``file-keys.sqlite``); any problem with it falls back to reading the files.
    """

    def __init__(self, cache_dir: str | os.PathLike):
        self.path = Path(cache_dir) / "file-keys.sqlite"

    def keys(self, paths: Sequence[str]) -> list[bytes | OSError]:
        """The key of each file, or the ``OSError`` that stopped reading it. Objects in storage are
        stamped by size and ETag from one listing per folder, members of archives and cells of
        tables by their container's stamp (``object_stamps``). Sources whose bytes are
        ``served`` from memory are keyed from those bytes (the file may not be on this node)."""
        held = [served(p) for p in paths]
        if any(data is not None for data in held):
            rest = iter(self.keys([p for p, data in zip(paths, held) if data is None]))
            return [bytes_key(data) if data is not None else next(rest) for data in held]
        paths = [p if is_url(p) else os.path.abspath(p) for p in paths]
        names = [_memo_name(p) for p in paths]  # the memo's keys must be UTF-8 (a URL's or a container's too)
        stamps = object_stamps([p for p in paths if is_url(p)])
        stats: list[tuple | OSError | None] = []  # None: no stamp, not remembered
        for path in paths:
            if is_url(path):
                stats.append(stamps.get(path))
                continue
            try:
                st = os.stat(path)
                stats.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
            except OSError as err:
                stats.append(err)
        known = self._lookup(names)
        out: list[bytes | OSError] = []
        fresh = []
        for path, name, stat in zip(paths, names, stats):
            if isinstance(stat, OSError):
                out.append(stat)
                continue
            hit = known.get(name)
            if hit is not None and hit[0] == stat:
                out.append(hit[1])
                continue
            try:
                key = file_key(path)
            except (OSError, FeaturizerError) as err:
                out.append(err if isinstance(err, OSError) else OSError(str(err)))
                continue
            out.append(key)
            if stat is not None:
                fresh.append((name, *stat, key))
        self._store(fresh)
        return out

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS files "
            "(path TEXT PRIMARY KEY, size INT, mtime INT, ctime INT, ino INT, key BLOB)"
        )
        return db

    def _lookup(self, paths: Sequence[str]) -> dict[str, tuple[tuple, bytes]]:
        try:
            db = self._connect()
            found = {}
            for start in range(0, len(paths), 500):
                chunk = list(paths[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT path, size, mtime, ctime, ino, key FROM files WHERE path IN ({marks})", chunk
                )
                found.update((r[0], (tuple(r[1:5]), bytes(r[5]))) for r in rows)
            db.close()
            return found
        except sqlite3.Error as err:
            logging.getLogger(__name__).warning("file-key memo unreadable (%s); hashing every file", err)
            return {}

    def _store(self, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            db = self._connect()
            with db:
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.close()
        except sqlite3.Error as err:
            logging.getLogger(__name__).warning("could not update the file-key memo: %s", err)
