"""xfer index and search: an item finds itself first, queries are made with the index's spec."""

from __future__ import annotations

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
