"""xfer export: Parquet and NumPy copies of a feature file that other tools read back exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featurizer import FeatureFile, FeatureSpec
from pipelines._export import read_parquet_features
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
