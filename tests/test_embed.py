"""Sharded batch embedding: local and Ray engines, resume at shard level, merge into one file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from featurizer import FeatureFile, featurize
from featurizer._shards import embed, merge

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    featurize(digits_dir / "train", output=out, cache_dir=out.parent / "cache", progress=False)
    with FeatureFile(out) as f:
        return f.ids, f.labels, f.read()


def check_merged(path: Path, reference) -> None:
    ids, labels, vectors = reference
    with FeatureFile(path) as f:
        assert f.ids == ids and f.labels == labels
        np.testing.assert_allclose(f.read(), vectors, rtol=1e-4, atol=1e-5)


def test_local_engine_resumes_only_missing_or_damaged_shards(digits_dir, reference, tmp_path):
    out = tmp_path / "emb"
    first = embed(digits_dir / "train", out, shard_size=16, cache_dir=tmp_path / "c", progress=False)
    assert first.n_shards == 5 and first.computed == [0, 1, 2, 3, 4]
    (out / "shard-00001.h5").unlink()
    with open(out / "shard-00003.h5", "r+b") as f:  # damaged on disk
        f.seek(3000)
        f.write(b"garbage")
    again = embed(digits_dir / "train", out, shard_size=16, cache_dir=tmp_path / "c", progress=False)
    assert again.computed == [1, 3] and again.skipped == [0, 2, 4]
    merged = merge(out)
    check_merged(merged, reference)
    result = CliRunner().invoke(main, ["info", str(merged)])
    assert result.exit_code == 0 and "80 items" in result.output
    from pipelines import fit

    assert fit(merged, "prototype").card.classes == [str(d) for d in range(10)]


def test_merge_refuses_a_damaged_shard(digits_dir, tmp_path):
    out = tmp_path / "emb"
    embed(digits_dir / "train", out, shard_size=40, cache_dir=tmp_path / "c", progress=False)
    (out / "shard-00000.h5").write_bytes(b"")
    result = CliRunner().invoke(main, ["merge", str(out)])
    assert result.exit_code == 1 and "shard-00000.h5 is missing or damaged" in result.output


def test_ray_engine_to_s3_equals_local_and_survives_a_killed_driver(digits_dir, reference, s3, tmp_path):
    """The Ray actors write their shards to object storage (the local S3 server), not a shared disk."""
    pytest.importorskip("ray")
    from tests.test_storage import kill_after_published_shards, published_shards

    out, cache = f"{s3}/emb", tmp_path / "c"
    args = ["embed", str(digits_dir / "train"), "-o", out, "--engine", "ray", "--workers", "2",
            "--shard-size", "10", "--cache-dir", str(cache), "-q"]  # fmt: skip
    kill_after_published_shards(args, out, 2)  # the driver
    subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True, timeout=60)
    done = published_shards(out)  # counted once Ray's actors are gone too
    assert 2 <= len(done) < 8
    result = CliRunner().invoke(main, args)  # the same command again: resume
    assert result.exit_code == 0, result.output
    assert f"{8 - len(done)} computed, {len(done)} already complete" in result.output
    check_merged(merge(out, tmp_path / "merged.h5"), reference)  # merged from the bucket: vectors copied
    import ray

    ray.shutdown()
