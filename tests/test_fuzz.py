"""Fuzzing the front door: random folders and tables through ``xfer featurize``.

Hypothesis builds folders (good, corrupt, empty, duplicate and text-as-image files, odd names,
links, FIFOs) and CSV/JSONL files (odd encodings, byte-order marks, blanks, ragged rows, mixed
label types). Whatever it builds, the command ends with exit code 0 or one line and no traceback;
every input either has a vector or an error row with a reason; and the vectors equal those of a
clean run on the same content. ``FEATURIZER_FUZZ_EXAMPLES`` runs more examples (default 12 each).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cli import main
from featurizer import FeatureFile

EXAMPLES = int(os.environ.get("FEATURIZER_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 12,  # CI runs the same examples every time; longer runs explore
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _png(seed: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


GOOD = [_png(0), _png(1, "L"), _png(2, "RGBA"), _png(3, "P")]
BAD = [b"", b"not an image at all", GOOD[0][:40], b"\x89PNG\r\n\x1a\n" + b"\x00" * 30]
NAMES = st.text(alphabet=st.sampled_from(list("abcXYZ019 _-=+@.,()é漢")), min_size=1, max_size=12).filter(
    lambda n: not n.startswith(".") and n.strip() == n
)

files = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),  # class folder
        NAMES,
        st.sampled_from([".png", ".jpg", ".PNG", ".gif", ""]),
        st.one_of(
            st.tuples(st.just("good"), st.integers(0, len(GOOD) - 1)),
            st.tuples(st.just("bad"), st.integers(0, len(BAD) - 1)),
        ),
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Vectors of the good images from a clean run, by content."""
    root = tmp_path_factory.mktemp("clean")
    for i, data in enumerate(GOOD):
        (root / f"{i}.png").write_bytes(data)
    cache = root.parent / f"{root.name}-cache"
    out = root.parent / f"{root.name}.h5"  # beside the input folder: an output never lies inside an input
    result = CliRunner().invoke(main, ["featurize", str(root), "-o", str(out), "--cache-dir", str(cache), "-q"])
    assert result.exit_code == 0, result.output
    with FeatureFile(out) as f:
        return {GOOD[int(Path(i).stem)]: v for i, v in zip(f.ids, f.read())}, cache


def _check_run(result, out: Path, expected_ids: set[str]) -> FeatureFile | None:
    assert "Traceback" not in result.output, result.output
    if result.exit_code != 0:
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.output
        return None
    with FeatureFile(out) as f:
        ids, errors = f.ids, dict(f.errors)
    assert not set(ids) & set(errors)
    assert set(ids) | set(errors) >= expected_ids, expected_ids - set(ids) - set(errors)
    assert all(reason for reason in errors.values())
    return FeatureFile(out)


@FUZZ
@given(spec=files, link=st.booleans(), fifo=st.booleans())
def test_random_folders_account_for_every_file(reference, tmp_path_factory, spec, link, fifo):
    vectors, cache = reference
    root = tmp_path_factory.mktemp("fuzz")
    content = {}
    for folder, name, ext, (kind, index) in spec:
        path = root / folder / f"{name}{ext}"
        path.parent.mkdir(exist_ok=True)
        data = GOOD[index] if kind == "good" else BAD[index]
        path.write_bytes(data)
        content[f"{folder}/{name}{ext}"] = data
    if link:
        (root / "a").mkdir(exist_ok=True)
        os.symlink(root, root / "a" / "loop")
    if fifo:
        (root / "a").mkdir(exist_ok=True)
        os.mkfifo(root / "a" / "fifo.png")
        content["a/fifo.png"] = None
    out = root.parent / f"{root.name}.h5"
    args = ["featurize", str(root), "-o", str(out), "--cache-dir", str(cache), "-q", "--workers", "0"]
    result = CliRunner().invoke(main, args)
    f = _check_run(result, out, set(content))
    if f is None:
        assert "no image files" in result.output  # the only refusal: nothing readable at all
        return
    with f:
        for item_id, vector in zip(f.ids, f.read()):
            np.testing.assert_allclose(vector, vectors[content[item_id]], rtol=1e-4, atol=1e-5)
    shutil.rmtree(root)


