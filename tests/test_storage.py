"""Inputs and outputs beyond one disk: object storage (a local S3 server), Parquet image bytes and
WebDataset tar shards give the same vectors as the same items in a folder."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from featurizer import FeatureFile, featurize
from featurizer.engine._embed import embed
from featurizer.engine._shards import merge

ROOT = Path(__file__).resolve().parents[1]


def upload_tree(local: Path, url: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{url}/{path.relative_to(local).as_posix()}")


def same_features(a, b) -> None:
    with FeatureFile(a) as fa, FeatureFile(b) as fb:
        assert fb.ids == fa.ids and fb.labels == fa.labels
        assert fb.layers == fa.layers
        for layer in fa.layers:
            np.testing.assert_array_equal(fb.read(layer), fa.read(layer))


# --- Object storage -----------------------------------------------------------------------------


def published_shards(out: str) -> set[str]:
    """The shards of an embed folder in the bucket whose checksums are published."""
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return {p.rsplit("/", 1)[1].split(".")[0] for p in fs.glob(f"{out}/*.sha256")}


def kill_after_published_shards(args: list[str], out: str, shards: int) -> None:
    """Run ``xfer ARGS`` in its own process group and SIGKILL the group once ``shards`` shards are
    published under ``out`` (Ray's own processes outlive it: stop them before counting)."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while proc.poll() is None and len(published_shards(out)) < shards and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition: shards published
    assert proc.poll() is None, f"xfer ended (exit code {proc.returncode}) before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_folder_in_s3_featurizes_to_the_same_vectors_as_on_disk(photo_dir, s3, tmp_path):
    upload_tree(photo_dir, f"{s3}/photos")
    disk = featurize(photo_dir, output=tmp_path / "disk.h5", cache_dir=tmp_path / "c1", progress=False).output
    # from the bucket, to the bucket, with a cold cache: every image read over the S3 API
    report = featurize(f"{s3}/photos", output=f"{s3}/out/photos.h5", cache_dir=tmp_path / "c2", progress=False)
    assert report.output == f"{s3}/out/photos.h5" and report.n_computed == 12
    same_features(disk, f"{s3}/out/photos.h5")
    with FeatureFile(f"{s3}/out/photos.h5") as f:
        assert f.sources[0].startswith(f"{s3}/photos/china/") and f.attrs["origin"] == f"{s3}/photos"
    # a CSV in the bucket naming images beside it: the same items
    rows = ["path,label"] + [
        f"{p.relative_to(photo_dir).as_posix()},{p.parent.name}" for p in sorted(photo_dir.rglob("*.jpg"))
    ]
    import s3fs

    s3fs.S3FileSystem().pipe(f"{s3}/photos/list.csv", "\n".join(rows).encode())
    table = featurize(f"{s3}/photos/list.csv", output=tmp_path / "csv.h5", cache_dir=tmp_path / "c2", progress=False)
    assert table.n_computed == 0  # the same bytes: cached by content
    with FeatureFile(disk) as fa, FeatureFile(table.output) as fb:
        np.testing.assert_array_equal(fb.read(), fa.read())
    # the file in the bucket is one a second run refuses to overwrite with another input's features
    result = CliRunner().invoke(main, ["featurize", str(photo_dir), "-o", f"{s3}/out/photos.h5", "-q"])
    assert result.exit_code == 1 and "holds features of" in result.output


def test_outputs_to_s3_appear_whole_and_fit_reads_them(digit_features, s3, tmp_path):
    train, test = digit_features[:2]
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(train), "-o", f"{s3}/exports/train.parquet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["export", str(train), "-o", f"{s3}/exports/train.parquet"])
    assert result.exit_code == 1 and "exists" in result.output
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.put_file(str(train), f"{s3}/features/train.h5")
    result = runner.invoke(main, ["fit", f"{s3}/features/train.h5", "-o", f"{s3}/models/digits.skops"])
    assert result.exit_code == 0, result.output
    with FeatureFile(test) as f:
        n_test = len(f)
    result = runner.invoke(main, ["predict", f"{s3}/models/digits.skops", str(test), "-o", f"{s3}/out/pred.csv"])
    assert result.exit_code == 0, result.output
    assert fs.cat_file(f"{s3}/out/pred.csv").decode().count("\n") == n_test + 1
    fs.invalidate_cache()
    names = [p.rsplit("/", 1)[1] for p in fs.find(s3)]
    assert "digits.skops" in names and not [n for n in names if n.endswith(".tmp")]  # no temporary keys left
    # outputs named after a URL input, as after a local one: beside it, or here
    result = runner.invoke(main, ["export", f"{s3}/features/train.h5"])
    assert result.exit_code == 0, result.output
    assert fs.exists(f"{s3}/features/train.parquet")
    fs.put_file(str(test), f"{s3}/features/test.h5")
    with runner.isolated_filesystem(temp_dir=tmp_path):
        result = runner.invoke(main, ["evaluate", f"{s3}/models/digits.skops", f"{s3}/features/test.h5"])
        assert result.exit_code == 0, result.output
        assert fs.exists(f"{s3}/models/digits.eval-test.json")
        result = runner.invoke(main, ["predict", f"{s3}/models/digits.skops", f"{s3}/features/test.h5"])
        assert result.exit_code == 0 and Path("test-predictions.csv").is_file(), result.output


def test_a_killed_embed_to_s3_resumes_and_equals_a_clean_run(digits_dir, s3, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem()
    clean = embed(digits_dir / "train", tmp_path / "clean", shard_size=4, cache_dir=tmp_path / "c0", progress=False)
    reference = merge(clean.out)
    out = f"{s3}/emb"
    args = [
        "embed",
        str(digits_dir / "train"),
        "-o",
        out,
        "--shard-size",
        "4",
        "--batch-size",
        "2",
        "--cache-dir",
        str(tmp_path / "c"),
        "-q",
    ]  # 20 shards of small batches: the run is still going when two are published
    kill_after_published_shards(args, out, 2)
    done = published_shards(out)
    assert 2 <= len(done) < 20 and not fs.exists(f"{out}/manifest.json")
    result = CliRunner().invoke(main, args)  # the same command again: resume
    assert result.exit_code == 0, result.output
    assert f"{20 - len(done)} computed, {len(done)} already complete" in result.output
    merged = merge(out, f"{s3}/merged.h5")  # from the bucket, to the bucket: vectors copied
    same_features(reference, merged)


def test_storage_errors_are_one_line_and_print_no_secret(s3, monkeypatch, tmp_path):
    import s3fs

    bucket = s3.split("://")[1]
    result = CliRunner().invoke(main, ["featurize", "s3://no-such-bucket-here/photos", "-o", str(tmp_path / "a.h5")])
    assert result.exit_code == 1 and "bucket 'no-such-bucket-here' does not exist" in result.output
    result = CliRunner().invoke(main, ["featurize", f"{s3}/nothing/here", "-o", str(tmp_path / "a.h5")])
    assert result.exit_code == 1 and "not found" in result.output and "Traceback" not in result.output
    secret = "AKIAVERYSECRETKEY123"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", secret)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()
    result = CliRunner().invoke(main, ["featurize", f"s3://{bucket}/photos", "-o", str(tmp_path / "a.h5")])
    assert result.exit_code == 1 and "credentials" in result.output and "Traceback" not in result.output
    assert secret not in result.output
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    s3fs.S3FileSystem.clear_instance_cache()
    result = CliRunner().invoke(main, ["featurize", f"s3://{bucket}/photos", "-o", str(tmp_path / "a.h5")])
    assert result.exit_code == 1 and "no credentials for s3:// found" in result.output


# --- Parquet image bytes and WebDataset shards ----------------------------------------------------


def test_image_bytes_in_parquet_give_the_folders_vectors(photo_dir, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    paths = sorted(photo_dir.rglob("*.jpg"))
    rows = [{"id": f"{p.parent.name}/{p.name}", "image": p.read_bytes(), "label": p.parent.name} for p in paths]
    (tmp_path / "parts").mkdir()
    # row groups of 2: each image is read with its row group, not the whole file
    pq.write_table(pa.Table.from_pylist(rows[:5]), tmp_path / "parts" / "a.parquet", row_group_size=2)
    pq.write_table(pa.Table.from_pylist(rows[5:]), tmp_path / "parts" / "b.parquet", row_group_size=2)
    folder = featurize(photo_dir, output=tmp_path / "folder.h5", progress=False).output
    table = featurize(tmp_path / "parts", output=tmp_path / "table.h5", progress=False)
    assert table.n_computed == 0  # the same bytes as the files: the same cache keys
    same_features(folder, table.output)


def write_shards(items: list[tuple[str, dict[str, bytes]]], folder: Path, per_shard: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for n in range(0, len(items), per_shard):
        shards.append(folder / f"shard-{n // per_shard:04d}.tar")
        with tarfile.open(shards[-1], "w") as tar:
            for key, parts in items[n : n + per_shard]:
                for ext, data in parts.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return shards


def test_webdataset_shards_give_the_folders_vectors(photo_dir, questions, tmp_path):
    paths = sorted(photo_dir.rglob("*.jpg"))
    items = [
        (f"{p.parent.name}/{p.stem}", {"jpg": p.read_bytes(), "cls": p.parent.name.encode(), "txt": b"a photo"})
        for p in paths
    ]
    shards = write_shards(items, tmp_path / "images", per_shard=5)
    folder = featurize(photo_dir, output=tmp_path / "folder.h5", progress=False).output
    report = featurize(tmp_path / "images", output=tmp_path / "tars.h5", progress=False)
    assert report.n_computed == 0
    with FeatureFile(folder) as fa, FeatureFile(report.output) as fb:
        assert fb.ids == [i.rsplit(".", 1)[0] for i in fa.ids] and fb.labels == fa.labels
        np.testing.assert_array_equal(fb.read(), fa.read())
        assert fb.column("txt") == ["a photo"] * len(paths)
    # texts: txt members, cls labels, one shard file named directly
    texts = [(f"q{i:03d}", {"txt": q.encode(), "cls": str(i % 2).encode()}) for i, q in enumerate(questions)]
    (tmp_path / "questions.txt").write_text("\n".join(questions))
    [shard] = write_shards(texts, tmp_path / "texts", per_shard=100)
    a = featurize(tmp_path / "questions.txt", "minilm", output=tmp_path / "lines.h5", progress=False).output
    b = featurize(shard, "minilm", output=tmp_path / "tar.h5", progress=False).output
    with FeatureFile(a) as fa, FeatureFile(b) as fb:
        assert fb.labels == [str(i % 2) for i in range(len(questions))]
        np.testing.assert_array_equal(fb.read(), fa.read())
    assert shards[0].stat().st_size > 0


def test_a_tar_shard_cut_short_is_refused_in_one_line(photo_dir, tmp_path):
    paths = sorted(photo_dir.rglob("*.jpg"))
    [shard] = write_shards([(p.stem, {"jpg": p.read_bytes()}) for p in paths], tmp_path / "whole", per_shard=100)
    data = shard.read_bytes()
    with tarfile.open(shard) as tar:
        last = tar.getmembers()[-1]
    after_last = last.offset_data + -(-last.size // 512) * 512
    for size in (len(data) // 2, after_last, 700):  # mid-member, only the end-of-archive blocks lost, mid-header
        (tmp_path / "cut").mkdir(exist_ok=True)
        (tmp_path / "cut" / "shard.tar").write_bytes(data[:size])
        result = CliRunner().invoke(
            main, ["featurize", str(tmp_path / "cut" / "shard.tar"), "-o", str(tmp_path / "o.h5")]
        )
        assert result.exit_code == 1 and "cut short" in result.output and "Traceback" not in result.output


def test_a_cache_in_s3_is_shared_by_machines_that_do_not_share_a_disk(digits_dir, s3, tmp_path, monkeypatch):
    import s3fs

    cache = f"{s3}/cache"
    first = featurize(digits_dir / "test", output=tmp_path / "a.h5", cache_dir=cache, progress=False)
    assert first.n_computed == first.n_items  # all computed, then pushed
    assert s3fs.S3FileSystem().glob(f"{cache}/store-v1/*/shard-*.h5")
    # another machine: its own local folders, the same cache URL
    monkeypatch.setenv("FEATURIZER_CACHE", str(tmp_path / "elsewhere"))
    second = featurize(digits_dir / "test", output=tmp_path / "b.h5", cache_dir=cache, progress=False)
    assert second.n_computed == 0 and second.n_cached == first.n_items
    same_features(first.output, second.output)


def test_remote_cache_sync_adds_whole_shards_and_drops_only_merged_ones(s3, tmp_path):
    from featurizer.cache._remote_cache import RemoteCache

    mirror = tmp_path / "mirror"
    store = mirror / "store-v1" / "layer-key"
    store.mkdir(parents=True)
    for name in ("shard-1.h5", "shard-2.h5", "spec.json"):
        (store / name).write_bytes(name.encode())
    cache = RemoteCache(f"{s3}/cache", mirror)
    assert cache.pull([store]) == 0 and cache.push([store]) == 3
    # another machine adds a shard; this one pulls it, then compacts 1, 2 and 3 into 4
    other = RemoteCache(f"{s3}/cache", tmp_path / "other")
    other_store = tmp_path / "other" / "store-v1" / "layer-key"
    assert other.pull([other_store]) == 3
    (other_store / "shard-3.h5").write_bytes(b"3")
    other.push([other_store])
    assert cache.pull([store]) == 1 and (store / "shard-3.h5").read_bytes() == b"3"
    for name in ("shard-1.h5", "shard-2.h5", "shard-3.h5"):
        (store / name).unlink()
    (store / "shard-4.h5").write_bytes(b"1+2+3")
    cache.push([store])
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{s3}/cache")) == ["shard-4.h5", "spec.json"]


def test_embed_writes_parquet_shards_that_resume_and_read_as_one_table(digits_dir, s3, tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.dataset as ds
    import s3fs

    from featurizer.cache._parquet import read_parquet_features

    reference = featurize(digits_dir / "train", output=tmp_path / "ref.h5", progress=False).output
    out = f"{s3}/emb"
    first = embed(digits_dir / "train", out, shard_size=30, format="parquet", progress=False)
    assert first.computed == [0, 1, 2]
    fs = s3fs.S3FileSystem()
    fs.rm(f"{out}/shard-00001.parquet")
    again = embed(digits_dir / "train", out, shard_size=30, format="parquet", progress=False)
    assert again.computed == [1] and again.skipped == [0, 2]
    table = ds.dataset(f"{out.split('://')[1]}/", filesystem=fs, format="parquet").to_table()
    local = tmp_path / "shard.parquet"
    fs.get_file(f"{out}/shard-00000.parquet", str(local))
    _, _, spec = read_parquet_features(local)
    with FeatureFile(reference) as f:
        assert table.column("id").to_pylist() == f.ids and table.column("label").to_pylist() == f.labels
        vectors = np.stack(table.column(f.layers[0]).to_pylist())
        np.testing.assert_array_equal(vectors, f.read())
        made = type(f.spec).from_json(spec)  # the spec rides in each file's metadata
        assert made.weights_sha256 == f.spec.weights_sha256 and made.layers == (f.layers[0],)
    result = CliRunner().invoke(main, ["merge", out])
    assert result.exit_code == 1 and "one table already" in result.output


def test_an_index_in_s3_answers_queries_in_s3(digit_features, digits_dir, s3):
    train = digit_features[0]
    result = CliRunner().invoke(main, ["index", str(train), "-l", "pre_logits", "-o", f"{s3}/index"])
    assert result.exit_code == 0, result.output
    upload_tree(digits_dir / "train" / "3", f"{s3}/queries")
    result = CliRunner().invoke(main, ["search", f"{s3}/index", f"{s3}/queries", "-k", "1", "-q"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (digits_dir / "train" / "3").glob("*.png"))
    for name in names:  # each query finds its own copy in the index first, at similarity 1
        best = next(line for line in result.output.splitlines() if line.startswith(name))
        assert f"3/{name}" in best and "1.0000" in best


def test_a_cached_rerun_from_s3_reads_no_object_until_one_changes(photo_dir, s3, tmp_path, monkeypatch):
    import s3fs

    import featurizer.inputs._keys as keys

    upload_tree(photo_dir, f"{s3}/photos")
    first = featurize(f"{s3}/photos", output=tmp_path / "a.h5", cache_dir=tmp_path / "c", progress=False)
    read = []
    real = keys.file_key
    monkeypatch.setattr(keys, "file_key", lambda path: read.append(path) or real(path))
    again = featurize(f"{s3}/photos", output=tmp_path / "b.h5", cache_dir=tmp_path / "c", progress=False)
    assert again.n_computed == 0 and read == []  # keyed from the listing's sizes and ETags
    # an object replaced by another photo: its new ETag makes it read, keyed and computed again
    changed = f"{s3}/photos/china/china_0.jpg"
    s3fs.S3FileSystem().pipe(changed, (photo_dir / "flower" / "flower_0.jpg").read_bytes())
    third = featurize(f"{s3}/photos", output=tmp_path / "c.h5", cache_dir=tmp_path / "c", progress=False)
    assert read == [changed] and third.n_computed == 0  # the same bytes as flower_0: already cached
    with FeatureFile(first.output) as a, FeatureFile(third.output) as c:
        row = a.ids.index("china/china_0.jpg")
        np.testing.assert_array_equal(c.read()[row], a.read()[a.ids.index("flower/flower_0.jpg")])


def test_a_new_object_in_s3_is_read_once_to_key_and_decode_it(photo_dir, s3, tmp_path, monkeypatch):
    import featurizer.storage._storage as storage

    upload_tree(photo_dir, f"{s3}/photos")
    requests = []
    real = storage._open_url
    monkeypatch.setattr(storage, "_open_url", lambda url: requests.append(url) or real(url))
    report = featurize(f"{s3}/photos", output=tmp_path / "a.h5", cache_dir=tmp_path / "c", progress=False)
    photos = sorted(f"{s3}/photos/{p.relative_to(photo_dir).as_posix()}" for p in photo_dir.rglob("*.jpg"))
    assert report.n_computed == len(photos) and sorted(requests) == photos  # not twice: keyed, then decoded
    same_features(featurize(photo_dir, output=tmp_path / "b.h5", progress=False).output, report.output)
    # with no room to keep them, each object is read again to decode it (and the vectors do not change)
    monkeypatch.setattr(storage, "KEEP_BYTES", 0)
    requests.clear()
    again = featurize(f"{s3}/photos", output=tmp_path / "c.h5", cache_dir=tmp_path / "c2", progress=False)
    assert sorted(requests) == sorted(photos * 2)
    same_features(report.output, again.output)


def test_a_cached_rerun_reads_no_member_of_a_tar_shard_or_cell_of_a_table(photo_dir, s3, tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    import featurizer.inputs._keys as keys

    paths = sorted(photo_dir.rglob("*.jpg"))
    shards = write_shards([(p.stem, {"jpg": p.read_bytes()}) for p in paths], tmp_path / "tars", per_shard=6)
    rows = [{"id": p.name, "image": p.read_bytes()} for p in paths]
    (tmp_path / "table").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "table" / "a.parquet", row_group_size=4)
    upload_tree(tmp_path / "table", f"{s3}/table")
    read = []
    real = keys.file_key
    monkeypatch.setattr(keys, "file_key", lambda path: read.append(path) or real(path))
    for source in (tmp_path / "tars", f"{s3}/table"):
        featurize(source, output=tmp_path / "a.h5", cache_dir=tmp_path / "c", progress=False, force=True)
        assert len(read) == len(paths)
        read.clear()
        again = featurize(source, output=tmp_path / "b.h5", cache_dir=tmp_path / "c", progress=False, force=True)
        assert again.n_computed == 0 and read == []  # keyed from the container's stamp and the member's name
    # a shard written again: its members are read again, the other shard's are not
    write_shards([(p.stem, {"jpg": p.read_bytes()}) for p in paths[6:][::-1]], tmp_path / "new", per_shard=6)
    os.replace(tmp_path / "new" / shards[0].name, shards[1])
    featurize(tmp_path / "tars", output=tmp_path / "c.h5", cache_dir=tmp_path / "c", progress=False, force=True)
    assert sorted(read) == sorted(f"tar://{p.stem}.jpg::{shards[1]}" for p in paths[6:])


def test_webdataset_shards_in_s3_give_the_same_vectors_as_on_disk(photo_dir, s3, tmp_path):
    paths = sorted(photo_dir.rglob("*.jpg"))
    items = [(f"{p.parent.name}/{p.stem}", {"jpg": p.read_bytes(), "cls": p.parent.name.encode()}) for p in paths]
    write_shards(items, tmp_path / "shards", per_shard=4)
    upload_tree(tmp_path / "shards", f"{s3}/shards")
    local = featurize(tmp_path / "shards", output=tmp_path / "local.h5", progress=False).output
    remote = featurize(f"{s3}/shards", output=tmp_path / "remote.h5", cache_dir=tmp_path / "c2", progress=False)
    assert remote.n_computed == len(paths)  # a cold cache: every member read from the bucket
    same_features(local, remote.output)


def test_more_bad_inputs_are_one_line_or_an_error_row(photo_dir, s3, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem()
    runner = CliRunner()
    # not a tar at all, under a .tar name
    (tmp_path / "fake.tar").write_bytes(b"\x89PNG not an archive" * 50)
    result = runner.invoke(main, ["featurize", str(tmp_path / "fake.tar"), "-o", str(tmp_path / "o.h5")])
    assert result.exit_code == 1 and "not a readable tar shard" in result.output and "Traceback" not in result.output
    # a Parquet file in the bucket cut short
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", "y"]}), tmp_path / "t.parquet")
    fs.pipe(f"{s3}/cut.parquet", (tmp_path / "t.parquet").read_bytes()[:40])
    result = runner.invoke(main, ["featurize", f"{s3}/cut.parquet", "-m", "minilm", "-o", str(tmp_path / "o.h5")])
    assert result.exit_code == 1 and "not a readable Parquet file" in result.output
    # a CSV in the bucket naming an image that is not there: that item is an error row, the rest are vectors
    names = [f"{p.parent.name}/{p.name}" for p in sorted(photo_dir.rglob("*.jpg"))[:3]]
    upload_tree(photo_dir, f"{s3}/photos")
    fs.pipe(f"{s3}/photos/list.csv", "\n".join(["path", *names, "china/missing.jpg"]).encode())
    report = featurize(f"{s3}/photos/list.csv", output=tmp_path / "csv.h5", progress=False)
    assert report.n_computed == 3 and [i for i, _ in report.errors] == ["3"]


def test_items_served_from_memory_are_featurized_without_their_files(photo_dir, tmp_path):
    """What a Ray actor does with the bytes Ray Data's readers sent: the files need not exist where it runs."""
    from dataclasses import replace

    from featurizer.inputs._inputs import read_inputs
    from featurizer.storage._storage import served_from_memory

    inputs = read_inputs(photo_dir)
    elsewhere = replace(inputs, sources=[str(tmp_path / "not-here" / Path(s).name) for s in inputs.sources])
    payloads = {gone: Path(there).read_bytes() for gone, there in zip(elsewhere.sources, inputs.sources)}
    with served_from_memory(payloads):
        served = featurize(elsewhere, output=tmp_path / "served.h5", cache_dir=tmp_path / "c1", progress=False)
    assert served.n_computed == len(inputs) and not served.errors
    folder = featurize(photo_dir, output=tmp_path / "folder.h5", cache_dir=tmp_path / "c2", progress=False).output
    with FeatureFile(folder) as a, FeatureFile(served.output) as b:
        np.testing.assert_array_equal(b.read(), a.read())
    # outside the block the same sources are what they are: missing
    after = featurize(elsewhere, output=tmp_path / "after.h5", cache_dir=tmp_path / "c3", progress=False)
    assert len(after.errors) == len(inputs) and "No such file" in after.errors[0][1]


def test_a_tar_shard_under_a_name_that_is_not_utf8_is_keyed_and_memoised(photo_dir, tmp_path):
    paths = sorted(photo_dir.rglob("*.jpg"))[:3]
    folder = tmp_path / os.fsdecode(b"caf\xe9")  # Latin-1 bytes, as an old archive might name it
    write_shards([(p.stem, {"jpg": p.read_bytes()}) for p in paths], folder, per_shard=3)
    first = featurize(folder, output=tmp_path / "a.h5", cache_dir=tmp_path / "c", progress=False)
    again = featurize(folder, output=tmp_path / "b.h5", cache_dir=tmp_path / "c", progress=False)
    assert first.n_computed == 3 and again.n_computed == 0 and not again.errors
    embed(folder, tmp_path / "emb", shard_size=2, cache_dir=tmp_path / "c", progress=False)  # its name in the manifest
    with FeatureFile(merge(tmp_path / "emb")) as merged, FeatureFile(again.output) as single:
        assert merged.ids == single.ids and merged.attrs["origin"] == single.attrs["origin"]


def test_a_location_answers_the_same_questions_local_or_in_s3(s3, tmp_path):
    """``location`` is the one type of a place: a folder in S3 and one on disk are asked alike."""
    from featurizer.storage import Url, location, upload

    (tmp_path / "card.json").write_text('{"a": 1}')
    upload(tmp_path / "card.json", f"{s3}/models/card.json")
    for folder in (location(f"{s3}/models"), location(f"file://{tmp_path}")):
        card = folder / "card.json"
        assert card.is_file() and card.exists() and card.read_text() == '{"a": 1}'
        assert card.name == "card.json" and card.with_suffix(".skops").name == "card.skops"
        assert card.parent == folder and not (folder / "missing.json").is_file()
        folder.mkdir(parents=True, exist_ok=True)  # nothing to make in S3; already there on disk
    assert isinstance(location(f"{s3}/models"), Url) and location(f"file://{tmp_path}") == tmp_path
    assert location(location(f"{s3}/x")) == f"{s3}/x"
