"""xfer export: Parquet and NumPy copies of a feature file that other tools read back exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featurizer import FeatureFile, FeatureSpec
from pipelines.index._export import read_parquet_features
from tests.test_flows import xfer


def test_parquet_round_trips_ids_labels_vectors_and_spec(digit_features, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    train = digit_features[0]
    xfer("export", train, "-o", tmp_path / "d.parquet")
    columns, layers, spec = read_parquet_features(tmp_path / "d.parquet")
    table = pq.read_table(tmp_path / "d.parquet")  # plain pyarrow reads it too
    with FeatureFile(train) as f:
        assert columns["id"] == f.ids and columns["label"] == f.labels and table.num_rows == len(f)
        for name in f.layers:
            np.testing.assert_array_equal(layers[name], f.read(name))
        assert not FeatureSpec.from_json(spec).differences(f.spec)


def test_npy_folder_round_trips(digit_features, tmp_path):
    train = digit_features[0]
    xfer("export", train, "--format", "npy", "-o", tmp_path / "d")
    with FeatureFile(train) as f:
        for name in f.layers:
            np.testing.assert_array_equal(np.load(tmp_path / "d" / f"{name}.npy"), f.read(name))
        ids = [json.loads(line) for line in (tmp_path / "d" / "ids.txt").read_text().splitlines()]
        assert ids == f.ids
    result = xfer("export", train, "--format", "npy", "-o", tmp_path / "d", ok=False)
    assert result.exit_code != 0 and "exists" in result.output


# --- Parquet inputs -----------------------------------------------------------------------


def test_a_parquet_table_of_texts_gives_the_same_vectors_and_labels_as_the_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from featurizer import featurize
    from tests.test_tasks import news_rows, write_table

    rows = [{"id": r["id"], "text": r["text"], "label": r["topic"]} for r in news_rows(9, 0)]
    write_table(tmp_path / "news.csv", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "news.parquet")
    (tmp_path / "parts").mkdir()  # the same table split in two files, read in name order
    pq.write_table(pa.Table.from_pylist(rows[:4]), tmp_path / "parts" / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[4:]), tmp_path / "parts" / "b.parquet")
    files = {}
    for name in ("news.csv", "news.parquet", "parts"):
        files[name] = featurize(tmp_path / name, "minilm", "-1", output=tmp_path / f"{name}.h5", progress=False).output
    with FeatureFile(files["news.csv"]) as a:
        for other in ("news.parquet", "parts"):
            with FeatureFile(files[other]) as b:
                assert b.ids == a.ids and b.labels == a.labels
                np.testing.assert_array_equal(b.read(), a.read())


def test_a_parquet_table_of_image_paths_gives_the_folders_vectors(photo_dir, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from featurizer import featurize

    paths = sorted(photo_dir.rglob("*.jpg"))
    rows = [{"id": f"{p.parent.name}/{p.name}", "path": str(p), "label": p.parent.name} for p in paths]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "photos.parquet")
    a = featurize(photo_dir, output=tmp_path / "folder.h5", progress=False).output
    b = featurize(tmp_path / "photos.parquet", output=tmp_path / "table.h5", progress=False).output
    with FeatureFile(a) as fa, FeatureFile(b) as fb:
        assert fb.ids == fa.ids and fb.labels == fa.labels
        np.testing.assert_array_equal(fb.read(), fa.read())


def test_bad_parquet_inputs_get_one_line(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", "y"]}), tmp_path / "t.parquet")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes((tmp_path / "t.parquet").read_bytes()[:40])
    result = xfer("featurize", cut, "-m", "minilm", "-o", tmp_path / "o.h5", ok=False)
    assert result.exit_code != 0 and "not a readable Parquet file" in result.output
    result = xfer(
        "featurize", tmp_path / "t.parquet", "-m", "minilm", "--column", "body", "-o", tmp_path / "o.h5", ok=False
    )
    assert "column 'body' not found" in result.output
    pq.write_table(pa.table({"text": ["a"], "image": [b"\x89PNG"], "label": ["x"]}), tmp_path / "img.parquet")
    result = xfer(
        "featurize", tmp_path / "img.parquet", "-m", "minilm", "--column", "image", "-o", tmp_path / "i.h5", ok=False
    )
    assert "holds bytes, not texts" in result.output and "Traceback" not in result.output
    # bytes that are no image are one bad item, reported with the others, not a crash
    result = xfer("featurize", tmp_path / "img.parquet", "-m", "efficientnet_lite0", "-o", tmp_path / "i.h5", ok=False)
    assert "Traceback" not in result.output and (tmp_path / "i.errors.csv").read_text().count("\n") == 2