TEXTS = ["What is the capital of France ?", "Who wrote Hamlet ?", "café au lait", "", "   ", "a"]
LABELS = st.one_of(
    st.none(), st.sampled_from(["x", "y", "", " x ", "1", "1.0"]), st.integers(0, 2), st.floats(allow_nan=True)
)


@FUZZ
@given(
    rows=st.lists(st.tuples(st.sampled_from(TEXTS), LABELS, st.integers(0, 3)), min_size=1, max_size=8),
    kind=st.sampled_from(["csv", "tsv", "jsonl"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]),
    ragged=st.booleans(),
)
def test_random_tables_account_for_every_row(tmp_path_factory, rows, kind, encoding, ragged):
    root = tmp_path_factory.mktemp("table")
    path = root / f"t.{kind}"
    if kind == "jsonl":
        lines = [json.dumps({"text": t, **({} if extra == 0 else {"label": label})}) for t, label, extra in rows]
        text = "\n".join(lines)
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t" if kind == "tsv" else ",")
        writer.writerow(["text", "label"])
        for t, label, extra in rows:
            writer.writerow([t, "" if label is None else label, *(["extra"] if ragged and extra == 3 else [])])
        text = buf.getvalue()
    path.write_bytes(text.encode(encoding, errors="replace"))
    out = root / "t.h5"
    cache = root.parent / "text-cache"  # shared across examples: texts repeat
    args = ["featurize", str(path), "-m", "minilm", "-o", str(out), "--cache-dir", str(cache), "-q"]
    result = CliRunner().invoke(main, args)
    f = _check_run(result, out, {str(i) for i in range(len(rows))})
    if f is None:
        assert ragged or "holds no rows" in result.output, result.output
        return
    with f:
        errors = dict(f.errors)
        assert all(not TEXTS_BY_ID(rows, i).strip() for i in errors)  # only blank texts fail
        labels = f.labels
        if labels is not None:
            assert all(label == label.strip() for label in labels) and "nan" not in labels
    shutil.rmtree(root)


def TEXTS_BY_ID(rows, item_id: str) -> str:
    return rows[int(item_id)][0]


# --- Model files and cards: whatever a file claims to be, predict and evaluate end in one line --------------

MODEL_EXAMPLES = max(4, EXAMPLES // 2)  # each example runs predict or evaluate: keep the suite fast
MODEL_FUZZ = settings(FUZZ, max_examples=MODEL_EXAMPLES)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, width=32) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
CARD_KEYS = ["spec", "classes", "head", "params", "cv", "cv_score", "sha256", "train", "calibration"]
CARD_KEYS += ["adaptation", "label_column", "tasks", "format", "versions"]
SPEC_KEYS = ["model", "modality", "weights", "weights_sha256", "preprocessing", "precision", "layers", "pooling"]
CARD_PATHS = [*CARD_KEYS, *(f"spec.{k}" for k in [*SPEC_KEYS, "runtime"])]
LAYER_LISTS = st.sampled_from([["blocks.6"], ["nope"], ["pre_logits", "blocks.6"], []])
CARD_EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(CARD_PATHS), JSON_VALUES),
        st.tuples(st.just("drop"), st.sampled_from(CARD_PATHS), st.none()),
        st.tuples(st.just("layers"), LAYER_LISTS, st.none()),
    ),
    min_size=1,
    max_size=3,
)


@pytest.fixture(scope="module")
def saved_model(digit_features, tmp_path_factory):
    from pipelines import fit, save_model

    path = tmp_path_factory.mktemp("fuzz-model") / "m.skops"
    result = fit(digit_features[0], "prototype")
    save_model(result.model, result.card, path)
    return path


def _one_line_or_success(result) -> None:
    """Exit 0, or a single 'Error: ...' line: never a traceback, never an exception other than the exit."""
    assert "Traceback" not in result.output, result.output
    if result.exit_code != 0:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output


def _model_command(command: str, model: Path, test: Path, out: Path, trust: bool) -> list[str]:
    args = [command, str(model), str(test), "-o", str(out / f"{command}.out")]
    args += ["--png", str(out / "cm.png")] if command == "evaluate" else []
    return args + (["--trust"] if trust else [])


