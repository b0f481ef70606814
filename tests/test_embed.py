"""Sharded batch embedding: local and Ray engines, resume at shard level, merge into one file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from featurizer import FeatureFile, InputError, featurize
from featurizer.engine._embed import embed
from featurizer.engine._shards import merge
from tests.test_storage import upload_tree, write_shards

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


@pytest.fixture
def ray_here(s3):
    """A Ray started in this process after the bucket's credentials are in the environment (its
    workers inherit them), shut down after the test."""
    ray = pytest.importorskip("ray")
    ray.shutdown()
    yield s3
    ray.shutdown()


def test_ray_reads_folders_parquet_and_webdataset_in_s3_with_ray_datas_readers(photo_dir, ray_here, tmp_path):
    """Ray Data's readers stream the bytes to the actors; the shards equal a plain featurize."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    s3, paths = ray_here, sorted(photo_dir.rglob("*.jpg"))
    rows = [{"id": f"{p.parent.name}/{p.name}", "image": p.read_bytes(), "label": p.parent.name} for p in paths]
    (tmp_path / "table").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:7]), tmp_path / "table" / "a.parquet", row_group_size=3)
    pq.write_table(pa.Table.from_pylist(rows[7:]), tmp_path / "table" / "b.parquet", row_group_size=3)
    items = [(f"{p.parent.name}/{p.name.split('.')[0]}", {"jpg": p.read_bytes(), "cls": p.parent.name.encode()})
             for p in paths]  # fmt: skip
    write_shards(items, tmp_path / "tars", per_shard=5)
    for name, local in (("photos", photo_dir), ("table", tmp_path / "table"), ("tars", tmp_path / "tars")):
        upload_tree(local, f"{s3}/{name}")
    reference = featurize(photo_dir, output=tmp_path / "ref.h5", progress=False).output
    with FeatureFile(reference) as f:
        want_ids, want_labels, want = f.ids, f.labels, f.read()
    for name, reader in (("photos", "binary_files"), ("table", "parquet"), ("tars", "webdataset")):
        report = embed(f"{s3}/{name}", tmp_path / name, engine="ray", actors=2, shard_size=5,
                       cache_dir=tmp_path / f"cache-{name}", progress=False)  # fmt: skip
        assert report.computed == [0, 1, 2]
        assert report.notes == [
            f"12 of 12 items streamed by Ray Data's read_{reader}; 0 read by the actors from their sources"
        ]
        with FeatureFile(merge(tmp_path / name)) as f:
            ids = want_ids if name != "tars" else [i.rsplit(".", 1)[0] for i in want_ids]
            assert f.ids == ids and f.labels == want_labels
            np.testing.assert_array_equal(f.read(), want)


def test_ray_accounts_for_every_bad_item_as_the_local_engine_does(photo_dir, ray_here, tmp_path):
    """A missing file, an empty one, a file that is no image: the same error rows from both engines."""
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    names = [str(p) for p in sorted(photo_dir.rglob("*.jpg"))[:5]]
    bad = [str(tmp_path / "missing.jpg"), str(tmp_path / "empty.jpg"), str(tmp_path / "text.jpg")]
    (tmp_path / "list.csv").write_text("\n".join(["path", *names[:2], *bad, *names[2:]]))
    local = embed(tmp_path / "list.csv", tmp_path / "local", shard_size=3, cache_dir=tmp_path / "c1", progress=False)
    ray = embed(tmp_path / "list.csv", tmp_path / "ray", engine="ray", actors=2, shard_size=3,
                cache_dir=tmp_path / "c2", progress=False)  # fmt: skip
    assert local.computed == ray.computed == [0, 1, 2]
    assert ray.notes == [
        "7 of 8 items streamed by Ray Data's read_binary_files; 1 read by the actors from their sources"
    ]
    with FeatureFile(merge(tmp_path / "local")) as a, FeatureFile(merge(tmp_path / "ray")) as b:
        assert b.ids == a.ids == ["0", "1", "5", "6", "7"]
        assert b.errors == a.errors and [i for i, _ in b.errors] == ["2", "3", "4"]
        np.testing.assert_array_equal(b.read(), a.read())


