"""Feature files are complete or absent: never half-written, never a corrupt replacement."""

from __future__ import annotations

import numpy as np
import pytest

from featurizer import FeatureFile, FeatureFileWriter, FeatureSpec, InputError

SPEC = FeatureSpec("m", "image", "w", "abc", {"input_size": [3, 8, 8]}, "fp32", ("a", "b"), ("avg", "model"))


def write(path, n=5, fail_after=None):
    with FeatureFileWriter(path, SPEC, [f"id{i}" for i in range(n)], ["x", "y", "x", "x", "y"][:n]) as w:
        w.write_layer("a", 0, np.arange(n * 2, dtype=np.float32).reshape(n, 2))
        if fail_after == "a":
            raise RuntimeError("disk full")
        w.write_layer("b", 0, np.ones((n, 3), dtype=np.float32))
        w.write_errors([("bad.jpg", "cannot decode")])


def test_round_trip(tmp_path):
    write(tmp_path / "f.h5")
    with FeatureFile(tmp_path / "f.h5") as f:
        assert f.ids == [f"id{i}" for i in range(5)] and f.labels == ["x", "y", "x", "x", "y"]
        assert f.layers == ["a", "b"] and f.spec == SPEC and len(f) == 5
        np.testing.assert_array_equal(f.read("a"), np.arange(10).reshape(5, 2))
        assert f.errors == [("bad.jpg", "cannot decode")]
        assert "h5py" in f.versions


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write(tmp_path / "f.h5", n=3)
    with pytest.raises(RuntimeError):
        write(tmp_path / "f.h5", n=5, fail_after="a")
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"]
    with FeatureFile(tmp_path / "f.h5") as f:
        assert len(f) == 3


def test_other_files_are_refused_with_a_clear_error(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match=r"is not a feature file.*xfer featurize"):
        FeatureFile(tmp_path / "junk.h5")
    import h5py

    h5py.File(tmp_path / "other.h5", "w").close()
    with pytest.raises(InputError, match="not a featurizer feature file"):
        FeatureFile(tmp_path / "other.h5")
