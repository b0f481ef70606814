"""Demo data that needs no download: scikit-learn's bundled digits written out as image folders.

``python -m pipelines.demo_data OUT`` writes ``OUT/train/<digit>/*.png`` and ``OUT/test/<digit>/*.png``
(8x8 scans upscaled to 32x32 grayscale PNGs), the ImageFolder layout that ``xfer featurize`` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(
    root: str | Path, per_class: int | None = None, test_fraction: float = 0.3, size: int = 32, seed: int = 0
) -> Path:
    """Write the digits as PNGs in ``root/train`` and ``root/test``; ``per_class`` caps each class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    root = Path(root)
    for label in range(10):
        rows = rng.permutation(np.flatnonzero(digits.target == label))[:per_class]
        n_test = max(1, round(len(rows) * test_fraction))
        for split, chosen in (("test", rows[:n_test]), ("train", rows[n_test:])):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for row in chosen:
                pixels = (digits.images[row] * (255.0 / 16.0)).astype(np.uint8)
                image = Image.fromarray(255 - pixels).resize((size, size), Image.Resampling.NEAREST)
                image.save(folder / f"{row:04d}.png")
    return root


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", default="demo/digits")
    parser.add_argument("--per-class", type=int, help="images per digit (default: all, about 180)")
    args = parser.parse_args()
    out = write_digits(args.out, per_class=args.per_class)
    print(f"wrote {sum(1 for _ in out.rglob('*.png'))} digit images under {out}")
