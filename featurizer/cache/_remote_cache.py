"""A cache in object storage (``--cache-dir s3://...``): a local mirror, pulled before a run and pushed after.

Store shards are immutable files with names unique to the process that wrote them, so keeping
two copies in step is copying the names one side lacks: ``pull`` downloads the remote shards of
the spec's layers that the mirror lacks; ``push`` uploads the mirror's shards the remote lacks,
then deletes the remote shards that local compaction merged into an uploaded one (their vectors
are all in it). Several machines can share one remote cache: each only adds whole files, and a
shard another machine deleted is one whose vectors are in a file it uploaded first.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from featurizer.storage import download, filesystem, is_url, join, list_files, remove, upload

MIRRORS = "remote"  # under the local cache folder: one mirror per remote cache URL


def mirror_dir(url: str, local_cache: Path) -> Path:
    """The local folder that mirrors the remote cache ``url``."""
    return local_cache / MIRRORS / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


class RemoteCache:
    """The remote side of a mirrored cache: ``pull`` and ``push`` the store folders of some layers."""

    def __init__(self, url: str, mirror: Path):
        if not is_url(url):
            raise ValueError(f"not a URL: {url}")
        self.url, self.mirror = url.rstrip("/"), Path(mirror)
        self.seen: dict[Path, set[str]] = {}  # store folder -> remote shard names at the last sync

    def _remote(self, folder: Path) -> str:
        return join(self.url, folder.relative_to(self.mirror).as_posix())

    def _remote_names(self, folder: Path) -> set[str]:
        remote = self._remote(folder)
        fs, path = filesystem(remote)
        if not fs.exists(path):
            return set()
        return {name for name, _ in list_files(remote) if "/" not in name}

    def pull(self, folders: Iterable[Path]) -> int:
        """Download the remote files of each store folder that the mirror lacks; how many."""
        fetched = 0
        for folder in folders:
            names = self._remote_names(folder)
            self.seen[folder] = names
            folder.mkdir(parents=True, exist_ok=True)
            for name in sorted(names):
                if (name.startswith("shard-") or name == "spec.json") and not (folder / name).exists():
                    tmp = folder / f".tmp-pull-{name}"
                    download(join(self._remote(folder), name), tmp)
                    os.replace(tmp, folder / name)  # a shard appears in the mirror whole
                    fetched += 1
        return fetched

    def push(self, folders: Iterable[Path]) -> int:
        """Upload each store folder's shards the remote lacks, then drop remote shards merged away; how many up."""
        sent = 0
        for folder in folders:
            if not folder.is_dir():
                continue
            remote_names = self._remote_names(folder)
            local = {p.name for p in folder.glob("shard-*.h5")} | (
                {"spec.json"} if (folder / "spec.json").exists() else set()
            )
            for name in sorted(local - remote_names, key=lambda n: n != "spec.json"):
                upload(folder / name, join(self._remote(folder), name))
                sent += 1
            # shards this process saw remotely and pulled, that compaction merged into one just uploaded
            merged = {n for n in (self.seen.get(folder, set()) & remote_names) - local if n.startswith("shard-")}
            for name in sorted(merged):
                remove(join(self._remote(folder), name))
            self.seen[folder] = (remote_names | local) - merged
        return sent
