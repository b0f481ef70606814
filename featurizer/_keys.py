"""Content digests: the cache key of an item is the SHA-256 of what it is, not of its name."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

_BUFFER = 1 << 20


def file_key(path: str) -> bytes:
    """Digest of a file's bytes (a renamed or copied file keeps its key)."""
    digest = hashlib.sha256(b"file\0")
    with open(path, "rb") as f:
        while chunk := f.read(_BUFFER):
            digest.update(chunk)
    return digest.digest()


def text_key(text: str) -> bytes:
    return hashlib.sha256(b"text\0" + text.encode("utf-8", errors="surrogatepass")).digest()


def array_key(image: np.ndarray | Image.Image) -> bytes:
    """Digest of decoded pixels, with their shape and type, for images given in memory."""
    array = np.ascontiguousarray(np.asarray(image))
    digest = hashlib.sha256(f"array\0{array.shape}\0{array.dtype.str}\0".encode())
    digest.update(array.data)
    return digest.digest()