def _edited(card: dict, edits) -> dict:
    card = json.loads(json.dumps(card))
    for kind, where, value in edits:
        if kind == "layers":
            if isinstance(card.get("spec"), dict):
                card["spec"]["layers"], card["spec"]["pooling"] = where, ["avg"] * len(where)
            continue
        holder, key = (card.get("spec"), where[5:]) if where.startswith("spec.") else (card, where)
        if not isinstance(holder, dict):
            continue
        if kind == "drop":
            holder.pop(key, None)
        else:
            holder[key] = value
    return card


@MODEL_FUZZ
@given(
    edits=st.one_of(CARD_EDITS, st.binary(max_size=40), JSON_VALUES.map(lambda v: ("whole", v))),
    command=st.sampled_from(["predict", "evaluate"]),
    trust=st.booleans(),
)
def test_damaged_or_foreign_cards_end_in_one_line(saved_model, digit_features, tmp_path_factory, edits, command, trust):
    from featurizer import FeaturizerError
    from pipelines import load_model

    root = tmp_path_factory.mktemp("card")
    model = root / "m.skops"
    shutil.copy(saved_model, model)
    card = json.loads(saved_model.with_suffix(".json").read_text())
    if isinstance(edits, bytes):
        text = edits
    elif isinstance(edits, tuple):
        text = json.dumps(edits[1]).encode()
    else:
        text = json.dumps(_edited(card, edits)).encode()
    model.with_suffix(".json").write_bytes(text)
    with contextlib.suppress(FeaturizerError):  # the library's readers raise the library's errors only
        load_model(model, trust=trust)
    result = CliRunner().invoke(main, _model_command(command, model, digit_features[1], root, trust))
    _one_line_or_success(result)
    shutil.rmtree(root)


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in dict(members).items():
            z.writestr(name, data)
    return buf.getvalue()


MODEL_BYTES = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("random"), st.binary(max_size=64).filter(lambda b: not b.startswith(b"\x80")), st.just(0)),
    st.tuples(
        st.just("zip"),
        st.lists(st.tuples(st.sampled_from(["schema.json", "a.npy", "x"]), st.binary(max_size=20)), max_size=3),
        st.just(0),
    ),
    st.tuples(st.just("skops"), JSON_VALUES, st.just(0)),
    st.tuples(st.just("pickle"), JSON_VALUES, st.just(0)),
)


@MODEL_FUZZ
@given(
    edit=MODEL_BYTES,
    matching_card=st.booleans(),
    command=st.sampled_from(["predict", "evaluate"]),
    trust=st.booleans(),
)
def test_damaged_or_foreign_model_files_end_in_one_line(
    saved_model, digit_features, tmp_path_factory, edit, matching_card, command, trust
):
    """Flipped bytes, truncations, random bytes, zips that are not skops files, skops files and pickles
    of plain data, named .skops, with a card (whose SHA-256 matches, or not), trusted or not."""
    import pickle

    import skops.io as sio

    from featurizer.storage._hashing import file_sha256

    root = tmp_path_factory.mktemp("model")
    model = root / "m.skops"
    data = saved_model.read_bytes()
    kind, a, b = edit
    if kind == "flip":
        data = bytearray(data)
        data[a % len(data)] ^= b
        data = bytes(data)
    elif kind == "truncate":
        data = data[: a % len(data)]
    elif kind == "random":
        data = a
    elif kind == "zip":
        data = _zip(a)
    elif kind == "pickle":
        data = pickle.dumps(a)  # plain data: unpickling it runs nothing
    model.write_bytes(data)
    if kind == "skops":
        sio.dump(a, model)
    card = json.loads(saved_model.with_suffix(".json").read_text())
    if matching_card:
        card["sha256"] = file_sha256(model)
    model.with_suffix(".json").write_text(json.dumps(card))
    result = CliRunner().invoke(main, _model_command(command, model, digit_features[1], root, trust))
    _one_line_or_success(result)
    if kind != "flip" and result.exit_code == 0:
        raise AssertionError(f"{kind}: a file that is no model was used: {result.output}")
    shutil.rmtree(root)
