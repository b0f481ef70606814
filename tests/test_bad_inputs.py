"""Messy real-world inputs: each converts correctly or becomes a per-item error; the counts add up."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from featurizer import FeatureFile, ItemError, featurize
from featurizer.inputs._inputs import read_inputs, texts_as_inputs

PHOTO = load_sample_image("china.jpg")  # 427 x 640 RGB


def jpeg_bytes(array: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def messy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    good = jpeg_bytes(PHOTO)
    (root / "good.jpg").write_bytes(good)
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "corrupt.jpg").write_bytes(
        good[:200] + bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
    )
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image")
    rgba = np.dstack([PHOTO, np.full(PHOTO.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    Image.fromarray(PHOTO).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png")
    gray = np.asarray(Image.fromarray(PHOTO).convert("L"))
    Image.fromarray(gray).save(root / "gray.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(root / "gray16.png")  # 16-bit, same picture
    Image.fromarray(PHOTO).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": pixels stored rotated
    Image.fromarray(np.rot90(PHOTO, k=1)).save(root / "exif_rotated.jpg", exif=exif, quality=90)
    frames = [Image.fromarray(PHOTO), Image.fromarray(255 - PHOTO)]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.fromarray(PHOTO[:1, :1]).save(root / "tiny.png")
    Image.fromarray(PHOTO).resize((4000, 2667)).save(root / "large.jpg", quality=85)
    Image.new("L", (5000, 5000)).save(root / "bomb.png")  # 25 M pixels, over twice the limit set below
    return root


BAD = {"truncated.jpg", "corrupt.jpg", "empty.jpg", "text.jpg", "bomb.png"}


def test_every_bad_image_has_a_reason_and_every_good_one_a_vector(messy_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12_000_000)  # large.jpg has 10.7 M pixels, bomb.png 25 M
    out = tmp_path / "f.h5"
    report = featurize(
        messy_dir,
        output=out,
        cache_dir=tmp_path / "c",
        progress=False,
        workers=0,
        extensions=[".jpg", ".png", ".gif"],
    )
    failed = dict(report.errors)
    assert set(failed) == BAD
    assert report.n_ok + len(report.errors) == report.n_items == 15
    assert "decompression" in failed["bomb.png"].lower() or "exceeds limit" in failed["bomb.png"]
    with FeatureFile(out) as f:
        vectors = dict(zip(f.ids, f.read()))
        assert set(f.ids) == {p.name for p in messy_dir.iterdir()} - BAD
        assert {i for i, _ in f.errors} == BAD
    with open(tmp_path / "f.errors.csv") as fh:
        assert {row["id"] for row in csv.DictReader(fh)} == BAD

    def close(a, b, floor=0.97):
        return float(vectors[a] @ vectors[b] / np.linalg.norm(vectors[a]) / np.linalg.norm(vectors[b])) > floor

    assert close("exif_rotated.jpg", "good.jpg", 0.99)  # rotated upright before the network sees it
    assert close("gray16.png", "gray.png", 0.999)  # 16 bits scaled, not clipped to white
    assert close("cmyk.jpg", "good.jpg") and close("palette.png", "good.jpg") and close("large.jpg", "good.jpg")
    assert close("animated.gif", "good.jpg", 0.95)  # the first frame (the second is the negative)
    assert np.isfinite(vectors["tiny.png"]).all() and np.isfinite(vectors["alpha.png"]).all()


def test_fail_mode_stops_at_the_first_bad_item_naming_it(messy_dir, tmp_path):
    with pytest.raises(ItemError, match=r"corrupt\.jpg|empty\.jpg|text\.jpg|truncated\.jpg"):
        featurize(messy_dir, on_error="fail", cache_dir=tmp_path / "c", progress=False, workers=0)


def test_messy_texts(tmp_path):
    long_text = "word " * 200_000  # 1 MB
    rows = ["fine text", "", "   ", "nul\x00byte inside", long_text, "another fine one"]
    report = featurize(
        texts_as_inputs(rows), "minilm", cache_dir=tmp_path / "c", progress=False, output=tmp_path / "t.h5"
    )
    assert dict(report.errors) == {"1": "empty text", "2": "empty text"}
    assert report.n_ok == 4 and report.truncated == 1 and "truncated" in report.summary()
    raw = tmp_path / "lines.txt"
    raw.write_bytes(b"caf\xe9 latin-1 line\r\nunix line\nold mac line\rlast")
    inputs = read_inputs(raw, "text")
    assert inputs.sources == ["caf\ufffd latin-1 line", "unix line", "old mac line", "last"]
