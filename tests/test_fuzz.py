"""Fuzzing the front door: random folders and tables through ``xfer featurize``.

Hypothesis builds folders (good, corrupt, empty, duplicate and text-as-image files, odd names,
links, FIFOs) and CSV/JSONL files (odd encodings, byte-order marks, blanks, ragged rows, mixed
label types). Whatever it builds, the command ends with exit code 0 or one line and no traceback;
every input either has a vector or an error row with a reason; and the vectors equal those of a
clean run on the same content. ``FEATURIZER_FUZZ_EXAMPLES`` runs more examples (default 12 each).
"""

from __future__ import annotations

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
    cache = root / "cache"
    out = root / "clean.h5"
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
