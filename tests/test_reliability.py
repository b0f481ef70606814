"""Concurrent runs, write errors, determinism, and property tests of the cache and the prototype head."""

from __future__ import annotations

import errno
import hashlib

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from featurizer import FeatureFile, FeaturizerError, featurize
from featurizer.cache._featurefile import FeatureFileWriter
from featurizer.cache._store import EmbeddingStore, lock_output, release_output
from featurizer.spec._spec import FeatureSpec
from pipelines import PrototypeClassifier

BATCH_TOLERANCE = 1e-4  # documented in the README: vectors may move this much with the batch size


def test_a_second_writer_of_the_same_file_is_refused(photo_dir, tmp_path):
    out = tmp_path / "f.h5"
    held = lock_output(out)  # as a first run would hold it
    try:
        with pytest.raises(FeaturizerError, match="another run is writing"):
            featurize(photo_dir, output=out, cache_dir=tmp_path / "c", progress=False)
    finally:
        release_output(held)
    assert featurize(photo_dir, output=out, cache_dir=tmp_path / "c", progress=False).n_ok == 12


def test_a_full_disk_ends_with_a_clear_message_and_keeps_the_cache(photo_dir, tmp_path, monkeypatch):
    out, cache = tmp_path / "f.h5", tmp_path / "c"
    args = ["featurize", str(photo_dir), "-o", str(out), "--cache-dir", str(cache), "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = out.read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(FeatureFileWriter, "write_layer", full)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "No space left on device" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == before and not list(tmp_path.glob(".f.h5.*.tmp"))
    monkeypatch.undo()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 computed, 12 from cache" in again.output


def test_vectors_are_deterministic_and_batch_size_moves_them_within_tolerance(photo_dir, questions, tmp_path):
    from featurizer.inputs._inputs import texts_as_inputs

    for inputs, model in ((photo_dir, "efficientnet_lite0"), (texts_as_inputs(questions), "minilm")):
        runs = {}
        for name, batch in (("a", 4), ("b", 4), ("c", 64)):
            out = tmp_path / f"{model}-{name}.h5"
            featurize(
                inputs,
                model,
                output=out,
                cache_dir=tmp_path / f"cache-{model}-{name}",
                batch_size=batch,
                progress=False,
            )
            with FeatureFile(out) as f:
                runs[name] = f.read()
        np.testing.assert_array_equal(runs["a"], runs["b"])
        assert np.abs(runs["a"] - runs["c"]).max() <= BATCH_TOLERANCE


# --- Property tests -----------------------------------------------------------------------

SPEC = FeatureSpec("m", "image", "w", None, {}, "fp32", ("layer",), ("avg",))


def content_vector(key: bytes) -> np.ndarray:
    """Vectors are a function of content, as in the real cache: duplicates carry equal vectors."""
    return np.frombuffer(hashlib.sha256(key).digest(), dtype=np.uint8)[:6].astype(np.float32)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.integers(0, 30), min_size=1, max_size=8)),
        st.tuples(st.just("crash"), st.integers(0, 30)),
        st.tuples(st.just("compact"), st.integers(1, 4)),
        st.tuples(st.just("reopen"), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_cache_keeps_every_finished_batch_through_crashes_and_compactions(tmp_path_factory, ops):
    root = tmp_path_factory.mktemp("store")
    store, added = EmbeddingStore(root, SPEC, "layer"), set()
    for op, arg in ops:
        if op == "add":
            keys = [hashlib.sha256(bytes([i])).digest() for i in arg]
            store.add(keys, np.stack([content_vector(k) for k in keys]))
            added.update(keys)
        elif op == "crash":  # a writer killed mid-batch leaves only its temporary file
            store.dir.mkdir(parents=True, exist_ok=True)
            (store.dir / f".tmp-shard-{arg}.h5").write_bytes(b"\x89HDF\r\n" + bytes(arg))
        elif op == "compact":
            store.compact(max_shards=arg)
        else:
            store = EmbeddingStore(root, SPEC, "layer")
        fresh = EmbeddingStore(root, SPEC, "layer")
        assert set(fresh.index()) == added  # nothing lost, nothing invented
        if added:
            keys = sorted(added)
            np.testing.assert_array_equal(fresh.get(keys), np.stack([content_vector(k) for k in keys]))


@settings(max_examples=30, deadline=None)
@given(
    data=st.integers(0, 10_000).map(lambda seed: np.random.default_rng(seed)),
    n_classes=st.integers(2, 5),
)
def test_prototypes_are_class_means_and_ignore_row_order(data, n_classes):
    y = np.repeat(np.arange(n_classes), 4)
    X = data.normal(size=(len(y), 6)).astype(np.float32) + y[:, None]
    model = PrototypeClassifier(metric="l2", center=False).fit(X, y)
    for c in range(n_classes):
        np.testing.assert_allclose(model.prototypes_[c], X[y == c].mean(axis=0), rtol=1e-5, atol=1e-5)
    order = data.permutation(len(y))
    shuffled = PrototypeClassifier(metric="l2", center=False).fit(X[order], y[order])
    queries = data.normal(size=(10, 6)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(queries), shuffled.predict(queries))


def test_a_reader_keeps_reading_while_a_run_replaces_the_file(photo_dir, tmp_path):
    out = tmp_path / "f.h5"
    featurize(photo_dir, output=out, cache_dir=tmp_path / "c", progress=False)
    with FeatureFile(out) as reader:
        before = reader.read()
        featurize(photo_dir, layers=["-3"], output=out, cache_dir=tmp_path / "c", progress=False)  # replaces the file
        np.testing.assert_array_equal(reader.read(), before)  # the open file is the old, complete one
    with FeatureFile(out) as after:
        assert after.layers == ["blocks.6"]


def test_a_csv_is_read_as_data_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.csv").write_text(
        "path,label\n\"__import__('os').system('touch pwned')\",a\n\"=cmd|' /C calc'!A0\",b\n$(touch pwned2),c\n"
    )
    report = featurize(tmp_path / "list.csv", cache_dir=tmp_path / "c", progress=False)
    assert report.n_ok == 0 and len(report.errors) == 3
    assert all("unreadable" in reason for _, reason in report.errors)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_fit_explains_classes_with_one_example(digits_dir, tmp_path):
    from pipelines import fit

    folder = tmp_path / "few"
    for digit, n in (("1", 6), ("2", 6), ("7", 1)):
        (folder / digit).mkdir(parents=True)
        for p in sorted((digits_dir / "train" / digit).iterdir())[:n]:
            (folder / digit / p.name).write_bytes(p.read_bytes())
    featurize(folder, output=tmp_path / "few.h5", cache_dir=tmp_path / "c", progress=False)
    result = fit(tmp_path / "few.h5", "prototype")
    assert result.card.classes == ["1", "2", "7"]
    assert len(result.warnings) == 1 and "single example (7)" in result.warnings[0]


