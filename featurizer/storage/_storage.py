"""Where paths may be URLs: local paths and ``file://``, or any fsspec protocol (``s3://``, ``gs://``).

The one place that talks to object storage. A location is one type: ``location`` makes a URL a
``Url`` and anything else a ``Path``, and both answer the same questions (``/``, ``name``,
``parent``, ``with_name``, ``is_file``, ``read_bytes``, ``read_text``), so callers need not ask
``is_url``. These functions turn the backends' exceptions into one-line messages: a bucket that does not
exist, missing credentials (named by where they are looked for, never printed), a missing
package. Credentials come from the backends' own environment and configuration files.

Object stores have no rename, so a file is published by uploading it to a temporary key,
checking its size there, then copying it to its key (one server-side copy, which readers see
whole or not at all) and deleting the temporary key.
"""

from __future__ import annotations

import functools
import io
import os
import posixpath
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import IO

from featurizer.base import FeaturizerError, InputError, MissingPackageError

# the package each protocol needs, for the message when it is missing
BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials or an instance role",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS or gcloud's default credentials",
}


# an image held as bytes in a Parquet file: parquet-cell://ROW/COLUMN::FILE (featurizer._inputs)
PARQUET_SOURCE = "parquet-cell://"


# a member of a tar shard: tar://MEMBER::SHARD (as fsspec writes it; read here by offset)
TAR_SOURCE = "tar://"
TAR_BLOCK = 512


def tar_source(member: str, shard: str) -> str:
    """The source of a member of a tar shard."""
    return f"{TAR_SOURCE}{member}::{shard}"


class StorageError(FeaturizerError):
    """Object storage refused or failed a request (missing bucket, credentials, permission)."""


