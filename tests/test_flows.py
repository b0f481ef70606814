"""Saved models, predict, evaluate and the few-shot protocol, through the library and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from featurizer import FeatureFile, FeaturizerError, featurize
from pipelines import UntrustedModelError, fit, load_model, model_features, sample_few_shot, save_model


def xfer(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def saved(digit_features, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "digits.skops"
    result = fit(digit_features[0], "prototype")
    save_model(result.model, result.card, path)
    return path


def test_saved_model_round_trip_and_sidecar(saved, digit_features, digits_dir):
    model, card = load_model(saved)
    side = json.loads(saved.with_suffix(".json").read_text())
    assert side["spec"]["model"] == "efficientnet_lite0" and side["spec"]["layers"] == ["pre_logits"]
    assert side["classes"] == [str(d) for d in range(10)] and side["cv"] and side["versions"]["scikit-learn"]
    X, y, *_ = model_features(card, digit_features[1])
    assert model.named_steps["head"].score(X, y) > 0.4  # chance is 0.1
    paths = sorted(str(p) for p in (digits_dir / "test").rglob("*.png"))  # end to end, from raw images
    np.testing.assert_array_equal(model.predict(paths), model.named_steps["head"].predict(X))


def test_a_tampered_model_is_refused_unless_trusted(saved, tmp_path):
    bad = tmp_path / "m.skops"
    bad.write_bytes(saved.read_bytes() + b"\0")
    bad.with_suffix(".json").write_text(saved.with_suffix(".json").read_text())
    with pytest.raises(UntrustedModelError, match="changed after it was saved"):
        load_model(bad)
    model, _ = load_model(bad, trust=True)  # zip readers ignore trailing bytes: it still loads when trusted
    assert hasattr(model, "predict")
    (tmp_path / "lonely.skops").write_bytes(saved.read_bytes())
    for trust in (False, True):  # without a card the feature spec is unknown, trusted or not
        with pytest.raises(UntrustedModelError, match="has no card"):
            load_model(tmp_path / "lonely.skops", trust=trust)
    result = xfer("predict", tmp_path / "lonely.skops", tmp_path, "--trust", ok=False)
    assert result.exit_code == 1 and "has no card" in result.output and "Traceback" not in result.output


class Planted:
    """A type no saved model of ours holds: if it were rebuilt, its __setstate__ would run."""

    def __setstate__(self, state):
        Path(state["marker"]).write_text("code ran")


def test_a_model_file_sent_with_its_card_runs_no_code(saved, tmp_path):
    import skops.io as sio

    from featurizer.storage._hashing import file_sha256

    evil = tmp_path / "gift.skops"
    planted = Planted()
    planted.__dict__["marker"] = str(tmp_path / "ran.txt")
    sio.dump({"model": planted}, evil)
    card = json.loads(saved.with_suffix(".json").read_text())
    card["sha256"] = file_sha256(evil)  # the card proves integrity, not origin: it matches
    evil.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(UntrustedModelError, match="Planted"):
        load_model(evil)
    result = xfer("predict", evil, tmp_path, ok=False)
    assert "holds types this tool does not load" in result.output
    assert not (tmp_path / "ran.txt").exists()


def test_old_joblib_models_load_only_when_trusted(saved, tmp_path):
    import joblib

    from featurizer.storage._hashing import file_sha256

    model, _ = load_model(saved)
    old = tmp_path / "old.joblib"
    joblib.dump(model, old)
    card = json.loads(saved.with_suffix(".json").read_text())
    card["sha256"] = file_sha256(old)
    old.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(UntrustedModelError, match=r"joblib pickle.*can run code"):
        load_model(old)
    assert hasattr(load_model(old, trust=True)[0], "predict")


def test_features_with_another_spec_are_refused(saved, digits_dir, tmp_path):
    _, card = load_model(saved)
    other = tmp_path / "gem.h5"
    featurize(digits_dir / "test", layers=["-3"], pooling="gem", output=other, cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(FeaturizerError, match="layer 'pre_logits' is missing"):
        model_features(card, other)
    text = tmp_path / "t.h5"
    featurize(_texts(tmp_path), "minilm", output=text, cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(FeaturizerError, match="model: 'efficientnet_lite0' vs 'minilm'"):
        model_features(card, text)


def _texts(tmp_path):
    (tmp_path / "t.txt").write_text("one\ntwo\n")
    return tmp_path / "t.txt"


def test_fit_predict_evaluate_from_the_cli(digit_features, digits_dir, tmp_path):
    train, test, cache = digit_features
    model = tmp_path / "models" / "d.joblib"
    out = xfer("fit", train, "--head", "logreg", "--baseline", "-o", model).output
    assert "pre_logits" in out and "baseline: raw pixels" in out and model.exists()
    preds = tmp_path / "p.csv"
    out = xfer("predict", model, digits_dir / "test", "-o", preds, "--cache-dir", cache).output
    assert "36 predictions" in out or "predictions written" in out
    with open(preds) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["id"] == "0/" + sorted((digits_dir / "test" / "0").iterdir())[0].name
    assert list(rows[0])[:3] == ["id", "label", "p_0"] and len(rows[0]) == 12
    assert abs(sum(float(rows[0][f"p_{d}"]) for d in range(10)) - 1) < 1e-4
    correct = np.mean([r["label"] == r["id"].split("/")[0] for r in rows])
    report_path, png = tmp_path / "r.json", tmp_path / "cm.png"
    out = xfer("evaluate", model, test, "-o", report_path, "--png", png).output
    report = json.loads(report_path.read_text())
    assert abs(report["accuracy"] - correct) < 1e-9 and "macro-F1" in out
    assert set(report["per_class"]["3"]) >= {"precision", "recall"}
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_few_shot_sampler_counts_and_seeds():
    y = np.array(["a"] * 30 + ["b"] * 20 + ["c"] * 3)
    idx = sample_few_shot(y, 8, seed=1)
    assert dict(zip(*np.unique(y[idx], return_counts=True))) == {"a": 8, "b": 8, "c": 3}
    assert len(set(idx)) == len(idx)
    np.testing.assert_array_equal(idx, sample_few_shot(y, 8, seed=1))
    assert not np.array_equal(idx, sample_few_shot(y, 8, seed=2))


def test_fewshot_cli_compares_heads_in_one_table(digit_features, tmp_path):
    train, test, _ = digit_features
    png = tmp_path / "curve.png"
    out = xfer(
        "fewshot", train, test, "--shots", "1,4", "--runs", "3", "--head", "logreg", "--head", "prototype", "--png", png
    ).output
    lines = out.strip().splitlines()
    header = next(line for line in lines if "head " in line)  # stderr's progress bar may share the line
    assert "N=1" in header and "N=4" in header
    assert any(line.startswith("logreg") and "±" in line for line in lines)
    assert any(line.startswith("prototype") and "±" in line for line in lines)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_fit_refuses_unlabelled_or_single_class_files(digits_dir, tmp_path):
    single = tmp_path / "one" / "7"
    single.mkdir(parents=True)
    for p in list((digits_dir / "train" / "7").iterdir())[:3]:
        (single / p.name).write_bytes(p.read_bytes())
    featurize(tmp_path / "one", output=tmp_path / "one.h5", cache_dir=tmp_path / "c", progress=False)
    result = xfer("fit", tmp_path / "one.h5", "-o", tmp_path / "m.joblib", ok=False)
    assert result.exit_code == 1 and "single class ('7')" in result.output


def test_a_saved_model_does_not_depend_on_where_the_weights_were_installed(saved):
    import dataclasses

    from featurizer import FeaturizerError, get_config
    from featurizer.backbones._resolve import weights_for_spec
    from featurizer.spec._weights import default_weights

    _, card = load_model(saved)
    moved = dataclasses.replace(card.spec, weights="/another/venv/site-packages/efficientnet-lite0.pth")
    config = get_config(moved.model)
    assert weights_for_spec(config, moved) == default_weights(config)  # same SHA-256: the installed default serves
    other = dataclasses.replace(moved, weights_sha256="0" * 64)
    with pytest.raises(FeaturizerError, match="weights these features were made with are not here"):
        weights_for_spec(config, other)


def test_fit_can_be_steered_and_says_when_raw_pixels_win(digit_features, tmp_path):
    train = digit_features[0]
    fixed = xfer("fit", train, "--C", "0.5", "-o", tmp_path / "c.skops").output
    assert "{'C': 0.5}" in fixed and "n/a (no CV)" in fixed
    _, card = load_model(tmp_path / "c.skops")
    assert card.params["C"] == 0.5
    plain = xfer("fit", train, "--no-cv", "--head", "knn", "-o", tmp_path / "k.skops").output
    assert "n/a (no CV)" in plain
    refused = xfer("fit", train, "--C", "1", "--layer", "auto", "-o", tmp_path / "a.skops", ok=False)
    assert refused.exit_code == 1 and "auto chooses by cross-validation" in refused.output
    # 12 digit scans a class: raw pixels beat ImageNet features by far here (the demo's lesson)
    out = xfer("fit", train, "--baseline", "--n-jobs", "1", "-o", tmp_path / "b.skops").output
    assert "note: the baseline (raw pixels" in out and "beats the pretrained features" in out


def test_text_baseline_is_tfidf_through_the_fast_search(tmp_path):
    table = tmp_path / "t.csv"
    rows = [(f"the cat number {i} sat on the mat", "cat") for i in range(8)]
    rows += [(f"the dog number {i} ran in the park", "dog") for i in range(8)]
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    featurize(table, "minilm", output=tmp_path / "t.h5", cache_dir=tmp_path / "c", progress=False)
    result = fit(tmp_path / "t.h5", "logreg", baseline=True)
    assert result.baseline.name == "tf-idf" and result.baseline.mean > 0.9


# --- Files that are not what they claim: one line, no traceback, nothing run (issue 28, family 6) ---------


def _plain_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "not a model")
    return buf.getvalue()


def _skops_of(obj) -> bytes:
    import io

    import skops.io as sio

    buf = io.BytesIO()
    sio.dump(obj, buf)
    return buf.getvalue()


def _foreign_classifier(n_features: int, classes: int) -> bytes:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    return _skops_of(LogisticRegression().fit(rng.normal(size=(20, n_features)), [str(i % classes) for i in range(20)]))


HOSTILE_MODELS = {  # bytes of a file named .skops, and what the one line must say
    "a zip that is not a skops file": (_plain_zip, "is a zip but not a skops model file"),
    "a skops file of a dict": (lambda: _skops_of({"a": [1, 2]}), "is not a model: it holds a dict"),
    "a pickle of a dict": (lambda: __import__("pickle").dumps({"a": 1}), "pickle"),
    "random bytes": (lambda: bytes(range(7, 200)), "neither a skops file (a zip) nor a joblib pickle"),
    "JSON": (lambda: b'{"classes": ["a"]}', "neither a skops file (a zip) nor a joblib pickle"),
    "an empty file": (lambda: b"", "neither a skops file (a zip) nor a joblib pickle"),
    "a classifier of 64 features": (lambda: _foreign_classifier(64, 10), "expects 64 features"),
    "a classifier of other classes": (lambda: _foreign_classifier(1280, 3), "lists classes"),
}


@pytest.mark.parametrize("trust", [False, True], ids=["untrusted", "trusted"])
@pytest.mark.parametrize("command", ["predict", "evaluate", "suggest"])
@pytest.mark.parametrize("kind", list(HOSTILE_MODELS))
def test_a_file_that_is_not_our_model_ends_in_one_line(kind, command, trust, saved, digit_features, tmp_path):
    """Named .skops, with a card whose SHA-256 matches it (the card proves integrity, not origin)."""
    from featurizer.storage._hashing import file_sha256

    make, said = HOSTILE_MODELS[kind]
    model = tmp_path / "gift.skops"
    model.write_bytes(make())
    card = json.loads(saved.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**card, "sha256": file_sha256(model)}))
    args = [command, model, digit_features[1], "-o", tmp_path / "out", *(["--trust"] * trust)]
    result = xfer(*args, *(["--png", tmp_path / "cm.png"] if command == "evaluate" else []), ok=False)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output
    if kind == "a pickle of a dict":
        said = "is not a model: it holds a dict" if trust else "loading it can run code, so it was not loaded"
    assert said in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def _card_edit(edit):
    def apply(card: dict) -> str:
        card = json.loads(json.dumps(card))
        spec = card["spec"]
        if edit == "layer the model does not read":
            spec["layers"], spec["pooling"] = ["blocks.6"], ["avg"]
        elif edit == "layer the backbone does not have":
            spec["layers"], spec["pooling"] = ["nope"], ["avg"]
        elif edit == "layers as a string":
            spec["layers"] = "pre_logits"
        elif edit == "spec a number":
            card["spec"] = 5
        elif edit == "classes a string":
            card["classes"] = "0123456789"
        elif edit == "no head":
            del card["head"]
        elif edit == "task without a name":
            card["tasks"] = [{"kind": "classes"}]
        elif edit == "train a number":
            card["train"] = 7
        elif edit == "adaptation the model lacks":
            card["adaptation"] = {"method": "coral", "target": "/nowhere.h5"}
        elif edit == "classes in another order":
            card["classes"] = card["classes"][::-1]
        elif edit == "another head":
            card["head"] = "knn" if card["head"] != "knn" else "logreg"
        return json.dumps(card)

    return apply


HOSTILE_CARDS = {
    "not JSON": (lambda card: "{not json", "not JSON"),
    "JSON that is a list": (lambda card: "[1, 2]", "it holds a list, not an object"),
    "an object missing keys": (lambda card: "{}", "it has no 'spec', 'classes', 'head'"),
    "spec a number": (_card_edit("spec a number"), "'spec' must be an object"),
    "classes a string": (_card_edit("classes a string"), "'classes' must be a list of class names"),
    "layers as a string": (_card_edit("layers as a string"), "'spec.layers' must be a non-empty list"),
    "no head": (_card_edit("no head"), "it has no 'head'"),
    "task without a name": (_card_edit("task without a name"), "'tasks[0].name' must be a string"),
    "train a number": (_card_edit("train a number"), "'train' must be a string"),
    "layer the model does not read": (_card_edit("layer the model does not read"), "does not describe the features"),
    "layer the backbone does not have": (_card_edit("layer the backbone does not have"), "layers"),
    "adaptation the model lacks": (_card_edit("adaptation the model lacks"), "describes an adaptation map"),
    "classes in another order": (_card_edit("classes in another order"), "lists classes"),
    "another head": (_card_edit("another head"), "says the head is"),
}


@pytest.mark.parametrize("data", ["feature file", "raw images"])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("kind", list(HOSTILE_CARDS))
def test_a_card_that_is_damaged_or_not_the_models_ends_in_one_line_before_featurizing(
    kind, command, data, saved, digit_features, digits_dir, tmp_path
):
    model = tmp_path / "m.skops"
    model.write_bytes(saved.read_bytes())
    make, said = HOSTILE_CARDS[kind]
    model.with_suffix(".json").write_text(make(json.loads(saved.with_suffix(".json").read_text())))
    test = digit_features[1] if data == "feature file" else digits_dir / "test"
    args = [command, model, test, "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache"]
    result = xfer(*args, *(["--png", tmp_path / "cm.png"] if command == "evaluate" else []), ok=False)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], result.output
    assert not (tmp_path / "cache").exists()  # refused before any featurizing


def test_a_card_layer_missing_from_the_feature_file_is_named(digit_features, digits_dir, tmp_path):
    model = tmp_path / "deep.skops"
    xfer("fit", digit_features[0], "--layer", "blocks.6", "--head", "prototype", "-o", model)
    shallow = tmp_path / "pre_logits.h5"
    featurize(digits_dir / "test", layers=["-1"], output=shallow, cache_dir=digit_features[2], progress=False)
    for command in ("predict", "evaluate"):
        result = xfer(command, model, shallow, "-o", tmp_path / "out", ok=False)
        assert result.exit_code == 1 and "layer 'blocks.6' is missing" in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_bare_classifier_whose_card_names_a_layer_the_backbone_lacks_is_refused_before_featurizing(
    saved, digits_dir, tmp_path
):
    from featurizer.storage._hashing import file_sha256

    model = tmp_path / "bare.skops"
    model.write_bytes(_foreign_classifier(1280, 10))  # no featurizer step to compare the card with
    card = json.loads(saved.with_suffix(".json").read_text())
    card["spec"]["layers"], card["spec"]["pooling"] = ["nope"], ["avg"]
    model.with_suffix(".json").write_text(json.dumps({**card, "sha256": file_sha256(model)}))
    args = ["predict", model, digits_dir / "test", "-o", tmp_path / "p.csv", "--cache-dir", tmp_path / "c"]
    result = xfer(*args, ok=False)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "names layer 'nope', which efficientnet_lite0 does not have" in result.output
    assert not (tmp_path / "c").exists()


def test_fit_and_evaluate_name_claim_and_write_their_outputs_as_one_library_call(digit_features, tmp_path, monkeypatch):
    """What ``xfer fit`` and ``xfer evaluate`` run is one call each: outputs named, guarded, written."""
    import shutil

    from pipelines import evaluate_to_files, fit_file

    monkeypatch.chdir(tmp_path)
    train, test, _ = digit_features
    train = Path(shutil.copy(train, tmp_path / "train.h5"))
    with pytest.raises(FeaturizerError, match="input"):  # the guard, before any work
        fit_file(train, "prototype", "pre_logits", output=train)
    result = fit_file(train, "prototype", "pre_logits", params={})
    assert result.output == Path("models/train-prototype.skops") and result.output.is_file()
    assert result.output.with_suffix(".json").is_file()
    with pytest.raises(FeaturizerError, match="zero-shot fits its own head"):
        fit_file(train, zero_shot=tmp_path / "classes.txt", params={})
    report, files = evaluate_to_files(result.output, test)
    assert files["output"].is_file() and files["png"].is_file() and files["predictions"].is_file()
    assert json.loads(files["output"].read_text())["accuracy"] == report["accuracy"] > 0.5


def test_fit_with_an_unlabelled_pool_says_what_it_kept_and_refuses_bad_pools(digit_features, questions, tmp_path):
    """--unlabelled: the method kept and why in the summary; a bad pool is one line, before any fitting."""
    from featurizer import FeatureFileWriter

    train, test, _ = digit_features
    out = tmp_path / "semi.skops"
    done = xfer("fit", train, "--layer", "pre_logits", "--unlabelled", test, "--semi", "self-training", "-o", out)
    assert "unlabelled pool: kept self-training (as asked)" in done.output and out.is_file()
    assert json.loads(out.with_suffix(".json").read_text())["params"]["semi"] == "self-training"
    sub = tmp_path / "pca.skops"
    xfer("fit", train, "--layer", "pre_logits", "--unlabelled", test, "--semi", "pca", "-o", sub)
    assert json.loads(sub.with_suffix(".json").read_text())["params"]["semi"] == "pca"
    scored = xfer("evaluate", sub, test).output  # the saved subspace loads without pickle and predicts
    assert float(scored.split("accuracy")[1].split()[0]) > 0.4, scored  # ten classes: chance is 0.1
    chosen = xfer("fit", train, "--layer", "pre_logits", "--unlabelled", test, "-o", tmp_path / "auto.skops")
    assert "unlabelled pool: kept " in chosen.output and "labelled-fold CV none" in chosen.output
    texts = tmp_path / "texts.h5"
    from featurizer.inputs import texts_as_inputs

    featurize(texts_as_inputs(questions), "minilm", output=texts, cache_dir=tmp_path / "cache", progress=False)
    with FeatureFile(train) as f:
        spec = f.spec
    empty = tmp_path / "empty.h5"
    with FeatureFileWriter(empty, spec, []):
        pass
    for pool, said in ((train, "is the labelled file itself"), (texts, "minilm"), (empty, "holds no items")):
        refused = xfer(
            "fit", train, "--layer", "pre_logits", "--unlabelled", pool, "-o", tmp_path / "x.skops", ok=False
        )
        assert refused.exit_code == 1 and said in refused.output and "Traceback" not in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1
    no_pool = xfer("fit", train, "--semi", "spreading", "-o", tmp_path / "y.skops", ok=False)
    assert no_pool.exit_code == 1 and "--unlabelled" in no_pool.output


@pytest.mark.parametrize("command", ["featurize", "predict", "suggest"])
def test_a_model_given_where_inputs_go_is_named_as_one(command, saved, tmp_path):
    """A .skops file is a zip of a model, not lines of text: one line says so."""
    argv = {
        "featurize": ["featurize", saved, "-o", tmp_path / "x.h5"],
        "predict": ["predict", saved, saved, "-o", tmp_path / "p.csv"],
        "suggest": ["suggest", saved, saved, "-o", tmp_path / "s.csv"],
    }[command]
    result = xfer(*argv, ok=False)
    assert result.exit_code == 1 and "is a saved model, not inputs" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_fit_on_a_feature_file_of_failed_inputs_says_it_holds_no_items(tmp_path):
    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        (tmp_path / "photos" / label / "broken.jpg").write_bytes(b"not a picture")
    out = tmp_path / "failed.h5"
    xfer("featurize", tmp_path / "photos", "-q", "-o", out)  # two error rows, no vectors
    result = xfer("fit", out, "--no-cv", "-o", tmp_path / "m.skops", ok=False)
    assert result.exit_code == 1 and "holds none" in result.output, result.output