def test_cuda_out_of_memory_halves_the_batch_and_goes_on(photo_dir, tmp_path, monkeypatch):
    """Simulated: a 'GPU' that fits at most 3 images; the vectors equal an unconstrained run's."""
    import torch

    from featurizer import Extractor, read_inputs

    inputs = read_inputs(photo_dir)
    plain = Extractor.for_model(cache_dir=tmp_path / "a", progress=False, runtime="torch")
    keys, _ = plain.keys(inputs)
    plain.ensure(inputs, keys)
    expected = plain.vectors("pre_logits", keys)

    small = Extractor.for_model(cache_dir=tmp_path / "b", progress=False, batch_size=12, runtime="torch")
    backbone = small._load()
    original = backbone.forward
    sizes = []

    def tight(x, layers):
        sizes.append(len(x))
        if len(x) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(x, layers)

    monkeypatch.setattr(backbone, "forward", tight)
    monkeypatch.setattr(backbone, "on_device", torch.as_tensor)  # stay on the CPU
    small.device = torch.device("cuda")
    small.ensure(inputs, keys)
    assert sizes[:3] == [12, 6, 3] and max(sizes[3:]) <= 3  # halved until it fit, then stayed there
    np.testing.assert_allclose(small.vectors("pre_logits", keys), expected, rtol=1e-4, atol=1e-5)
