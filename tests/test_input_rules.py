"""Every input accounted for: the rule for each family of odd inputs and misuse (issue 14).

Each test builds real files of one family and checks the rule the README states for it: a
correct result, or one line that says what is wrong, never a traceback, a hang or a wrong file.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from featurizer import FeatureFile, FeaturizerError, InputError, ReadOptions, featurize, read_inputs

ROOT = Path(__file__).resolve().parents[1]


def xfer(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result


def features_of(path: Path) -> dict[str, np.ndarray]:
    with FeatureFile(path) as f:
        return dict(zip(f.ids, f.read()))


def errors_of(path: Path) -> dict[str, str]:
    with FeatureFile(path) as f:
        return dict(f.errors)


# --- Duplicates -------------------------------------------------------------------------------


def test_duplicate_items_good_and_bad_are_each_accounted_for(photo_dir, tmp_path):
    folder = tmp_path / "dups"
    shutil.copytree(photo_dir, folder)
    (folder / "china" / "empty_a.jpg").write_bytes(b"")
    (folder / "china" / "empty_b.jpg").write_bytes(b"")
    (folder / "flower" / "notjpeg_a.jpg").write_text("hello")
    (folder / "flower" / "notjpeg_b.jpg").write_text("hello")
    shutil.copy(folder / "china" / "china_0.jpg", folder / "flower" / "copy_of_china_0.jpg")
    out = tmp_path / "f.h5"
    featurize(folder, output=out, cache_dir=tmp_path / "c", progress=False, workers=0)
    vectors, errors = features_of(out), errors_of(out)
    assert set(errors) == {"china/empty_a.jpg", "china/empty_b.jpg", "flower/notjpeg_a.jpg", "flower/notjpeg_b.jpg"}
    assert len(vectors) == 13
    np.testing.assert_array_equal(vectors["china/china_0.jpg"], vectors["flower/copy_of_china_0.jpg"])


def test_duplicate_blank_texts_are_each_an_error_row(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("text,label\nhello there,a\n,b\n   ,a\nhello there,b\n")
    out = tmp_path / "t.h5"
    report = featurize(table, "minilm", output=out, cache_dir=tmp_path / "c", progress=False)
    assert report.n_ok == 2 and dict(report.errors) == {"1": "empty text", "2": "empty text"}
    assert sorted(features_of(out)) == ["0", "3"]


# --- Labels -----------------------------------------------------------------------------------


def test_labels_blank_null_nan_and_numbers_follow_one_rule(tmp_path):
    jsonl = tmp_path / "t.jsonl"
    rows = [
        {"text": "first, without a label field"},
        {"text": "one", "label": 1},
        {"text": "one again", "label": 1.0},
        {"text": "one as text", "label": "1"},
        {"text": "null", "label": None},
        {"text": "nan", "label": float("nan")},
        {"text": "two", "label": "two"},
    ]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))  # json writes NaN as NaN
    inputs = read_inputs(jsonl, "text")
    assert inputs.labels == ["", "1", "1", "1", "", "", "two"] and inputs.unlabelled == 3
    table = tmp_path / "t.csv"
    table.write_text("text,label\na,x\nb,\nc,nan\nd, y \n")
    assert read_inputs(table, "text").labels == ["x", "", "", "y"]


def test_fit_leaves_out_unlabelled_items_and_says_so(tmp_path):
    table = tmp_path / "t.csv"
    texts = ["the cat sat", "a dog ran", "cats purr", "dogs bark", "kitten naps", "puppy plays", "no label here"]
    labels = ["cat", "dog", "cat", "dog", "cat", "dog", ""]
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *zip(texts, labels)])
    out = tmp_path / "t.h5"
    report = featurize(table, "minilm", output=out, cache_dir=tmp_path / "c", progress=False)
    assert "1 items have no label" in report.summary()
    result = xfer("fit", out, "--head", "prototype", "-o", tmp_path / "m.skops")
    assert "1 items of" in result.output and "left out" in result.output


def test_one_example_per_class_fits_without_cross_validation(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("text,label\nthe cat sat,cat\na dog ran,dog\nbirds sing,bird\n")
    out = tmp_path / "t.h5"
    featurize(table, "minilm", output=out, cache_dir=tmp_path / "c", progress=False)
    result = xfer("fit", out, "-o", tmp_path / "m.skops")
    assert "single example" in result.output and "n/a (no CV)" in result.output
    predictions = tmp_path / "p.csv"
    xfer("predict", tmp_path / "m.skops", out, "-o", predictions)
    with open(predictions) as f:
        assert [row["label"] for row in csv.DictReader(f)] == ["cat", "dog", "bird"]


# --- Tables and text files --------------------------------------------------------------------


def test_table_oddities(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\nhello,a\n".encode())
    assert read_inputs(bom, "text").labels == ["a"]
    huge = tmp_path / "huge.csv"
    huge.write_text(f"text,label\n{'word ' * 40000},a\n")  # over the csv module's default field limit
    assert len(read_inputs(huge, "text").sources[0]) == 200000
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,label\nok,a\ntoo,many,fields\nfew\n")
    with pytest.raises(InputError, match=r"2 row\(s\).*line 3, 4.*--sep"):
        read_inputs(ragged, "text")
    lines = tmp_path / "t.jsonl"
    lines.write_text('{"text": "ok"}\n[1, 2]\n')
    with pytest.raises(InputError, match="line 2: a JSON list, not an object"):
        read_inputs(lines, "text")
    lines.write_text('{"text": \n')
    with pytest.raises(InputError, match="line 1: not valid JSON"):
        read_inputs(lines, "text")
    binary = tmp_path / "model.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InputError, match="binary file"):
        read_inputs(binary, "text")


def test_headerless_tables_positions_separators_and_encodings(tmp_path):
    agnews = tmp_path / "news.tsv"  # AG News as shipped: text<TAB>label-name, no header
    rows = [("Stocks fell sharply on Monday as oil rose", "Business"), ("The team won the final 3-1", "Sports")] * 3
    agnews.write_text("".join(f"{t}\t{label}\n" for t, label in rows))
    inputs = read_inputs(agnews, "text")
    assert inputs.sources[0] == rows[0][0] and inputs.labels[:2] == ["Business", "Sports"]
    assert "no header" in inputs.notes[0]
    swapped = tmp_path / "swapped.txt.csv"
    swapped.write_text("".join(f"{label};{t}\n" for t, label in rows))
    chosen = read_inputs(swapped, "text", ReadOptions(column="1", label_column="0", sep=";", header=False))
    assert chosen.sources[1] == rows[1][0] and chosen.labels[1] == "Sports"
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Où est le café ?\nÇa va\n".encode("latin-1"))
    garbled = read_inputs(latin, "text")
    assert garbled.replaced == 3 and "\ufffd" in garbled.sources[0]
    right = read_inputs(latin, "text", ReadOptions(encoding="latin-1"))
    assert right.sources == ["Où est le café ?", "Ça va"] and right.replaced == 0
    result = xfer("featurize", latin, "--cache-dir", tmp_path / "c", "-q", "-o", tmp_path / "l.h5")
    assert "3 bytes could not be decoded" in result.output


def test_inputs_given_to_the_wrong_command_or_model_get_a_message(photo_dir, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("text,label\nhello,a\n")
    for command in ("fit", "info"):
        result = xfer(command, table, ok=False)
        assert "is not a feature file" in result.output and "xfer featurize" in result.output
    result = xfer("featurize", table, "-m", "efficientnet_lite0", "--cache-dir", tmp_path / "c", ok=False)
    assert "efficientnet_lite0 is an image model" in result.output and "holds texts" in result.output
    result = xfer("featurize", photo_dir, "-m", "minilm", "--cache-dir", tmp_path / "c", ok=False)
    assert "minilm is a text model" in result.output and "holds images" in result.output


# --- File-system oddities -----------------------------------------------------------------------


def test_file_system_oddities_in_a_folder(photo_dir, tmp_path):
    folder = tmp_path / "odd"
    shutil.copytree(photo_dir, folder)
    bad_name = os.fsencode(folder / "china") + b"/caf\xe9.jpg"
    with open(bad_name, "wb") as f:
        f.write((photo_dir / "china" / "china_1.jpg").read_bytes())
    os.symlink(folder, folder / "flower" / "loop")  # a symbolic link back to the root
    os.mkfifo(folder / "flower" / "pipe.jpg")  # reading it would block forever
    import socket

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "flower" / "sock.jpg"))  # a socket: opening it as a file fails
    out = tmp_path / "f.h5"
    result = xfer("featurize", folder, "-o", out, "--cache-dir", tmp_path / "c", "-q", "--workers", "0")
    vectors = features_of(out)
    assert "china/caf\\xe9.jpg" in vectors and len(vectors) == 13  # read once, not once per loop
    with FeatureFile(out) as f:
        skipped = dict(f.errors)
    assert "FIFO" in skipped["flower/pipe.jpg"] and "already read" in skipped["flower/loop"]
    assert "socket" in skipped["flower/sock.jpg"]
    server.close()
    assert "skipped" in result.output


def test_an_input_is_never_overwritten_by_an_output(photo_dir, tmp_path):
    image = tmp_path / "a.jpg"
    shutil.copy(photo_dir / "china" / "china_0.jpg", image)
    before = image.read_bytes()
    for extra in ([], ["--force"]):
        result = xfer("featurize", image, "-o", image, "--cache-dir", tmp_path / "c", *extra, ok=False)
        assert "a.jpg" in result.output
    assert image.read_bytes() == before
    table = tmp_path / "t.csv"
    table.write_text("text\nhello\n")
    xfer("featurize", table, "-o", table, "--force", "--cache-dir", tmp_path / "c", ok=False)
    assert table.read_text() == "text\nhello\n"


# --- Non-finite vectors ------------------------------------------------------------------------


def test_non_finite_vectors_are_refused_with_their_ids(digit_features, tmp_path):
    from featurizer import FeatureFileWriter

    train = digit_features[0]
    with FeatureFile(train) as f:
        spec, ids, labels, X = f.spec.select(["pre_logits"]), f.ids, f.labels, f.read("pre_logits")
    X[3, 0], X[7, 5] = np.nan, np.inf
    bad = tmp_path / "bad.h5"
    with FeatureFileWriter(bad, spec, ids, labels) as w:
        w.write_layer("pre_logits", 0, X)
    for args in (("fit", bad), ("fewshot", bad, bad, "--shots", "1", "--runs", "1")):
        result = xfer(*args, ok=False)
        assert "2 item(s) have NaN or infinite vectors" in result.output and ids[3] in result.output


# --- The cache heals itself ----------------------------------------------------------------------


def test_a_damaged_cache_shard_is_quarantined_and_its_items_recomputed(photo_dir, tmp_path, caplog):
    cache, out = tmp_path / "c", tmp_path / "f.h5"
    featurize(photo_dir, output=out, cache_dir=cache, progress=False, batch_size=4)
    clean = features_of(out)
    shards = sorted(cache.glob("store-v1/*/shard-*.h5"))
    with open(shards[0], "r+b") as f:  # truncated, as by a full disk outside our control
        f.truncate(os.path.getsize(shards[0]) // 2)
    report = featurize(photo_dir, output=out, cache_dir=cache, progress=False, batch_size=4)
    assert report.n_computed == 4 and "is damaged" in caplog.text and "moved to" in caplog.text
    assert list(cache.glob("store-v1/*/quarantine/shard-*.h5"))
    again = features_of(out)
    for key, vector in clean.items():
        np.testing.assert_allclose(again[key], vector, rtol=1e-5, atol=1e-6)
    assert featurize(photo_dir, output=out, cache_dir=cache, progress=False).n_computed == 0


def test_a_full_disk_while_writing_a_feature_file_ends_in_one_line_and_keeps_the_old_file(photo_dir, tmp_path):
    out, cache = tmp_path / "f.h5", tmp_path / "c"
    featurize(photo_dir, output=out, cache_dir=cache, progress=False)
    before = out.read_bytes()
    limit = 40_000  # bytes a file may grow to: the cache is warm, so only the feature file is written
    code = (
        "import resource, signal, sys, cli\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "cli.main()\n"
    )
    args = [
        "featurize",
        str(photo_dir),
        "-o",
        str(out),
        "--cache-dir",
        str(cache),
        "-q",
        "--layer",
        "-1",
        "--layer",
        "-2",
    ]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr  # not a signal (a segmentation fault is -11)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert out.read_bytes() == before and not list(tmp_path.glob(".f.h5.*"))


# --- Outputs opened in spreadsheets ---------------------------------------------------------------


def test_prediction_cells_that_look_like_formulas_are_escaped(photo_dir, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photo_dir, folder)
    (folder / "china").rename(folder / "=HYPERLINK(1)")
    (folder / "flower").rename(folder / "@flower")
    out = tmp_path / "f.h5"
    featurize(folder, output=out, cache_dir=tmp_path / "c", progress=False)
    xfer("fit", out, "--head", "prototype", "-o", tmp_path / "m.skops")
    predictions = tmp_path / "p.csv"
    xfer("predict", tmp_path / "m.skops", out, "-o", predictions)
    with open(predictions) as f:
        rows = list(csv.DictReader(f))
    assert "'=HYPERLINK(1)/china_0.jpg" in [r["id"] for r in rows]
    assert {r["label"] for r in rows} == {"'=HYPERLINK(1)", "'@flower"}
    assert not [cell for r in rows for cell in r.values() if cell[:1] in "=+-@"]


# --- Label sets that do not overlap -----------------------------------------------------------------


def test_evaluate_warns_when_test_labels_are_not_the_models_classes(digit_features, tmp_path):
    from featurizer import FeatureFileWriter
    from pipelines import fit, save_model

    train, test, _ = digit_features
    result = fit(train, "prototype")
    save_model(result.model, result.card, tmp_path / "m.skops")
    with FeatureFile(test) as f:
        spec, ids, X = f.spec, f.ids, {layer: f.read(layer) for layer in f.layers}
    other = tmp_path / "letters.h5"
    with FeatureFileWriter(other, spec, ids, ["abcdefghij"[i % 10] for i in range(len(ids))]) as w:
        for layer, vectors in X.items():
            w.write_layer(layer, 0, vectors)
    out = xfer("evaluate", tmp_path / "m.skops", other, "-o", tmp_path / "r.json", "--png", tmp_path / "r.png")
    assert "warning: none of the test labels" in out.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["accuracy"] == 0 and set(report["unknown_labels"]) == set("abcdefghij")
    from pipelines import few_shot_files

    _, _, warnings = few_shot_files(train, other, shots=[1], runs=1, heads=["prototype"])
    assert "none of the test labels" in warnings[0]


def test_a_wrong_separator_is_named_instead_of_reading_the_header_as_data(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("text,label\nhello,a\n")
    with pytest.raises(InputError, match=r"looks like a header.*--sep"):
        read_inputs(table, "text", ReadOptions(sep=";"))
    assert read_inputs(table, "text", ReadOptions(sep=";", header=False)).sources == ["text,label", "hello,a"]


def test_a_reader_survives_another_process_compacting_the_cache(tmp_path):
    import hashlib

    from featurizer.cache._store import EmbeddingStore
    from featurizer.spec._spec import FeatureSpec

    spec = FeatureSpec("m", "image", "w", None, {}, "fp32", ("layer",), ("avg",))
    writer = EmbeddingStore(tmp_path, spec, "layer")
    keys = [hashlib.sha256(bytes([i])).digest() for i in range(6)]
    for i, key in enumerate(keys):
        writer.add([key], np.full((1, 3), i, np.float32))
    reader = EmbeddingStore(tmp_path, spec, "layer")
    assert all(reader.has(keys))  # indexed: it knows six shard files
    assert writer.compact(max_shards=2)  # another process merges them into one, deleting the six
    np.testing.assert_array_equal(reader.get(keys)[:, 0], np.arange(6))


def test_a_models_card_never_overwrites_another_file(digit_features, tmp_path):
    from pipelines import fit, save_model

    result = fit(digit_features[0], "prototype")
    with pytest.raises(FeaturizerError, match="card would be written over the model"):
        save_model(result.model, result.card, tmp_path / "model.json")
    (tmp_path / "notes.json").write_text('{"mine": true}')
    with pytest.raises(FeaturizerError, match=r"notes\.json exists and was not written by xfer"):
        save_model(result.model, result.card, tmp_path / "notes.skops")
    assert json.loads((tmp_path / "notes.json").read_text()) == {"mine": True}


def test_labels_files_are_read_strictly(tmp_path):
    """--labels: a header with id and label, or exactly two columns; a blank cell keeps the item's label."""
    from featurizer import ReadOptions

    table = tmp_path / "t.csv"
    table.write_text("text,label\nthe cat,animal\nthe car,thing\nthe sun,\n")
    wide = tmp_path / "wide.csv"
    wide.write_text("rank,id,source,predicted\n1,2,the sun,star\n")
    with pytest.raises(InputError, match="name its columns 'id' and 'label'"):
        read_inputs(table, "text", ReadOptions(labels=str(wide)))
    bare = tmp_path / "bare.csv"
    bare.write_text("2,star\n0,\n")  # no header; a blank cell keeps 'animal'
    read = read_inputs(table, "text", ReadOptions(labels=str(bare)))
    assert read.labels == ["animal", "thing", "star"]


