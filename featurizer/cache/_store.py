"""The embedding cache: content-addressed vectors of one layer spec, safe against crashes.

Each layer spec has a folder ``<cache>/store/<spec key>/``. Vectors arrive batch by batch; each
batch is written to a temporary HDF5 file and renamed into place as ``shard-*.h5`` only once it
is complete, so finished work never lives only inside a file that is still being written. A
``kill -9`` loses at most the batch in flight. Compaction merges shards into one the same way
(write, rename, then delete the merged shards); a crash between those steps leaves duplicate
keys, which lookups tolerate. Keys are SHA-256 digests of an item's content.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from featurizer.base import FeaturizerError
from featurizer.spec import FeatureSpec
from featurizer.storage import atomic_write_text, h5_output, stale_temp_files

log = logging.getLogger(__name__)

KEY_BYTES = 32  # SHA-256; stored as uint8 rows, since numpy bytes strings drop trailing NULs
CACHE_ENV = "FEATURIZER_CACHE"
DEFAULT_CACHE = "cache"
MAX_SHARDS = 32
STORE_LAYOUT = "store-v1"  # bump when the shard format changes
QUARANTINE = "quarantine"


class CacheDamaged(FeaturizerError):
    """A shard turned out damaged while its vectors were read; it is quarantined, its items must be recomputed."""


def default_cache_dir() -> Path:
    """``$FEATURIZER_CACHE`` if set, else ``./cache``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