def is_url(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` names something fsspec must reach (``s3://``, ``tar://m::s3://``); ``file://`` is local."""
    if path is None or isinstance(path, Path):
        return False
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


class Url(str):
    """A URL that answers the path questions asked of a command's arguments (``name``, ``stem``,
    ``suffix``, ``parent``, ``with_name``, ``with_suffix``, ``resolve``) as a path would, and stays
    a URL (text: ``is_url`` and fsspec take it as it is)."""

    def _split(self) -> tuple[str, PurePosixPath]:
        scheme, rest = self.split("://", 1)
        return scheme, PurePosixPath(rest.rstrip("/"))

    def _with(self, path: PurePosixPath) -> Url:
        return Url(f"{self._split()[0]}://{path}")

    name = property(lambda self: self._split()[1].name)
    stem = property(lambda self: self._split()[1].stem)
    suffix = property(lambda self: self._split()[1].suffix)
    parent = property(lambda self: self._with(self._split()[1].parent))

    def with_name(self, name: str) -> Url:
        return self._with(self._split()[1].with_name(name))

    def with_suffix(self, suffix: str) -> Url:
        return self._with(self._split()[1].with_suffix(suffix))

    def resolve(self) -> Url:
        return self

    def __truediv__(self, part: str) -> Url:
        return Url(posixpath.join(self.rstrip("/"), part))

    def exists(self) -> bool:
        return exists(self)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to make: an object store's folders are prefixes of the objects in them."""

    def is_file(self) -> bool:
        return exists(self)  # an object store has objects (files) and prefixes that exist through them

    def read_bytes(self) -> bytes:
        return read_bytes(self)

    def read_text(self, encoding: str = "utf-8") -> str:
        return read_bytes(self).decode(encoding)


def same_location(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two names are one file: the same URL, or the same local file (links and case included)."""
    if is_url(a) or is_url(b):
        return absolute(a) == absolute(b)
    try:
        return os.path.samefile(local_path(a), local_path(b))
    except OSError:
        return False


def location(path: str | os.PathLike) -> Path | Url:
    """A location as one type: a URL as a ``Url``, anything else a ``Path`` (``file://`` stripped)."""
    if isinstance(path, (Path, Url)):
        return path
    return Url(os.fspath(path)) if is_url(path) else Path(local_path(path))


def local_path(path: str | os.PathLike) -> str | os.PathLike:
    """``file://`` stripped; other paths unchanged."""
    text = os.fspath(path)
    return text[len("file://") :] if text.startswith("file://") else path


def absolute(path: str | os.PathLike) -> str:
    """How a location is named in files and reports: a URL as given, a local path resolved."""
    return str(path) if is_url(path) else str(Path(local_path(path)).resolve())


def protocol(url: str) -> str:
    return url.split("://", 1)[0].rsplit("::", 1)[-1]


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a backend's exception about ``url`` into a one-line ``FeaturizerError``."""
    proto = protocol(url)
    try:
        yield
    except FeaturizerError:
        raise
    except ImportError as err:
        package = BACKENDS.get(proto, f"an fsspec backend for {proto}://")
        raise MissingPackageError(
            f"{url}: reading {proto}:// needs {package} (pip install 'featurizer[cloud]'): {err}"
        ) from None
    except FileNotFoundError as err:
        text = str(err)
        if "bucket" in text.lower():
            bucket = url.split("://", 1)[1].split("/", 1)[0]
            raise InputError(f"{url}: the bucket {bucket!r} does not exist (or is not visible to you)") from None
        raise InputError(f"not found: {url}") from None
    except PermissionError:
        raise StorageError(f"{url}: access denied (check the credentials' permissions on it)") from None
    except Exception as err:
        name = type(err).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"):
            where = CREDENTIALS.get(proto, "the backend's usual configuration")
            raise StorageError(f"{url}: no credentials for {proto}:// found (looked in {where})") from None
        if name in ("ClientError", "EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"):
            # the backend's own one-line reason, which names no secret
            raise StorageError(f"{url}: {name}: {str(err).splitlines()[0][:200]}") from None
        raise


def filesystem(url: str):
    """(fsspec filesystem, path within it) for ``url``."""
    with storage_errors(url):
        import fsspec.core

        return fsspec.core.url_to_fs(url)


# bytes already fetched for some sources (by Ray Data's readers): see served_from_memory
_SERVED: dict[str, bytes] = {}


@contextmanager
def served_from_memory(payloads: Mapping[str, bytes]) -> Iterator[None]:
    """Within it, these sources are not read: ``open_source`` and ``served`` give their bytes.

    The Ray engine's actors receive items' bytes from Ray Data's readers and open no source
    themselves (a node of a cluster may not see the driver's disk). Decoding must run in this
    process (or in workers forked inside the block), where the bytes are.
    """
    before = {source: _SERVED[source] for source in payloads if source in _SERVED}
    _SERVED.update(payloads)
    try:
        yield
    finally:
        for source in payloads:
            _SERVED.pop(source, None)
        _SERVED.update(before)


def served(source: str | os.PathLike) -> bytes | None:
    """The bytes ``served_from_memory`` holds for ``source``, if any."""
    return _SERVED.get(os.fspath(source)) if _SERVED else None


_SOURCE_READERS: dict[str, Callable[[str], bytes]] = {}


def register_source_reader(prefix: str, read: Callable[[str], bytes]) -> None:
    """Let ``open_source`` read sources that start with ``prefix`` through ``read`` (a room above
    storage registers the readers it owns, so storage never imports it)."""
    _SOURCE_READERS[prefix] = read


def open_source(source: str | os.PathLike) -> IO[bytes]:
    """A binary file object for an item's source: a local path, a URL, or a chained URL such as
    ``tar://member::s3://bucket/shard.tar`` (a member of an archive)."""
    held = served(source)
    if held is not None:
        return io.BytesIO(held)
    if not is_url(source):
        return open(local_path(source), "rb")
    for prefix, read in _SOURCE_READERS.items():  # cells of tables (featurizer._parquetio)
        if str(source).startswith(prefix):
            return io.BytesIO(read(str(source)))
    if str(source).startswith(TAR_SOURCE):
        member, shard = member_of(str(source))
        offset, size = tar_index(shard)[member]
        return io.BytesIO(read_range(shard, offset, size))
    return _open_url(str(source))


def _open_url(url: str) -> IO[bytes]:
    """A request to the store: every read of an object's bytes goes through here."""
    with storage_errors(url):
        import fsspec

        return fsspec.open(url, "rb").open()


# objects read whole to key them, kept for their decode: see keeping_reads
_KEEPING: dict = {}
KEEP_BYTES = 256 * 2**20


@contextmanager
def keeping_reads(budget: int | None = None) -> Iterator[None]:
    """Within it, objects read by ``read_object`` (to key them by content) are kept, up to
    ``budget`` bytes in all (``KEEP_BYTES``), and ``open_source`` serves them again (to decode them, here or in
    workers forked inside the block): a new object in storage costs one request, not two."""
    kept: set[str] = set()
    before = dict(_KEEPING)  # an enclosing block keeps its own
    _KEEPING.update(left=KEEP_BYTES if budget is None else budget, kept=kept)
    try:
        yield
    finally:
        _KEEPING.clear()
        _KEEPING.update(before)
        for source in kept:
            _SERVED.pop(source, None)


def read_object(url: str) -> bytes:
    """The whole of an object in storage (or of a member of an archive there); kept while
    ``keeping_reads`` has room."""
    held = served(url)
    if held is not None:
        return held
    with open_source(url) as f:
        data = f.read()
    kept, left = _KEEPING.get("kept"), _KEEPING.get("left", 0)
    if kept is not None and len(data) <= left:
        _SERVED[url] = data
        kept.add(url)
        _KEEPING["left"] = left - len(data)
    return data


def read_range(source: str, offset: int, size: int) -> bytes:
    """``size`` bytes of a file (local or a URL) from ``offset``: one ranged request for a URL."""
    if not is_url(source):
        with open(local_path(source), "rb") as f:
            f.seek(offset)
            return f.read(size)
    fs, path = filesystem(source)
    with storage_errors(source):
        return fs.cat_file(path, start=offset, end=offset + size)


class TarIndex(dict):
    """Name -> (offset of its data, size) of a tar shard's regular files, in order. ``repeated``:
    some name appears more than once (the last one counts here)."""

    repeated: bool = False


def tar_index(shard: str) -> TarIndex:
    """Name -> (offset of its data, size) of every regular file of a tar shard, in order, read from
    the headers alone (once per process while a local shard keeps its size and time). A shard cut
    short is refused: its last member's data, or the two zero blocks every tar writer ends with,
    are missing."""
    stamp = None
    if not is_url(shard):
        st = os.stat(local_path(shard))
        stamp = (st.st_size, st.st_mtime_ns)
    return _tar_index(shard, stamp)


@functools.lru_cache(maxsize=64)
def _tar_index(shard: str, stamp) -> TarIndex:
    import tarfile

    cut = f"{shard}: the tar shard is cut short (its end is missing); write it again"

    with open_source(shard) as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(0)
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                members = tar.getmembers()
                end = tar.offset
        except (tarfile.TarError, EOFError) as err:
            if "end of data" in str(err) or "truncated" in str(err) or isinstance(err, EOFError):
                raise InputError(cut) from None
            raise InputError(f"{shard}: not a readable tar shard ({err})") from None
    last = max((m.offset_data + m.size for m in members), default=0)
    if last > size or end + 2 * TAR_BLOCK > size:
        raise InputError(cut)
    files = [m for m in members if m.isfile()]
    index = TarIndex((m.name, (m.offset_data, m.size)) for m in files)
    index.repeated = len(index) < len(files)
    return index


def _fresh(url: str):
    """(filesystem, path) with the backend's cached listings of the path dropped: other processes
    (Ray actors, an earlier run) write the same prefixes, and a stale listing would hide their files."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    return fs, path


def read_bytes(url: str) -> bytes:
    fs, path = _fresh(url)
    with storage_errors(url):
        return fs.cat_file(path)


def exists(url: str) -> bool:
    fs, path = _fresh(url)
    with storage_errors(url):
        return fs.exists(path)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base`` and relative parts joined with ``/`` (URLs) or the OS's separator (local paths), as text."""
    return posixpath.join(base, *parts) if is_url(base) else os.path.join(base, *parts)


def member_of(source: str) -> tuple[str, str] | None:
    """(the member's name or the cell's ``ROW/COLUMN``, the file that holds it) of a member of an
    archive or a cell of a table; None for anything else."""
    for prefix in (TAR_SOURCE, PARQUET_SOURCE):
        if source.startswith(prefix):
            part, container = source[len(prefix) :].split("::", 1)
            return part, container
    return None


def container_of(source: str) -> str | None:
    """The file that holds a member of an archive or a cell of a table; None for anything else."""
    member = member_of(source)
    return None if member is None else member[1]


def object_stamps(urls: list[str]) -> dict[str, tuple[int, int, int, int]]:
    """What the file-key memo compares for sources in storage, instead of a local file's size and
    times: ``(size, digest of the ETag, 0, 0)`` of plain objects, from one listing per folder; a
    member of an archive or a cell of a table, its container's stamp and its own name (a container
    that changes re-keys its members). Objects the listing does not show are left out."""
    containers = {url: container_of(url) for url in urls}
    outer = {c for c in containers.values() if c is not None}
    stamps = _listed_stamps([u for u, c in containers.items() if c is None] + [c for c in outer if is_url(c)])
    for container in outer - set(stamps):
        with suppress(OSError):
            st = os.stat(local_path(container))
            stamps[container] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    for url, container in containers.items():
        if container in stamps:
            stamps[url] = (stamps[container][0], _digest(f"{stamps[container]}\0{url}"), 0, 0)
    return {url: stamps[url] for url in urls if url in stamps}


def _digest(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()[:7], "big")


def _listed_stamps(urls: list[str]) -> dict[str, tuple[int, int, int, int]]:
    by_folder: dict[str, list[str]] = {}
    for url in urls:
        by_folder.setdefault(posixpath.dirname(url), []).append(url)
    stamps = {}
    for folder in by_folder:
        try:
            fs, path = _fresh(folder)
            with storage_errors(folder):
                listing = fs.ls(path, detail=True)
        except (FeaturizerError, OSError):
            continue
        scheme = folder.split("://", 1)[0]
        for info in listing:
            tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified")
            if info.get("type") == "file" and tag is not None:
                stamps[f"{scheme}://{info['name']}"] = (int(info.get("size") or 0), _digest(str(tag)), 0, 0)
    return {url: stamps[url] for url in urls if url in stamps}


def list_files(url: str) -> list[tuple[str, int]]:
    """(path relative to ``url``, size) of every object under the folder ``url``, in name order."""
    fs, root = _fresh(url)
    with storage_errors(url):
        if not fs.exists(root):
            fs.ls(root)  # the backend says why: a missing bucket, no credentials
            raise InputError(f"input not found: {url}")
        found = fs.find(root, detail=True)
    root = root.rstrip("/")
    out = [(name[len(root) + 1 :], info.get("size") or 0) for name, info in found.items() if info["type"] == "file"]
    return sorted((rel, size) for rel, size in out if rel)


def staging_dir() -> Path:
    """A local folder for files on their way to or from object storage."""
    path = Path(tempfile.gettempdir()) / "featurizer-staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload(local: str | os.PathLike, url: str) -> None:
    """Publish the local file ``local`` at ``url``: to a temporary key, size checked, then copied to
    its key, so a reader never sees part of it."""
    fs, path = filesystem(url)
    size = os.path.getsize(local)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with storage_errors(url):
        try:
            fs.put_file(os.fspath(local), tmp)
            if fs.info(tmp).get("size") != size:
                raise StorageError(f"{url}: the upload arrived incomplete; try again")
            fs.copy(tmp, path)
        finally:
            with suppress(FileNotFoundError):
                fs.rm_file(tmp)


def upload_folder(local: Path, url: str) -> None:
    """Publish every file of the local folder at ``url``/..., each as ``upload`` does."""
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        upload(file, join(url, file.relative_to(local).as_posix()))


def download(url: str, local: str | os.PathLike) -> None:
    fs, path = filesystem(url)
    with storage_errors(url):
        fs.get_file(path, os.fspath(local))


def remove(url: str) -> None:
    fs, path = filesystem(url)
    with storage_errors(url):
        if fs.exists(path):
            fs.rm(path, recursive=True)
