"""Whether the model zoos can be reached, decided once per process.

Without a network, timm, torchvision and transformers retry downloads for tens of seconds before
failing. One short connection attempt tells us first; offline, Hugging Face libraries are told to
use their local cache only, and a model that is not there fails at once with a clear message.
"""

from __future__ import annotations

import os
import socket
import sys
from functools import lru_cache

from featurizer.base import FeaturizerError

PROBE_HOST = ("huggingface.co", 443)
PROBE_SECONDS = 3.0


@lru_cache(maxsize=1)
def offline() -> bool:
    """True when the zoos cannot be reached (or ``HF_HUB_OFFLINE`` says so); sets ``HF_HUB_OFFLINE`` then."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True
    try:
        socket.create_connection(PROBE_HOST, timeout=PROBE_SECONDS).close()
        return False
    except OSError:
        _go_offline()
        return True


def _go_offline() -> None:
    """Hugging Face libraries read only their local cache from now on (cached models load at once)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub = sys.modules.get("huggingface_hub")
    if hub is not None:  # imported already: it read the variable at import, so set its constant too
        hub.constants.HF_HUB_OFFLINE = True


def not_cached(what: str, err: BaseException | None = None) -> FeaturizerError:
    """The error for a download that cannot happen: offline, and not in the local cache."""
    if offline():
        return FeaturizerError(
            f"no network to download {what}, and the local download cache does not hold it; connect once, "
            "pass --weights with a local file, or use a built-in model ('xfer models')"
        )
    detail = str(err).splitlines()[0] if err else "download failed"
    return FeaturizerError(f"cannot download {what}: {detail}")
