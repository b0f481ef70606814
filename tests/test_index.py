"""xfer index and search: an item finds itself first, queries are made with the index's spec; an empty or
damaged index folder is refused in one line."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.test_flows import xfer


def test_search_finds_an_items_own_duplicate_first(digit_features, digits_dir, tmp_path):
    train = digit_features[0]
    xfer("index", train, "-o", tmp_path / "idx", "-l", "pre_logits")
    query = sorted((digits_dir / "train" / "4").glob("*.png"))[0]
    out = xfer("search", tmp_path / "idx", query, "-k", "3", "-q").output.splitlines()
    best = next(line for line in out if line.startswith(query.name))
    assert f"4/{query.name}" in best and "1.0000" in best  # itself first, at similarity 1


def test_an_approximate_index_answers_feature_files_and_refuses_text_queries_on_images(digit_features, tmp_path):
    train, test, _ = digit_features
    xfer("index", train, "-o", tmp_path / "idx", "-l", "pre_logits", "--kind", "hnsw")
    from featurizer import FeatureFile

    lines = xfer("search", tmp_path / "idx", test, "-k", "2", "-q").output.splitlines()
    with FeatureFile(test) as f:
        assert len(lines) == 2 * len(f)  # two neighbours for each test digit
    bad = xfer("search", tmp_path / "idx", "--text", "a digit", ok=False)
    assert bad.exit_code != 0 and "text model" in bad.output


def _emptied(folder):
    import faiss

    faiss.write_index(faiss.IndexFlatIP(1280), str(folder / "index.faiss"))
    (folder / "items.json").write_text(json.dumps({"ids": [], "sources": []}))


def _spec_edit(**change):
    def apply(folder):
        spec = json.loads((folder / "spec.json").read_text())
        (folder / "spec.json").write_text(json.dumps({**spec, **change}))

    return apply


DAMAGED_INDEXES = {  # how a good index folder is damaged, and what the one line must say
    "emptied by hand": (_emptied, "is an empty index"),
    "items.json missing": (lambda f: (f / "items.json").unlink(), "items.json is missing"),
    "items.json not JSON": (lambda f: (f / "items.json").write_text("{"), "damaged index folder"),
    "items.json a list": (lambda f: (f / "items.json").write_text("[1]"), "does not list the items' ids"),
    "fewer items than vectors": (
        lambda f: (f / "items.json").write_text(json.dumps({"ids": ["a"], "sources": ["a"]})),
        "holds 80 vectors but items.json names 1 items",
    ),
    "index.faiss empty": (lambda f: (f / "index.faiss").write_bytes(b""), "index.faiss cannot be read"),
    "index.faiss truncated": (
        lambda f: (f / "index.faiss").write_bytes((f / "index.faiss").read_bytes()[:99]),
        "index.faiss cannot be read",
    ),
    "spec.json not JSON": (lambda f: (f / "spec.json").write_bytes(b"\xff\xfe"), "damaged index folder"),
    "spec.json a number": (lambda f: (f / "spec.json").write_text("5"), "the spec holds a number"),
    "spec layers a string": (_spec_edit(layers="pre_logits"), "'layers' must be a non-empty list"),
    "spec of another layer": (_spec_edit(layers=["blocks.6"], pooling=["avg"]), "holds 1280-d vectors"),
}


@pytest.fixture(scope="module")
def built_index(digit_features, tmp_path_factory):
    folder = tmp_path_factory.mktemp("index") / "idx"
    xfer("index", digit_features[0], "-o", folder, "-l", "pre_logits")
    return folder


@pytest.mark.parametrize("kind", list(DAMAGED_INDEXES))
def test_search_in_an_empty_or_damaged_index_ends_in_one_line(kind, built_index, digit_features, tmp_path):
    folder = tmp_path / "idx"
    shutil.copytree(built_index, folder)
    damage, said = DAMAGED_INDEXES[kind]
    damage(folder)
    result = xfer("search", folder, digit_features[1], "-k", "2", ok=False)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], result.output


def test_an_index_of_a_file_of_no_items_is_searched_with_one_line(digit_features, tmp_path):
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"not an image")
    empty = tmp_path / "empty.h5"
    xfer("featurize", tmp_path / "bad", "-o", empty, "--cache-dir", digit_features[2], "-q")
    assert "indexed 0 items" in xfer("index", empty, "-o", tmp_path / "idx").output
    result = xfer("search", tmp_path / "idx", digit_features[1], ok=False)
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: {tmp_path / 'idx'} is an empty index (built from a file of no items): there is nothing to search"
    ]