class EmbeddingStore:
    """Vectors of one layer of a spec, keyed by content digest; append-only, shared by every command."""

    def __init__(self, cache_dir: str | os.PathLike, spec: FeatureSpec, layer: str):
        self.spec, self.layer = spec, layer
        self.dir = Path(cache_dir) / STORE_LAYOUT / spec.layer_key(layer)
        self._index: dict[bytes, tuple[str, int]] | None = None
        self._lock: int | None = None
        self.dim: int | None = None

    # -- sharing ------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take a shared lock for as long as this process reads or appends: compaction waits for none."""
        if self._lock is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = _flock(self.dir / ".lock", exclusive=False, wait=True)

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # -- reading --------------------------------------------------------------------------
    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.h5")) if self.dir.is_dir() else []

    def index(self) -> dict[bytes, tuple[str, int]]:
        """Key -> (shard file name, row), read from every complete shard; damaged shards are moved aside."""
        if self._index is None:
            self._index = {}
            for shard in self._shards():
                try:
                    with h5py.File(shard, "r") as f:
                        keys = _unpack_keys(f["keys"][:])
                        shape = f["vectors"].shape
                    if len(shape) != 2 or shape[0] != len(keys):
                        raise OSError(f"{len(keys)} keys but vectors of shape {shape}")
                except FileNotFoundError:  # compacted away since the listing
                    continue
                except (OSError, KeyError, ValueError) as err:  # damaged outside our control
                    self.quarantine(shard, err)
                    continue
                self.dim = int(shape[1])
                self._index.update((bytes(k), (shard.name, row)) for row, k in enumerate(keys))
        return self._index

    def quarantine(self, shard: Path, err: BaseException) -> None:
        """Move a damaged shard into ``quarantine/`` (its items are then computed again) with a one-line note."""
        target = self.dir / QUARANTINE / shard.name
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(shard, target)
        except FileNotFoundError:
            return  # another process moved it first
        except OSError:
            pass  # cannot move it (read-only cache): it stays ignored all the same
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        log.warning(
            "cache shard %s is damaged (%s): moved to %s; its items will be computed again", shard, reason, target
        )

    def has(self, keys: Iterable[bytes]) -> list[bool]:
        index = self.index()
        return [k in index for k in keys]

    def get(self, keys: Sequence[bytes], _retry: bool = True) -> np.ndarray:
        """Vectors of ``keys`` (all of which must be present), in the order given."""
        index = self.index()
        where = [index[k] for k in keys]
        out = np.empty((len(keys), self.dim or 0), dtype=np.float32)
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for pos, (shard, row) in enumerate(where):
            by_shard.setdefault(shard, []).append((row, pos))
        for shard, pairs in by_shard.items():
            pairs.sort()
            rows = np.fromiter((r for r, _ in pairs), dtype=np.int64, count=len(pairs))
            positions = np.fromiter((p for _, p in pairs), dtype=np.int64, count=len(pairs))
            unique_rows, inverse = np.unique(rows, return_inverse=True)
            try:
                with h5py.File(self.dir / shard, "r") as f:
                    out[positions] = f["vectors"][unique_rows][inverse]
            except FileNotFoundError:  # compacted by another process since the index was read
                self._index = None
                if _retry:
                    return self.get(keys, _retry=False)
                raise
            except (OSError, KeyError, ValueError) as err:
                self.quarantine(self.dir / shard, err)
                self._index = None
                raise CacheDamaged(f"cache shard {shard} was damaged; it was moved aside") from None
        return out

    # -- writing --------------------------------------------------------------------------
    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store one batch atomically: it is either entirely in the cache or not at all."""
        if len(keys) == 0:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_spec()
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.h5"
        self._write_shard(self.dir / name, _pack_keys(keys), [vectors])
        self.dim = vectors.shape[1]
        if self._index is not None:
            self._index.update((bytes(k), (name, row)) for row, k in enumerate(keys))

    def _write_spec(self) -> None:
        path = self.dir / "spec.json"
        if not path.exists():
            atomic_write_text(path, json.dumps(self.spec.layer_identity(self.layer), indent=1, sort_keys=True))

    def _write_shard(self, path: Path, keys: np.ndarray, blocks: Iterable[np.ndarray], size_hint: int = 0) -> None:
        with h5_output(path, size_hint, prefix=".tmp-") as f:
            f.create_dataset("keys", data=keys)
            offset = 0
            dset = None
            for block in blocks:
                if dset is None:
                    dset = f.create_dataset("vectors", shape=(len(keys), block.shape[1]), dtype=np.float32)
                dset[offset : offset + len(block)] = block
                offset += len(block)

    def compact(self, max_shards: int = MAX_SHARDS) -> bool:
        """Merge all shards into one when there are more than ``max_shards``; True if merged.

        Only when no other process holds the store (it may be reading the shards); else skipped.
        """
        if len(self._shards()) <= max_shards:
            return False
        self.release()
        lock = _flock(self.dir / ".lock", exclusive=True, wait=False)
        if lock is None:
            return False
        try:
            return self._merge()
        finally:
            os.close(lock)

    def _merge(self) -> bool:
        for leftover in self.dir.glob(".tmp-*"):  # from killed writers: nobody else holds the store now
            leftover.unlink(missing_ok=True)
        shards = self._shards()
        keys, seen = [], set()
        for shard in shards:
            with h5py.File(shard, "r") as f:
                keys.append(f["keys"][:])
        all_keys = np.concatenate(keys)
        first = np.array([k not in seen and not seen.add(k) for k in _unpack_keys(all_keys)], dtype=bool)

        def blocks():
            start = 0
            for shard, block_keys in zip(shards, keys):
                keep = first[start : start + len(block_keys)]
                start += len(block_keys)
                if keep.any():
                    with h5py.File(shard, "r") as f:
                        yield f["vectors"][:][keep]

        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.h5"
        size = int(first.sum()) * (KEY_BYTES + 4 * (self.dim or 0))
        self._write_shard(self.dir / name, all_keys[first], blocks(), size)
        for shard in shards:
            shard.unlink(missing_ok=True)
        self._index = None
        return True


def _pack_keys(keys: Sequence[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)


def _unpack_keys(packed: np.ndarray) -> list[bytes]:
    raw = packed.tobytes()
    return [raw[i : i + KEY_BYTES] for i in range(0, len(raw), KEY_BYTES)]


def _flock(path: Path, exclusive: bool, wait: bool, per_process: bool = False) -> int | None:
    """An open descriptor holding a lock on ``path``; ``None`` if ``wait`` is false and it is taken.

    ``per_process`` takes a POSIX record lock, which forked children (decoding workers) do not
    inherit, so it ends when this process closes it, whatever the workers do; the default BSD lock
    is shared with forked children for as long as they live.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): concurrent runs are the user's to avoid
        return fd
    try:
        if per_process:
            fcntl.lockf(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        else:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
    except (BlockingIOError, PermissionError):  # lockf reports a taken lock as EACCES on some systems
        os.close(fd)
        return None
    return fd


_HELD: dict[int, str] = {}  # output locks this process holds: descriptor -> lock name
_HELD_GUARD = threading.Lock()


def release_output(fd: int) -> None:
    """Let go of an output taken with ``lock_output``."""
    with _HELD_GUARD:
        _HELD.pop(fd, None)
        os.close(fd)


def lock_output(path: Path) -> int:
    """Claim a feature file for writing; a second writer is refused with a clear message.

    The lock file lives in the system's temporary folder, named by the output's absolute path, so
    nothing is left beside the outputs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    locks = Path(tempfile.gettempdir()) / "featurizer-locks"
    locks.mkdir(exist_ok=True)
    name = hashlib.sha256(str(path.resolve()).encode("utf-8", errors="surrogatepass")).hexdigest()[:32]
    with _HELD_GUARD:  # a POSIX lock excludes other processes; this set, other runs in this one
        fd = None if name in _HELD.values() else _flock(locks / f"{name}.lock", True, False, per_process=True)
        if fd is None:
            raise FeaturizerError(f"another run is writing {path}; wait for it to finish or choose another -o")
        _HELD[fd] = name
    for stale in stale_temp_files(path):  # left by a killed writer; we hold the lock now
        stale.unlink(missing_ok=True)
    return fd
