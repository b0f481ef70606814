"""Image batches decoded in worker processes: in order, failures as reasons, a dead worker as a clear error."""

from __future__ import annotations

import os

import numpy as np
import pytest

from featurizer import FeaturizerError
from featurizer.inputs._decode import DecodedBatches
from featurizer.inputs._preprocess import ImageTransform

PREP = {"input_size": [3, 32, 32], "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0}


def photos(photo_dir) -> list[str]:
    return sorted(str(p) for p in photo_dir.rglob("*.jpg"))


def collect(batches: DecodedBatches):
    positions, pixels, failures = [], [], []
    for pos, x, failed in batches:
        positions += pos
        pixels += list(x)
        failures += failed
    return positions, np.stack(pixels), failures


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_batches_one_process_gives_in_order_with_reasons(photo_dir, tmp_path, workers):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    sources = photos(photo_dir)
    sources.insert(5, str(broken))
    sources.append(str(tmp_path / "missing.jpg"))
    here = collect(DecodedBatches(sources, ImageTransform(PREP), batch_size=3, workers=0))
    there = collect(DecodedBatches(sources, ImageTransform(PREP), batch_size=3, workers=workers, prefetch=1))
    assert here[0] == there[0] == [p for p in range(len(sources)) if p not in (5, len(sources) - 1)]
    np.testing.assert_array_equal(here[1], there[1])
    assert here[1].shape == (len(sources) - 2, 3, 32, 32)
    assert [p for p, _ in there[2]] == [5, len(sources) - 1]
    assert "cannot decode image" in there[2][0][1] and "No such file" in there[2][1][1]


def _die_on_daisies(source: str) -> np.ndarray:
    if "flower" in source:
        os._exit(3)  # what a segfaulting decoder or the OOM killer looks like from outside
    return ImageTransform(PREP)(source)


def test_a_worker_that_dies_stops_the_run_with_a_clear_error(photo_dir):
    batches = DecodedBatches(photos(photo_dir), _die_on_daisies, batch_size=4, workers=1)
    with pytest.raises(FeaturizerError, match=r"decoding worker died.*--workers 0"):
        collect(batches)
