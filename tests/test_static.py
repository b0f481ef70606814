"""minilm-static: a token table distilled from the bundled MiniLM by model2vec, offline, once; a normal backbone."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from featurizer import FeatureFile, featurize
from featurizer.backbones import _static
from tests.test_flows import xfer
from tests.test_zeroshot import CLASSES, TEXTS

model2vec = pytest.importorskip("model2vec", reason="minilm-static is distilled by model2vec (the static extra)")
pytest.importorskip("model2vec.distill", reason="model2vec's distiller (skeletoken) is not installed")


@pytest.fixture(scope="module")
def static_texts(tmp_path_factory, static_tables):
    root = tmp_path_factory.mktemp("static")
    (root / "classes.txt").write_text(CLASSES)
    with open(root / "texts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(TEXTS * 3)  # three of each class: enough to cross-validate a head
    with pytest.MonkeyPatch.context() as patch:  # set before the per-test fixtures set it
        patch.setenv("FEATURIZER_STATIC_DIR", str(static_tables))
        featurize(root / "texts.csv", "minilm-static", output=root / "texts.h5", cache_dir=root / "c", progress=False)
    return root


def test_vectors_are_model2vecs_own_and_the_spec_names_the_recipe(static_texts, static_tables):
    with FeatureFile(static_texts / "texts.h5") as f:
        X, spec = f.read("embeddings"), f.spec
    assert spec.runtime == "numpy" and spec.layers == ("embeddings",) and X.shape == (18, 256)
    assert spec.preprocessing["distill"]["model2vec"] == model2vec.__version__
    (table,) = static_tables.glob("minilm-static-*")  # one table, in the shared folder
    expected = model2vec.StaticModel.from_pretrained(str(table)).encode([t for t, _ in TEXTS * 3])
    cosine = (X * expected).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.9999


def test_the_table_is_distilled_once_and_reused_by_other_cache_folders(static_texts, tmp_path, monkeypatch):
    def no_distilling(*args):
        raise AssertionError("distilled again")

    monkeypatch.setattr(_static, "distill", no_distilling)
    result = xfer("featurize", static_texts / "texts.csv", "-m", "minilm-static", "-o", tmp_path / "again.h5")
    assert "6 computed" in result.output  # 6 distinct texts, a new cache folder: vectors computed, the table reused


def test_a_distilling_crash_leaves_no_table_and_the_next_run_distils_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURIZER_STATIC_DIR", str(tmp_path / "tables"))

    class Interrupted:
        def save_pretrained(self, path):
            (Path(path) / "tokenizer.json").write_text("{")  # half written, then Ctrl-C
            raise KeyboardInterrupt

    monkeypatch.setattr(model2vec.distill, "distill_from_model", lambda *args, **kwargs: Interrupted())
    (tmp_path / "t.csv").write_text("text\nwhat is it ?\n")
    with pytest.raises(KeyboardInterrupt):
        featurize(
            tmp_path / "t.csv", "minilm-static", output=tmp_path / "t.h5", cache_dir=tmp_path / "c", progress=False
        )
    assert not list((tmp_path / "tables").iterdir())  # no table, not even a temporary one
    assert not (tmp_path / "t.h5").exists()


def test_heads_zero_shot_and_predict_work_on_static_vectors(static_texts, tmp_path):
    fitted = xfer("fit", static_texts / "texts.h5", "-o", tmp_path / "m.skops")
    assert "wrote" in fitted.output
    zs = xfer("fit", static_texts / "texts.h5", "--zero-shot", static_texts / "classes.txt", "-o", tmp_path / "z.skops")
    assert "wrote" in zs.output
    out = xfer("predict", tmp_path / "m.skops", static_texts / "texts.csv", "-o", tmp_path / "p.csv")
    with open(tmp_path / "p.csv") as f:
        assert [row["label"] for row in csv.DictReader(f)] == [label for _, label in TEXTS * 3], out.output


@pytest.mark.parametrize(
    ("model", "runtime", "says"),
    [
        ("minilm-static", "torch", "static table"),
        ("minilm-static", "onnx", "static table"),
        ("minilm", "numpy", "only"),
    ],
)
def test_a_runtime_that_cannot_run_the_model_is_one_line(static_texts, tmp_path, model, runtime, says):
    result = xfer(
        "featurize", static_texts / "texts.csv", "-m", model, "--runtime", runtime, "-o", tmp_path / "x.h5", ok=False
    )
    assert result.exit_code != 0 and says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.h5").exists()