def test_ray_refuses_gpu_actors_a_local_ray_cannot_place_instead_of_waiting(questions, tmp_path):
    ray = pytest.importorskip("ray")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: its local Ray can place the actor")
    ray.shutdown()
    (tmp_path / "q.txt").write_text("\n".join(questions[:4]))
    args = ["embed", str(tmp_path / "q.txt"), "-m", "minilm", "-o", str(tmp_path / "out"), "--engine", "ray",
            "--gpus-per-actor", "1", "-q"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    ray.shutdown()
    assert result.exit_code == 1 and "the Ray cluster has 0 GPUs" in result.output
    assert "Traceback" not in result.output


def test_an_error_in_a_ray_actor_is_one_line():
    """As Ray prints it: the original exception first, then Ray's wrappers around it."""
    from featurizer.engine._ray_engine import remote_failure

    printed = (
        '\x1b[36mray::MapWorker(MapBatches(VectorWorker)).submit()\x1b[39m (pid=1)\n  File "x.py", line 3, in f\n'
        "featurizer.storage._storage.StorageError: "
        "s3://b/k: access denied (check the credentials' permissions on it)\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
    )
    ours = remote_failure(printed)
    assert str(ours) == "s3://b/k: access denied (check the credentials' permissions on it)" and ours.ours
    bug = remote_failure(
        printed.replace("featurizer.storage._storage.StorageError", "KeyError")
    )  # named, with its type
    assert str(bug).startswith("a Ray task failed: KeyError: s3://b/k") and not bug.ours


def test_ray_lists_a_folder_in_storage_once_instead_of_asking_for_each_object(photo_dir, s3):
    from featurizer.engine._ray_read import read_plan
    from featurizer.inputs._inputs import read_inputs

    upload_tree(photo_dir, f"{s3}/photos")
    inputs = read_inputs(f"{s3}/photos")
    whole = read_plan(inputs, range(len(inputs)))
    bucket = s3.removeprefix("s3://")
    assert whole.paths == [f"{bucket}/photos"] and whole.extensions == [".jpg"] and not whole.by_source
    resumed = read_plan(inputs, range(8, len(inputs)))  # a third left to do: those objects only
    assert resumed.paths == [f"{bucket}/photos/{i}" for i in inputs.ids[8:]] and resumed.extensions is None


def test_ray_reads_what_its_readers_refuse_through_the_actors(photo_dir, tmp_path):
    """A tar whose samples are not contiguous (Ray's reader raises on it), one that repeats a name,
    one with a suffix in two cases and a '.pq' table (Ray's reader looks for '.parquet'): the same
    vectors and error rows as the local engine, whichever way they were read."""
    pytest.importorskip("ray")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    paths = sorted(photo_dir.rglob("*.jpg"))
    scattered = [(p.stem, {"jpg": p.read_bytes()}) for p in paths] + [(p.stem, {"cls": b"x"}) for p in paths[:6]]
    write_shards(scattered, tmp_path / "tars", per_shard=len(scattered))
    repeated = [(p.stem, {"jpg": p.read_bytes()}) for p in paths] + [(paths[0].stem, {"jpg": paths[1].read_bytes()})]
    write_shards(repeated, tmp_path / "repeats", per_shard=len(repeated))  # a name twice: the last copy is read
    suffixes = [(p.stem, {"jpg": p.read_bytes()}) for p in paths]
    suffixes[0][1]["JPG"] = paths[1].read_bytes()  # one suffix in two cases: the later is read
    write_shards(suffixes, tmp_path / "suffixes", per_shard=len(suffixes))
    pq.write_table(pa.Table.from_pylist([{"id": p.name, "image": p.read_bytes()} for p in paths]), tmp_path / "t.pq")
    cases = (
        ("tars", tmp_path / "tars", 0),
        ("repeats", tmp_path / "repeats", 0),
        ("suffixes", tmp_path / "suffixes", 12),
        ("pq", tmp_path / "t.pq", 12),
    )
    for name, source, streamed in cases:
        local = embed(source, tmp_path / f"{name}-local", shard_size=5, cache_dir=tmp_path / "c1", progress=False)
        ray = embed(source, tmp_path / f"{name}-ray", engine="ray", shard_size=5, cache_dir=tmp_path / "c2",
                    progress=False)  # fmt: skip
        assert local.computed == ray.computed == [0, 1, 2]
        assert ray.notes[0].startswith(f"{streamed} of 12 items streamed")
        with FeatureFile(merge(tmp_path / f"{name}-local")) as a, FeatureFile(merge(tmp_path / f"{name}-ray")) as b:
            assert b.ids == a.ids and b.labels == a.labels and b.errors == a.errors
            assert [i for i, r in b.errors if r.startswith("duplicate id")] == (
                [paths[0].stem] if name in ("repeats", "suffixes") else []
            )
            np.testing.assert_array_equal(b.read(), a.read())


def test_ray_fails_as_itself_when_a_shard_cannot_be_written(photo_dir, tmp_path, monkeypatch):
    """A full disk on the driver is the run's error, not a reader failure to work around."""
    pytest.importorskip("ray")
    import errno

    import featurizer.engine._ray_engine as engine

    real = engine.compute_shard

    def full_disk(write, inputs, out, shard):
        if shard.index == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(write, inputs, out, shard)

    monkeypatch.setattr(engine, "compute_shard", full_disk)
    with pytest.raises(OSError, match="No space left"):
        embed(photo_dir, tmp_path / "out", engine="ray", shard_size=5, cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()  # nothing claims the run finished


# --- A merged file checks its shards whenever it is read ------------------------------------


@pytest.fixture(scope="module")
def embedded(digits_dir, tmp_path_factory):
    """An embed folder of the digits, 5 shards of 16 items (the same size each), not merged."""
    out = tmp_path_factory.mktemp("embedded") / "emb"
    embed(digits_dir / "train", out, shard_size=16, cache_dir=out.parent / "c", progress=False)
    return out


def merged_copy(embedded: Path, tmp_path: Path) -> Path:
    out = tmp_path / "emb"
    shutil.copytree(embedded, out)
    return merge(out)


def vector_offset(shard: Path) -> int:
    """Where a shard's first vector bytes are in its file."""
    import h5py

    with h5py.File(shard, "r") as f:
        dataset = f["features"][next(iter(f["features"]))]
        return dataset.id.get_chunk_info(0).byte_offset if dataset.chunks else dataset.id.get_offset()


def flip_a_vector_byte(shard: Path) -> None:
    offset = vector_offset(shard) + 3  # the high byte of the first float
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0x40
    shard.write_bytes(bytes(data))


def damage(kind: str, folder: Path) -> Path:
    """Damage shard 1 of an embed folder after its merge; returns the shard."""
    shard = folder / "shard-00001.h5"
    if kind == "flipped byte":
        flip_a_vector_byte(shard)
    elif kind == "truncated":
        with open(shard, "r+b") as f:
            f.truncate(shard.stat().st_size // 2)
    elif kind == "replaced by another shard":
        other = folder / "shard-00002.h5"
        assert other.stat().st_size == shard.stat().st_size  # a valid shard of the same size: only content differs
        shutil.copy2(other, shard)
    elif kind == "deleted":
        shard.unlink()
    return shard


DAMAGE = ("flipped byte", "truncated", "replaced by another shard", "deleted")
READERS = ("FeatureFile", "info", "export", "fit")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", DAMAGE)
def test_a_merged_file_refuses_a_shard_damaged_after_the_merge(kind, reader, embedded, tmp_path):
    merged = merged_copy(embedded, tmp_path)
    shard = damage(kind, merged.parent)
    if reader == "FeatureFile":
        with pytest.raises(InputError, match=re.escape(str(shard))) as err, FeatureFile(merged) as f:
            f.read()
        assert "\n" not in str(err.value)
        return
    args = {
        "info": ["info", str(merged)],
        "export": ["export", str(merged), "-o", str(tmp_path / "out.parquet")],
        "fit": ["fit", str(merged), "--head", "prototype", "-o", str(tmp_path / "m.skops")],
    }[reader]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)  # a message, not a crash
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(shard) in lines[0] and "not those it was merged from" in lines[0], result.output
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "m.skops").exists()


def test_an_untouched_merged_file_reads_with_one_stat_a_shard(embedded, tmp_path, monkeypatch):
    """Opening checks the stamps recorded at merge: a stat of each shard, no checksum, no shard opened."""
    import featurizer.cache._featurefile as featurefile

    merged = merged_copy(embedded, tmp_path)
    with FeatureFile(merged) as f:
        stamps = json.loads(f.attrs["shard_stamps"])
        expected = f.read()
    assert [s["file"] for s in stamps] == [f"shard-{i:05d}.h5" for i in range(5)]
    assert all(set(s) == {"file", "size", "mtime_ns", "sha256"} for s in stamps)

    def no_checksum(path):
        raise AssertionError(f"checksummed {path}")

    monkeypatch.setattr(featurefile, "file_sha256", no_checksum)
    with FeatureFile(merged) as f:
        np.testing.assert_array_equal(f.read(), expected)
    result = CliRunner().invoke(main, ["info", str(merged)])
    assert result.exit_code == 0 and "80 items" in result.output


def test_a_shard_with_a_new_time_but_the_same_bytes_is_checksummed_and_read(embedded, tmp_path):
    """Copied without its times, or touched: the stamp differs, the SHA-256 is the one recorded."""
    merged = merged_copy(embedded, tmp_path)
    with FeatureFile(merged) as f:
        expected = f.read()
    os.utime(merged.parent / "shard-00003.h5", ns=(1, 1))
    with FeatureFile(merged) as f:
        np.testing.assert_array_equal(f.read(), expected)


def test_a_flipped_byte_with_its_time_set_back_passes_the_cheap_check(embedded, tmp_path):
    """The limit of the cheap check, said as it is: a shard rewritten to the same size with its
    modification time set back (os.utime) has the stamp recorded at merge, so an ordinary open
    takes it for the shard it was and reads the changed vector. Only reading the whole shard can
    see it: ``FeatureFile(path, checksums=True)`` and ``xfer merge`` again (against the manifest)
    refuse it."""
    merged = merged_copy(embedded, tmp_path)
    shard = merged.parent / "shard-00001.h5"
    with FeatureFile(merged) as f:
        before = f.read()
    st = shard.stat()
    flip_a_vector_byte(shard)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert shard.stat().st_size == st.st_size
    with FeatureFile(merged) as f:  # not seen: the same size and time
        assert not np.array_equal(f.read()[16], before[16])
    with pytest.raises(InputError, match=re.escape(str(shard))):
        FeatureFile(merged, checksums=True)
    result = CliRunner().invoke(main, ["merge", str(merged.parent)])
    assert result.exit_code != 0 and "shard-00001.h5 is missing or damaged" in result.output


def test_a_merged_file_without_stamps_is_checked_against_the_manifest(embedded, tmp_path):
    """Merged before stamps were recorded: every shard is checksummed against the manifest (or
    its .sha256 sidecar); with neither, the shard is refused rather than read unchecked."""
    import h5py

    merged = merged_copy(embedded, tmp_path)
    with h5py.File(merged, "r+") as f:
        del f.attrs["shard_stamps"]
    with FeatureFile(merged) as f:
        assert len(f) == 80
    (merged.parent / "manifest.json").unlink()
    with FeatureFile(merged) as f:  # the sidecars still hold the checksums
        assert len(f) == 80
    flip_a_vector_byte(merged.parent / "shard-00004.h5")
    with pytest.raises(InputError, match=r"shard-00004\.h5 does not match its checksum"):
        FeatureFile(merged)
    (merged.parent / "shard-00000.h5.sha256").unlink()
    with pytest.raises(InputError, match=r"shard-00000\.h5 has no checksum to check it against"):
        FeatureFile(merged)


# --- Repeated ids in embed: error rows, whichever engine -----------------------------------


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_embed_keeps_repeated_ids_as_error_rows_in_the_manifest_and_the_merged_file(engine, photo_dir, tmp_path):
    if engine == "ray":
        pytest.importorskip("ray")
    photos = sorted(photo_dir.rglob("*.jpg"))
    rows = [f"{p.stem},{p}" for p in photos] + [f"{photos[0].stem},{photos[1]}"]
    (tmp_path / "list.csv").write_text("id,path\n" + "\n".join(rows) + "\n")
    report = embed(tmp_path / "list.csv", tmp_path / "out", engine=engine, shard_size=5,
                   cache_dir=tmp_path / "c", progress=False)  # fmt: skip
    reason = f"duplicate id '{photos[0].stem}' (at line 14, also line 2): not featurized"
    assert report.not_read == [(photos[0].stem, reason)]
    assert "1 skipped" in report.summary() and "repeat an id" in report.summary()
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["skipped"] == [[photos[0].stem, reason]]
    with FeatureFile(merge(tmp_path / "out")) as f:
        assert f.ids == [p.stem for p in photos] and f.errors == [(photos[0].stem, reason)]
