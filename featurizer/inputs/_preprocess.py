"""Turning raw inputs into model inputs exactly as the backbone saw them in pretraining.

Images: decode, apply EXIF rotation, RGB, resize the short side, centre-crop, normalise
(timm's and torchvision's evaluation transforms, read from each model's config). Texts: the
model's own tokenizer with truncation at its maximum length and dynamic padding per batch.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from featurizer.inputs._augment import augment_image
from featurizer.storage import file_sha256_memo, open_source

_PIL_INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def image_sizes(prep: dict) -> tuple[int, int]:
    """(short side after resize, crop size) from a timm-style data config."""
    crop = int(prep["input_size"][-1])
    if "resize" in prep:
        return int(prep["resize"]), crop
    if prep.get("crop_mode", "center") != "center":
        raise ValueError(f"crop mode {prep['crop_mode']!r} is not supported; only 'center'")
    return math.floor(crop / float(prep.get("crop_pct", 1.0))), crop


def load_image(path: str | os.PathLike, draft_short_side: int | None = None) -> Image.Image:
    """Open an image as RGB, rotated upright by its EXIF orientation; the first frame of animations.

    With ``draft_short_side``, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that
    keeps its short side at least that long: much faster for photos far larger than the model input.
    """
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that: refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with open_source(path) as f, Image.open(f) as im:
            if draft_short_side and im.format == "JPEG":
                w, h = im.size
                scale = draft_short_side / min(w, h)
                if scale < 0.5:  # draft keeps both sides >= the requested size
                    im.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
            return to_rgb(ImageOps.exif_transpose(im))


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: transparency over white, 16-bit and float images scaled, CMYK converted."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(im, dtype=np.float32)
        top = 255.0 if pixels.max(initial=0) <= 255 else 65535.0 if im.mode != "F" else float(pixels.max())
        im = Image.fromarray(np.clip(pixels * (255.0 / top), 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return im.convert("RGB")


@dataclass(frozen=True)
class ImageTransform:
    """Decode-and-transform for one image, picklable so that decoding runs in worker processes."""

    prep: dict

    def __call__(self, image: str | os.PathLike | Image.Image | np.ndarray) -> np.ndarray:
        """A float32 array of shape (3, crop, crop), normalised with the model's mean and std."""
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        resize, crop = image_sizes(self.prep)
        if isinstance(image, Image.Image):
            im = to_rgb(image)
        else:
            im = load_image(image, resize if self.prep.get("jpeg_draft") else None)
        interpolation = _PIL_INTERPOLATION[self.prep.get("interpolation", "bilinear")]
        if "augment" in self.prep:  # an augmented view (featurizer._augment): crop, flip, then normalise
            return self._normalise(augment_image(im, self.prep["augment"], crop, interpolation))
        w, h = im.size
        scale = resize / min(w, h)
        # Same rounding as torchvision's Resize(int) used by timm and torchvision transforms.
        size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
        if scale != 1 or (w, h) != size:
            im = im.resize(size, interpolation)
        left = int(round((size[0] - crop) / 2.0))
        top = int(round((size[1] - crop) / 2.0))
        if size[0] < crop or size[1] < crop:
            im = ImageOps.pad(im, (max(crop, size[0]), max(crop, size[1])), color=(0, 0, 0), centering=(0.5, 0.5))
            left, top = (im.size[0] - crop) // 2, (im.size[1] - crop) // 2
        return self._normalise(im.crop((left, top, left + crop, top + crop)))

    def _normalise(self, im: Image.Image) -> np.ndarray:
        x = np.asarray(im, dtype=np.float32) * (1.0 / 255.0)
        mean = np.asarray(self.prep["mean"], dtype=np.float32)
        std = np.asarray(self.prep["std"], dtype=np.float32)
        return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


# --- Text ---------------------------------------------------------------------------------

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "vocab.json")


def text_preprocessing(folder: str | os.PathLike) -> dict:
    """Tokenizer identity and maximum length of a local Hugging Face model folder, read from its files.

    The maximum length is the sentence-transformers ``max_seq_length`` when the folder has one
    (the length the model was trained for), else the tokenizer's, capped by the position table.
    """
    folder = Path(folder)
    config = read_json(folder / "config.json")
    tok_config = read_json(folder / "tokenizer_config.json")
    st_config = read_json(folder / "sentence_bert_config.json")
    limits = [config.get("max_position_embeddings", 512), tok_config.get("model_max_length", 10**9)]
    if "max_seq_length" in st_config:
        limits.append(st_config["max_seq_length"])
    files = [folder / n for n in _TOKENIZER_FILES if (folder / n).is_file()]
    return {
        "tokenizer": file_sha256_memo(files[0]) if files else None,
        "max_length": int(min(limits)),
        "lowercase": bool(tok_config.get("do_lower_case", False)),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def pad_token_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to the longest in the batch: (input_ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask
