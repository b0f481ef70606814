"""HDF5 files written so that a full disk ends in an error, never a crash.

HDF5 cannot recover from a failed write: h5py then raises while closing and may crash the process
in its finaliser (seen here: a segmentation fault when the file-size limit was hit). So files of
moderate size are built in memory and written to disk with plain Python writes, which fail with an
ordinary ``OSError``; larger ones are written in place after checking that the disk has room for
them. Either way the file appears under its name only when complete (``atomic_path``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from featurizer.storage._atomic import atomic_path

IN_MEMORY_BYTES = 256 << 20  # files expected below this are built in memory
HEADROOM = 1.1  # HDF5's own bookkeeping on top of the data


def check_room(path: Path, needed: int) -> None:
    """Refuse, before writing, a file the disk (or the process's file-size limit) cannot hold."""
    free = shutil.disk_usage(path.parent).free
    limit = _file_size_limit()
    if needed * HEADROOM > min(free, limit):
        room = min(free, limit)
        raise OSError(
            errno.ENOSPC,
            f"not enough room to write {path}: about {needed / 2**20:.0f} MiB needed, {room / 2**20:.0f} MiB available",
        )


def _file_size_limit() -> float:
    try:
        import resource
    except ImportError:
        return float("inf")
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return float("inf") if soft == resource.RLIM_INFINITY else float(soft)


class H5Output:
    """An HDF5 file in the making: ``file`` to fill, ``commit()`` to write it whole under ``path``."""

    def __init__(self, path: str | os.PathLike, size_hint: int = 0, prefix: str = "."):
        self.path, self.prefix = Path(path), prefix
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._buffer: io.BytesIO | None = None
        self._atomic = None
        if size_hint < IN_MEMORY_BYTES:
            self._buffer = io.BytesIO()
            self.file = h5py.File(self._buffer, "w")
        else:
            check_room(self.path, size_hint)
            self._atomic = atomic_path(self.path, prefix)
            self.file = h5py.File(self._atomic.__enter__(), "w")

    def commit(self) -> Path:
        self.file.close()
        if self._buffer is not None:
            with atomic_path(self.path, self.prefix) as tmp, open(tmp, "wb") as out:
                out.write(self._buffer.getbuffer())
            self._buffer = None
        else:
            self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # closing a file whose writes failed raises again; it is dropped anyway
            self.file.close()
        if self._atomic is not None:
            self._atomic.__exit__(OSError, OSError(), None)
        self._buffer = None


@contextmanager
def h5_output(path: str | os.PathLike, size_hint: int = 0, prefix: str = ".") -> Iterator[h5py.File]:
    """``H5Output`` as a context manager: committed on success, dropped on any exception."""
    out = H5Output(path, size_hint, prefix)
    try:
        yield out.file
    except BaseException as err:
        out.abort()
        raise as_os_error(err, out.path) from None
    out.commit()


def as_os_error(err: BaseException, path: Path) -> BaseException:
    """h5py reports a failed write (a full disk) as a RuntimeError: make it the OSError it is."""
    if isinstance(err, RuntimeError) and ("write failed" in str(err) or "errno" in str(err)):
        return OSError(errno.EIO, f"cannot write {path}: {str(err).splitlines()[0]}")
    return err
