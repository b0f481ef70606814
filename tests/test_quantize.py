"""Quantised vectors: int8 with calibration ranges and sign bits, in feature files, Parquet, NumPy, embed
shards and indexes; every reader of vectors reads them back as floats."""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from featurizer import FeatureFile
from featurizer.cache import dequantize, quantize, read_parquet_features
from pipelines import evaluate, fit, read_xy
from pipelines.index import _index
from tests.test_flows import xfer

finite = st.floats(-1e3, 1e3, width=32, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(X=arrays(np.float32, st.tuples(st.integers(0, 20), st.integers(1, 40)), elements=finite))
def test_int8_codes_come_back_within_half_a_step_and_binary_keeps_each_side_of_the_median(X):
    codes, info = quantize(X, "int8")
    assert codes.dtype == np.int8 and codes.shape == X.shape
    back = dequantize(codes, json.loads(json.dumps(info)))  # the info survives JSON, as it is stored
    if len(X):
        step = (X.max(0) - X.min(0)) / 255
        assert np.all(np.abs(back - X) <= step / 2 + 1e-4 * (1 + np.abs(X)))  # constant columns come back exactly
    bits, info = quantize(X, "binary")
    assert bits.dtype == np.uint8 and bits.shape == (len(X), -(-X.shape[1] // 8))
    t, below, above = (np.asarray(info[k], np.float32) for k in ("thresholds", "below", "above"))
    if len(X):
        np.testing.assert_array_equal(t, np.median(X, axis=0))  # half the items on each side
    assert np.all(below <= t) and np.all(t <= above)
    back = dequantize(bits, json.loads(json.dumps(info)))  # each value read back as the mean of its side
    np.testing.assert_array_equal(back, np.where(t < X, above, below))


def test_a_quantised_feature_file_is_smaller_and_fits_as_well_as_the_float_one(digit_features, tmp_path):
    train, test, _ = digit_features
    scores = {}
    for method in (None, "int8", "binary"):
        path, test_path = train, test
        if method:
            path, test_path = tmp_path / f"train-{method}.h5", tmp_path / f"test-{method}.h5"
            out = xfer("export", train, "--format", "h5", "--quantize", method, "-o", path)
            assert "wrote" in out.output
            assert method in xfer("info", path).output
            xfer("export", test, "--format", "h5", "--quantize", method, "--calibration", path, "-o", test_path)
        result = fit(path, "logreg", "pre_logits")
        with FeatureFile(test_path) as f:
            X, y = read_xy(f, ("pre_logits",))
        scores[method] = evaluate(result.model, X, y)["accuracy"]
    with FeatureFile(train) as f, FeatureFile(tmp_path / "train-int8.h5") as q:
        assert (
            q.ids == f.ids
            and q.labels == f.labels
            and q.spec == f.spec
            and q.shape("pre_logits") == f.shape("pre_logits")
        )
        assert q._file["features"]["pre_logits"].nbytes * 4 == f._file["features"]["pre_logits"].nbytes
    assert scores["int8"] >= scores[None] - 0.03, scores  # 4x smaller, the same head
    assert scores["binary"] >= 0.5, scores  # 32x smaller, still a useful head on ten classes


def test_parquet_and_npy_exports_keep_codes_and_their_calibration(digit_features, tmp_path):
    train = digit_features[0]
    with FeatureFile(train) as f:
        X = f.read("pre_logits")
    xfer("export", train, "--quantize", "int8", "-o", tmp_path / "q.parquet")
    _, layers, _ = read_parquet_features(tmp_path / "q.parquet")
    step = (X.max(0) - X.min(0)) / 255
    assert np.all(np.abs(layers["pre_logits"] - X) <= step / 2 + 1e-5)
    xfer("export", train, "--format", "npy", "--quantize", "binary", "-o", tmp_path / "b")
    codes = np.load(tmp_path / "b" / "pre_logits.npy")
    info = json.loads((tmp_path / "b" / "quantization.json").read_text())["pre_logits"]
    assert codes.dtype == np.uint8 and codes.shape[1] * 8 == X.shape[1]
    median = np.median(X, axis=0)
    np.testing.assert_array_equal(dequantize(codes, info), np.where(median < X, info["above"], info["below"]))


def test_options_that_cannot_go_together_are_one_line(digit_features, tmp_path):
    train = digit_features[0]
    for args, says in (
        (("export", train, "--format", "h5", "-o", tmp_path / "x.h5"), "add --quantize"),
        (("index", train, "-o", tmp_path / "i", "--kind", "hnsw", "--quantize", "binary"), "exact index"),
        (("embed", train.parent, "-o", tmp_path / "e", "--quantize", "int8"), "--format parquet"),
    ):
        result = xfer(*args, ok=False)
        assert result.exit_code != 0 and says in result.output and "Traceback" not in result.output, result.output


def test_embed_parquet_shards_hold_codes_and_a_resume_with_other_codes_recomputes(questions, tmp_path):
    texts = tmp_path / "q.csv"
    texts.write_text("text\n" + "".join(f'"{q}"\n' for q in questions))
    out = tmp_path / "e"
    args = ("embed", texts, "-o", out, "--format", "parquet", "--shard-size", "4", "-m", "minilm", "-l", "-1")
    xfer(*args, "--quantize", "int8")
    shards = sorted(out.glob("shard-*.parquet"))
    import pyarrow.parquet as pq

    assert len(shards) == 3 and str(pq.read_schema(shards[0]).field("layer.5").type.value_type) == "int8"
    again = xfer(*args, "--quantize", "int8")  # the same codes: every shard reused
    assert "0 computed, 3 already complete" in again.output, again.output
    floats = xfer(*args)  # float shards asked for: the int8 ones do not count
    assert "3 computed, 0 already complete" in floats.output, floats.output
    assert str(pq.read_schema(shards[0]).field("layer.5").type.value_type) == "float"


def test_a_binary_index_with_rescoring_finds_what_the_float_index_finds(digit_features, tmp_path):
    train, test, _ = digit_features
    found = {}
    for method, rescore in ((None, None), ("binary", 1), ("binary", _index.RESCORE), ("int8", None)):
        folder = tmp_path / f"idx-{method}"
        extra = ("--quantize", method) if method else ()
        if not folder.exists():
            said = xfer("index", train, "-o", folder, "-l", "pre_logits", *extra).output
            assert (method or "flat") in said
        with mock.patch.object(_index, "RESCORE", rescore or _index.RESCORE):
            lines = xfer("search", folder, test, "-k", "10", "-q").output.splitlines()
        found[method, rescore] = {(line.split()[0], line.split()[3]) for line in lines}
    exact = found[None, None]
    recall = {key: len(exact & pairs) / len(exact) for key, pairs in found.items()}
    assert recall["int8", None] >= 0.95, recall
    assert recall["binary", _index.RESCORE] >= 0.95 and recall["binary", 1] < 0.9, (
        recall
    )  # rescoring is what finds them
    sizes = {m: (tmp_path / f"idx-{m}" / "index.faiss").stat().st_size for m in (None, "binary", "int8")}
    assert sizes[None] > 25 * sizes["binary"] and sizes[None] > 3.5 * sizes["int8"], sizes  # the searched index


def test_a_damaged_index_json_is_one_line(digit_features, tmp_path):
    xfer("index", digit_features[0], "-o", tmp_path / "i", "-l", "pre_logits", "--quantize", "binary")
    (tmp_path / "i" / "index.json").write_text('{"quantization": "int3"}')
    result = xfer("search", tmp_path / "i", digit_features[1], ok=False)
    assert result.exit_code != 0 and "damaged" in result.output and "Traceback" not in result.output


def test_a_missing_rescoring_file_or_a_calibration_of_another_kind_is_one_line(digit_features, tmp_path):
    train = digit_features[0]
    xfer("index", train, "-o", tmp_path / "i", "-l", "pre_logits", "--quantize", "binary")
    (tmp_path / "i" / "rescore.npy").unlink()
    gone = xfer("search", tmp_path / "i", digit_features[1], ok=False)
    assert gone.exit_code != 0 and "rescore.npy is missing" in gone.output
    xfer("export", train, "--format", "h5", "--quantize", "binary", "-o", tmp_path / "b.h5")
    other = xfer("export", train, "--format", "h5", "--quantize", "int8", "--calibration", tmp_path / "b.h5",
                 "-o", tmp_path / "x.h5", ok=False)  # fmt: skip
    assert other.exit_code != 0 and "binary codes, not" in other.output and not (tmp_path / "x.h5").exists()
