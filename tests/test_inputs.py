"""Every input layout gives stable ids, the right sources and labels."""

from __future__ import annotations

import json

import pytest

from featurizer import InputError, ReadOptions, read_inputs
from featurizer.inputs._inputs import guess_modality


def test_image_folder_layout_gives_labels_and_reports_other_files(photo_dir, tmp_path):
    inputs = read_inputs(photo_dir)
    assert len(inputs) == 12 and inputs.ids[0] == "china/china_0.jpg"
    assert inputs.labels.count("china") == 6 and inputs.labels.count("flower") == 6
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    (tmp_path / "a" / "notes.gif").write_bytes(b"")
    flat = read_inputs(tmp_path / "a")
    assert flat.ids == ["x.png"] and flat.labels is None
    assert flat.skipped[0][0] == "notes.gif" and "--ext" in flat.skipped[0][1]
    assert read_inputs(tmp_path / "a", options=ReadOptions(extensions=("gif", ".png"))).ids == ["notes.gif", "x.png"]


def test_csv_with_relative_paths_and_labels(photo_dir, tmp_path):
    csv = photo_dir / "list.csv"
    csv.write_text("image,class\nchina/china_0.jpg,palace\nflower/flower_1.jpg,daisy\n")
    inputs = read_inputs(csv)
    assert inputs.ids == ["0", "1"] and inputs.labels == ["palace", "daisy"]
    assert inputs.sources[1] == str(photo_dir / "flower" / "flower_1.jpg")
    csv.unlink()


def test_text_formats(tmp_path):
    (tmp_path / "t.jsonl").write_text(
        "\n".join(json.dumps({"id": f"q{i}", "sentence": s, "y": i}) for i, s in enumerate("ab"))
    )
    inputs = read_inputs(tmp_path / "t.jsonl", "text")
    assert (inputs.ids, inputs.sources, inputs.labels) == (["q0", "q1"], ["a", "b"], ["0", "1"])
    (tmp_path / "t.txt").write_text("first\n\n  \nsecond\r\nthird")
    lines = read_inputs(tmp_path / "t.txt", "text")
    assert lines.ids == ["0", "3", "4"] and lines.sources == ["first", "second", "third"]
    (tmp_path / "t.tsv").write_text("sentence\tlabel\nhello there\t1\n")
    assert read_inputs(tmp_path / "t.tsv", "text").sources == ["hello there"]
    assert guess_modality(tmp_path / "t.tsv") == "text" and guess_modality(tmp_path / "t.txt") == "text"


def test_mistakes_are_named(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_inputs(tmp_path / "missing")
    (tmp_path / "t.csv").write_text("body,label\nhello,1\n")
    with pytest.raises(InputError, match=r"no text column.*body"):
        read_inputs(tmp_path / "t.csv", "text")
    assert read_inputs(tmp_path / "t.csv", "text", ReadOptions(column="body")).sources == ["hello"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        read_inputs(tmp_path / "empty")
