"""Default output names, decided by the library in one table (featurizer.storage.default_outputs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurizer import FeaturizerError
from featurizer.storage import DEFAULT_OUTPUTS, Url, default_outputs


def test_outputs_are_named_after_the_inputs_beside_them():
    model, test = Path("models/photos.skops"), Path("data/test_photos")
    named = default_outputs("evaluate", model, test, by=True)
    assert named["output"] == Path("models/photos.eval-test_photos.json")
    assert named["png"] == Path("models/photos.confusion-test_photos.png")
    assert named["reliability"] == Path("models/photos.reliability-test_photos.png")
    assert named["groups"] == Path("models/photos.groups-test_photos.png")
    assert default_outputs("evaluate", model, test)["groups"] is None  # no --by: no groups picture
    assert default_outputs("fit", Path("cache/photos.h5"), "logreg") == {
        "output": Path("models/photos-logreg.skops"),
        "card": Path("models/photos-logreg.json"),
    }
    assert default_outputs("export", Path("cache/a.h5"), "npy")["output"] == Path("cache/a-npy")
    assert default_outputs("predict", Path("."))["output"] == Path(f"{Path.cwd().name}-predictions.csv")


def test_a_picture_given_names_the_others_after_it():
    named = default_outputs("evaluate", Path("m.skops"), Path("t.h5"), png=Path("out/cm.png"))
    assert named["png"] == Path("out/cm.png") and named["pr"] == Path("out/cm.pr.png")


def test_urls_are_named_as_paths_are():
    assert str(default_outputs("merge", Url("s3://bucket/emb"))["output"]) == "s3://bucket/emb/merged.h5"
    assert str(default_outputs("export", Url("s3://bucket/a.h5"), "parquet")["output"]) == "s3://bucket/a.parquet"


def test_every_named_command_is_a_command_and_others_are_refused():
    from commands import COMMANDS

    assert set(DEFAULT_OUTPUTS) <= set(COMMANDS)
    with pytest.raises(FeaturizerError, match="names no outputs"):
        default_outputs("models")
