"""Augmented views of images: more rows for the head from the same labelled photos.

View ``v`` of an image is a random resized crop and a horizontal flip at random, the backbone's
own input size, interpolation and normalisation, drawn with a seed taken from the image's pixels
and ``v``: the same photo gives the same view wherever it lives, so views are cached like any
vector, each under its own spec (the preprocessing records the view).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import replace

import numpy as np
from PIL import Image

from featurizer.spec import FeatureSpec

# torchvision's RandomResizedCrop ratio and a milder scale than its training default (0.08-1):
# a frozen backbone describes what it sees, and a crop of 8% of a photo often shows no object at all.
AUGMENT = {"scale": [0.25, 1.0], "ratio": [3 / 4, 4 / 3], "flip": 0.5}


def view_spec(spec: FeatureSpec, view: int) -> FeatureSpec:
    """The spec of augmented view ``view`` (1, 2, ...) of ``spec``'s images."""
    if spec.modality != "image":
        raise ValueError("augmented views are for images")
    return replace(spec, preprocessing={**spec.preprocessing, "augment": {**AUGMENT, "view": int(view)}})


def augment_image(im: Image.Image, augment: dict, crop: int, interpolation) -> Image.Image:
    """Random resized crop to ``crop`` x ``crop`` and a flip at random, seeded by the pixels and the view."""
    seed = zlib.crc32(im.tobytes(), zlib.crc32(f"{im.size}{augment['view']}".encode()))
    rng = np.random.default_rng(seed)
    w, h = im.size
    box = (0, 0, w, h)
    lo, hi = (math.log(r) for r in augment["ratio"])
    for _ in range(10):  # torchvision's RandomResizedCrop: ten tries, then the centre crop that fits
        area = w * h * rng.uniform(*augment["scale"])
        ratio = math.exp(rng.uniform(lo, hi))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (left, top, left + cw, top + ch)
            break
    else:
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    im = im.resize((crop, crop), interpolation, box=box)
    if rng.random() < augment["flip"]:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return im
