"""Pictures the commands write: matplotlib without a display, saved whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from featurizer.storage import PNG_SOFTWARE, atomic_path, claim


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG under a temporary name, rename it into place, and close it; the PNG
    names featurizer as its software, which is how a later run knows it may replace it."""

    claim(path, kind="picture")  # never over an input, nor over a picture xfer did not draw
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png", metadata={"Software": PNG_SOFTWARE})
    pyplot().close(fig)
    return Path(path)