# --- Repeated ids: each later item with an id already read is an error row -------------------


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    import io
    import tarfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _parquet(path: Path, rows: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _repeated_input(family: str, root: Path, photo_dir: Path) -> tuple[Path, str, list[str], str]:
    """(input, modality, ids expected to be read, the repeated id) of one input family."""
    photo = (photo_dir / "china" / "china_0.jpg").read_bytes()
    other = (photo_dir / "flower" / "flower_0.jpg").read_bytes()
    if family == "csv":
        (root / "t.csv").write_text("id,text,label\na,the cat,x\nb,the dog,y\na,the car,z\n")
        return root / "t.csv", "text", ["a", "b"], "a"
    if family == "tsv":
        (root / "t.tsv").write_text("id\ttext\nq1\tone\nq1\ttwo\nq2\tthree\nq1\tfour\n")
        return root / "t.tsv", "text", ["q1", "q2"], "q1"
    if family == "jsonl":
        (root / "t.jsonl").write_text('{"id": 7, "text": "one"}\n{"id": "7", "text": "two"}\n{"id": 8, "text": "x"}\n')
        return root / "t.jsonl", "text", ["7", "8"], "7"
    if family == "parquet":
        rows = [{"id": "p", "text": "one"}, {"id": "q", "text": "two"}, {"id": "p", "text": "three"}]
        return _parquet(root / "t.parquet", rows), "text", ["p", "q"], "p"
    if family == "parquet-folder":  # one table in two files: an id of the first file again in the second
        _parquet(root / "table" / "a.parquet", [{"id": "r1", "image": photo}])
        _parquet(root / "table" / "b.parquet", [{"id": "r2", "image": other}, {"id": "r1", "image": other}])
        return root / "table", "image", ["r1", "r2"], "r1"
    if family == "image-csv":  # a list of files (or URLs) with an id column
        (root / "a.jpg").write_bytes(photo)
        (root / "b.jpg").write_bytes(other)
        (root / "list.csv").write_text(f"id,path\nx,{root / 'a.jpg'}\nx,{root / 'b.jpg'}\n")
        return root / "list.csv", "image", ["x"], "x"
    if family == "tar-member-twice":  # the same member name written twice (tar -r appends)
        members = [("s0.jpg", photo), ("s0.cls", b"a"), ("s1.jpg", other), ("s0.jpg", other), ("s0.cls", b"b")]
        return _tar(root / "shards" / "shard-0.tar", members), "image", ["s0", "s1"], "s0"
    if family == "tar-suffix-case":  # one sample's image twice, under suffixes that differ in case only
        members = [("k.jpg", photo), ("k.JPG", other), ("m.jpg", other)]
        return _tar(root / "shards" / "shard-0.tar", members), "image", ["k", "m"], "k"
    if family == "texts-tar":
        members = [("t1.txt", b"one"), ("t2.txt", b"two"), ("t1.txt", b"again")]
        return _tar(root / "t.tar", members), "text", ["t1", "t2"], "t1"
    if family == "folder":  # a name that is not UTF-8 escapes to the id another file's name spells out
        (root / "photos").mkdir()
        with open(os.fsencode(root / "photos") + b"/caf\xe9.jpg", "wb") as f:
            f.write(photo)
        (root / "photos" / "caf\\xe9.jpg").write_bytes(other)
        names = sorted(os.listdir(os.fsencode(root / "photos")))
        assert len(names) == 2
        return root / "photos", "image", ["caf\\xe9.jpg"], "caf\\xe9.jpg"
    raise AssertionError(family)


REPEATED_FAMILIES = (
    "csv", "tsv", "jsonl", "parquet", "parquet-folder", "image-csv", "tar-member-twice", "tar-suffix-case",
    "texts-tar", "folder",
)  # fmt: skip


@pytest.mark.parametrize("family", REPEATED_FAMILIES)
def test_a_repeated_id_is_an_error_row_in_every_input_family(family, photo_dir, tmp_path):
    """One id, one item: a later item with an id already read is not dropped and not featurized
    under that id a second time; it is an error row saying where both are, and the summary counts it."""
    source, modality, ids, repeated = _repeated_input(family, tmp_path, photo_dir)
    inputs = read_inputs(source, modality)
    assert inputs.ids == ids
    rows = [(i, r) for i, r in inputs.skipped if r.startswith("duplicate id")]
    assert rows and {i for i, _ in rows} == {repeated}, inputs.skipped
    assert all(f"duplicate id {repeated!r}" in r for _, r in rows)
    assert any("repeat an id" in note for note in inputs.notes)
    model = "minilm" if modality == "text" else "efficientnet_lite0"
    out = tmp_path / "f.h5"
    result = xfer("featurize", source, "-m", model, "-o", out, "--cache-dir", tmp_path / "c", "--workers", "0")
    assert f"{len(rows)} skipped: {repeated}: duplicate id" in result.output
    assert "repeat an id already read" in result.output
    with FeatureFile(out) as f:
        assert f.ids == ids and [e for e in f.errors if e[1].startswith("duplicate id")] == rows
    assert "duplicate id" in (tmp_path / "f.errors.csv").read_text()


def test_where_a_repeated_id_was_seen_is_named(photo_dir, tmp_path):
    source, *_ = _repeated_input("csv", tmp_path, photo_dir)
    assert read_inputs(source, "text").skipped == [("a", "duplicate id 'a' (at line 4, also line 2): not featurized")]
    tar, *_ = _repeated_input("tar-member-twice", tmp_path, photo_dir)
    inputs = read_inputs(tar, "image")
    assert inputs.skipped == [  # one sample written twice: one error row
        ("s0", "duplicate id 's0' (an earlier copy of s0.jpg, s0.cls in shard-0.tar: tar extracts the last): "
         "not featurized")
    ]  # fmt: skip
    assert inputs.labels == ["b", ""]  # the label of the copy that is read


def test_the_same_content_under_two_ids_is_two_items(photo_dir, tmp_path):
    """Not a repeated id: a list that names one file twice (no id column) is two items, computed once."""
    photo = photo_dir / "china" / "china_0.jpg"
    (tmp_path / "list.csv").write_text(f"path\n{photo}\n{photo}\n")
    inputs = read_inputs(tmp_path / "list.csv")
    assert inputs.ids == ["0", "1"] and not inputs.skipped


@pytest.mark.parametrize("kind", ["labels", "groups"])
@pytest.mark.parametrize("header", [True, False])
def test_a_csv_of_ids_that_gives_an_id_twice_is_refused(kind, header, tmp_path):
    """--labels and --by groups: two values for one id would pick one silently; refused in one line."""
    from featurizer.inputs._inputs import id_value_columns

    table = tmp_path / "t.csv"
    table.write_text("text,label\nthe cat,animal\nthe car,thing\n")
    mapping = tmp_path / f"{kind}.csv"
    mapping.write_text(("id," + kind.rstrip("s") + "\n" if header else "") + "0,one\n1,two\n0,three\n")
    first = 2 if header else 1
    message = rf"id '0' is given twice \(lines {first} and {first + 2}\)"
    if kind == "labels":
        with pytest.raises(InputError, match=message):
            read_inputs(table, "text", ReadOptions(labels=str(mapping)))
        result = xfer("featurize", table, "-m", "minilm", "--labels", mapping, "-o", tmp_path / "f.h5", ok=False)
        assert "given twice" in result.output
    else:
        import csv as csv_module

        rows = [row for row in csv_module.reader(mapping.open()) if row]
        with pytest.raises(InputError, match=message):
            id_value_columns(rows, "group", {"0", "1"}, mapping)
