"""One feature spec, resolved once: vectors of different specs are never mixed (issue 13)."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from commands import all_commands
from featurizer import (
    Extractor,
    FeatureFile,
    FeatureOptions,
    FeatureSpec,
    FeaturizerError,
    featurize,
    get_config,
    list_models,
    resolve_spec,
)
from featurizer.engine._embed import embed
from featurizer.engine._shards import merge
from featurizer.spec._modes import MODES
from pipelines import few_shot_files, fit, load_model, model_features, read_xy, save_model

ROOT = Path(__file__).resolve().parents[1]


def xfer(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


# --- Raw inputs are featurized with exactly the training spec -------------------------------


def test_a_pipeline_fitted_on_onnx_int8_features_predicts_raw_texts_with_onnx_int8_vectors(questions, tmp_path):
    pytest.importorskip("onnxruntime")
    table = tmp_path / "q.csv"
    labels = ["how", "what", "who", "what", "when", "how", "why", "where", "other", "other"]
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *zip(questions, labels)])
    train = tmp_path / "q.h5"
    featurize(table, "minilm", output=train, runtime="onnx", precision="int8", cache_dir=tmp_path / "a", progress=False)
    result = fit(train, "prototype")
    save_model(result.model, result.card, tmp_path / "m.joblib")
    _, card = load_model(tmp_path / "m.joblib")
    assert (card.spec.runtime, card.spec.precision) == ("onnx", "int8")
    fresh = dataclasses.replace(Extractor(card.spec).run, cache_dir=tmp_path / "b", progress=False)
    X, *_ = model_features(card, table, fresh)  # computed again, in another cache folder
    with FeatureFile(train) as f:
        expected, _ = read_xy(f, card.spec.layers)
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)  # torch int8 was at cosine 0.965


def test_a_pipeline_fitted_with_local_weights_predicts_raw_images(photo_dir, tmp_path):
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(0)
    torch.save(resnet18().state_dict(), tmp_path / "r18.pth")
    train = tmp_path / "f.h5"
    featurize(
        photo_dir, "torchvision/resnet18", weights=tmp_path / "r18.pth", output=train, cache_dir=tmp_path / "a",
        progress=False,
    )  # fmt: skip
    result = fit(train, "prototype")
    save_model(result.model, result.card, tmp_path / "m.joblib")
    preds = tmp_path / "p.csv"
    out = xfer("predict", tmp_path / "m.joblib", photo_dir, "-o", preds, "--cache-dir", tmp_path / "b", "-q").output
    assert "12 predictions" in out
    model, card = load_model(tmp_path / "m.joblib")
    with FeatureFile(train) as f:
        expected = model.named_steps["head"].predict(read_xy(f, card.spec.layers)[0])
    with open(preds) as f:
        assert [row["label"] for row in csv.DictReader(f)] == list(expected)


def test_the_library_picks_the_text_model_for_a_text_file(tmp_path):
    (tmp_path / "questions.txt").write_text("What is the capital of France ?\nWho wrote Hamlet ?\n")
    report = featurize(tmp_path / "questions.txt", cache_dir=tmp_path / "c", progress=False)
    assert report.spec.model == "minilm" and report.spec.modality == "text"


# --- Embed: a shard is reused only when spec, ids and checksum match -----------------------


def _read(path: Path):
    with FeatureFile(path) as f:
        return f.ids, f.labels, {layer: f.read(layer) for layer in f.layers}


def _assert_same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and list(a[2]) == list(b[2])
    for layer in a[2]:
        np.testing.assert_allclose(a[2][layer], b[2][layer], rtol=1e-4, atol=1e-5)


def _clean(inputs, tmp_path, name, **options):
    out = tmp_path / f"clean-{name}"
    embed(inputs, out, cache_dir=tmp_path / f"cache-{name}", progress=False, **options)
    return _read(merge(out))


def test_embed_reruns_with_another_layer_shard_size_or_a_grown_folder_equal_a_clean_run(photo_dir, tmp_path):
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(photo_dir, folder)
    (folder / "flower" / "flower_5.jpg").unlink()
    out, cache = tmp_path / "emb", tmp_path / "cache"
    embed(folder, out, shard_size=4, cache_dir=cache, progress=False)

    again = embed(folder, out, layers=["-3"], shard_size=4, cache_dir=cache, progress=False)
    assert again.skipped == [] and len(again.computed) == 3  # another layer: nothing reused
    _assert_same(_read(merge(out)), _clean(folder, tmp_path, "layer", layers=["-3"], shard_size=4))

    resized = embed(folder, out, layers=["-3"], shard_size=5, cache_dir=cache, progress=False)
    assert resized.n_shards == 3 and resized.skipped == [] and not (out / "shard-00003.h5").exists()
    _assert_same(_read(merge(out)), _clean(folder, tmp_path, "size", layers=["-3"], shard_size=5))

    shutil.copy(photo_dir / "flower" / "flower_5.jpg", folder / "flower" / "flower_5.jpg")
    grown = embed(folder, out, layers=["-3"], shard_size=5, cache_dir=cache, progress=False)
    assert grown.skipped == [0, 1] and grown.computed == [2]  # the new file sorts last: only its shard changes
    merged = _read(merge(out))
    assert len(merged[0]) == 12 and len(set(merged[0])) == 12
    _assert_same(merged, _clean(folder, tmp_path, "grown", layers=["-3"], shard_size=5))


def test_a_merged_file_with_a_missing_or_moved_shard_is_refused_with_its_name(digits_dir, tmp_path):
    out = tmp_path / "emb"
    embed(digits_dir / "train", out, shard_size=40, cache_dir=tmp_path / "c", progress=False)
    merged = merge(out)
    (out / "shard-00001.h5").rename(tmp_path / "elsewhere.h5")
    with pytest.raises(FeaturizerError, match=r"shard-00001\.h5"):
        FeatureFile(merged)
    result = xfer("fit", merged, ok=False)
    assert result.exit_code == 1 and "shard-00001.h5" in result.output and "Traceback" not in result.output


def test_merge_refuses_mixed_specs_and_entries_outside_the_folder(digits_dir, tmp_path):
    import json

    out = tmp_path / "emb"
    embed(digits_dir / "train", out, shard_size=40, cache_dir=tmp_path / "c", progress=False)
    other = tmp_path / "other"
    embed(digits_dir / "train", other, layers=["-3"], shard_size=40, cache_dir=tmp_path / "c", progress=False)
    for name in ("shard-00001.h5", "shard-00001.h5.sha256"):
        (out / name).write_bytes((other / name).read_bytes())  # a shard of another spec, with a valid checksum
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][1]["sha256"] = (out / "shard-00001.h5.sha256").read_text().strip()
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeaturizerError, match=r"shard-00001\.h5 was made with another spec.*layers"):
        merge(out)
    manifest["shards"][1]["file"] = "../other/shard-00001.h5"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeaturizerError, match="not a shard file inside"):
        merge(out)


# --- Commands that read two feature files check they match -----------------------------------


def test_fewshot_refuses_files_of_different_specs(digit_features, digits_dir, tmp_path):
    train, test, cache = digit_features
    other = tmp_path / "gem.h5"
    featurize(digits_dir / "test", layers=["-1"], pooling="gem", precision="bf16", output=other, cache_dir=cache,
              progress=False)  # fmt: skip
    with pytest.raises(FeaturizerError, match="precision: 'fp32' vs 'bf16'"):
        few_shot_files(train, other, shots=[1], runs=1)
    result = xfer("fewshot", train, other, "--shots", "1", "--runs", "1", ok=False)
    assert result.exit_code == 1 and "precision" in result.output
    rows, layers, _ = few_shot_files(train, test, ["-1"], shots=[1], runs=1, heads=["prototype"])
    assert layers == ("blocks.6",) and rows[0].mean > 0.1


# --- The spec: resolved once, round-tripped, compared and hashed by its fields ----------------

_MODELS = [name for name in list_models() if get_config(name).weights_available()]


@st.composite
def feature_options(draw):
    model = draw(st.sampled_from(_MODELS))
    config = get_config(model)
    names = [layer.name for layer in config.layers]
    layers = draw(st.lists(st.sampled_from([*names, *range(-len(names), len(names))]), max_size=3, unique=True))
    modality = config.modality
    pooling = draw(st.sampled_from([None, *(("avg", "max", "gem") if modality == "image" else ("mean", "cls", "max"))]))
    static = config.library == "model2vec"  # static tables run on numpy, and only they do
    modes = {(p, r) for (p, r, m, _) in MODES if m == modality and (r == "numpy") == static}
    precision, runtime = draw(st.sampled_from(sorted(modes)))
    return FeatureOptions(model, tuple(layers) or None, pooling, None, precision, runtime)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=feature_options())
def test_resolve_then_from_spec_gives_the_same_spec_and_cache_keys(options, tmp_path):
    spec = resolve_spec(options)
    extractor = Extractor.from_spec(spec, cache_dir=tmp_path)
    assert extractor.spec == spec and FeatureSpec.from_json(spec.to_json()) == spec
    assert {n: s.dir.name for n, s in extractor.stores.items()} == {n: spec.layer_key(n) for n in spec.layers}
    assert not spec.differences(extractor.spec)


_CHANGES = {
    "model": "another_model",
    "modality": "text",
    "weights_sha256": "0" * 64,
    "preprocessing": {"input_size": [3, 1, 1]},
    "precision": "bf16",
    "runtime": "onnx",
}


@settings(max_examples=25, deadline=None)
@given(options=feature_options(), field=st.sampled_from([f.name for f in dataclasses.fields(FeatureSpec)]))
def test_specs_that_differ_in_any_field_are_reported_and_keyed_apart(options, field):
    spec = resolve_spec(options)
    if field == "layers":
        other = dataclasses.replace(spec, layers=(*spec.layers[:-1], spec.layers[-1] + "x"))
    elif field == "pooling":
        other = dataclasses.replace(spec, pooling=(*spec.pooling[:-1], spec.pooling[-1] + "x"))
    elif field == "weights":  # named by location only when no hash is known
        spec = dataclasses.replace(spec, weights_sha256=None)
        other = dataclasses.replace(spec, weights=spec.weights + "x")
    else:
        change = _CHANGES[field]
        if getattr(spec, field) == change:
            change = "fp32" if field == "precision" else "torch" if field == "runtime" else change + "x"
        other = dataclasses.replace(spec, **{field: change})
    diffs = spec.differences(other)
    assert diffs and any(line.startswith(field if field != "layers" else "layers") for line in diffs)
    if field not in ("modality", "layers", "pooling"):  # per-file fields: the key is per layer
        layer = spec.layers[0]
        assert spec.layer_key(layer) != other.layer_key(layer)


def test_cache_keys_of_existing_specs_did_not_change(tmp_path):
    """Keys computed by the code before the spec became field-derived (commit f8ae014)."""
    cases = [
        (FeatureOptions("efficientnet_lite0", runtime="torch"), {"pre_logits": "df7b0ca326013e3ec0be40ba"}),
        (
            FeatureOptions("efficientnet_lite0", ("-3", "-1"), "gem", precision="bf16"),
            {"blocks.6": "dbf189d2787a9498f4c499f9", "pre_logits": "df00eebe41a1b074b992d384"},
        ),
        (FeatureOptions("minilm", runtime="torch"), {"layer.5": "11f1c951ee38b2ee10c3080f"}),
        (
            FeatureOptions("minilm", ("layer.3",), "cls", precision="int8", runtime="onnx"),
            {"layer.3": "4604d09c5a06a28aa0d8024d"},
        ),
    ]
    for options, keys in cases:
        spec = resolve_spec(options)
        assert {layer: spec.layer_key(layer) for layer in spec.layers} == keys


def test_resolving_a_zoo_spec_loads_no_weights(monkeypatch):
    import torch

    def no_loading(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(torch, "load", no_loading)
    spec = resolve_spec(FeatureOptions("timm/resnet18", ("-1", "layer3")))  # offline here: nothing to download
    assert spec.layers == ("pre_logits", "layer3") and spec.preprocessing["input_size"] == [3, 224, 224]
    spec = resolve_spec(FeatureOptions("torchvision/resnet18", ("layer4",)))
    assert spec.preprocessing["resize"] == 256


def test_default_models_come_from_the_registry_for_cli_and_library_alike(tmp_path):
    from featurizer import DEFAULT_MODELS

    assert resolve_spec(FeatureOptions()).model == DEFAULT_MODELS["image"]
    assert resolve_spec(FeatureOptions(), "text").model == DEFAULT_MODELS["text"]


# --- Outputs that do not collide or vanish ----------------------------------------------------


def test_default_outputs_of_two_folders_named_train_do_not_collide(photo_dir, digits_dir, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    for name, source in (("flowers", photo_dir), ("digits", digits_dir / "train")):
        shutil.copytree(source, tmp_path / name / "train")
        xfer("featurize", Path(name) / "train", "--cache-dir", "cache", "-q")
    written = sorted((tmp_path / "cache").glob("train-efficientnet_lite0-*.h5"))
    assert len(written) == 2
    beside = [p for p in tmp_path.rglob("*") if "cache" not in p.relative_to(tmp_path).parts[:1]]
    assert not [p for p in beside if p.name.endswith((".lock", ".tmp"))]  # no litter beside inputs or outputs
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_an_output_made_from_other_inputs_is_not_replaced_without_force(photo_dir, digits_dir, tmp_path):
    out = tmp_path / "f.h5"
    xfer("featurize", photo_dir, "-o", out, "--cache-dir", tmp_path / "c", "-q")
    result = xfer("featurize", digits_dir / "test", "-o", out, "--cache-dir", tmp_path / "c", "-q", ok=False)
    assert result.exit_code == 1 and "holds features of" in result.output and "--force" in result.output
    xfer("featurize", photo_dir, "-o", out, "--cache-dir", tmp_path / "c", "-q")  # the same inputs: a re-run
    xfer("featurize", digits_dir / "test", "-o", out, "--cache-dir", tmp_path / "c", "-q", "--force")
    image = tmp_path / "a.jpg"
    image.write_bytes((photo_dir / "china" / "china_0.jpg").read_bytes())
    result = xfer("featurize", image, "-o", image, "--cache-dir", tmp_path / "c", "-q", ok=False)
    assert "is the input" in result.output and image.read_bytes()[:2] == b"\xff\xd8"


def test_fit_and_evaluate_outputs_name_their_inputs(digit_features, tmp_path, monkeypatch):
    import json

    train, test, _ = digit_features
    monkeypatch.chdir(tmp_path)
    xfer("fit", train, "--head", "prototype")
    model = tmp_path / "models" / f"{train.stem}-prototype.skops"
    assert model.is_file()
    xfer("evaluate", model, test)
    report = json.loads((model.parent / f"{model.stem}.eval-{test.stem}.json").read_text())
    assert report["model"] == str(model) and report["test"] == str(test) and report["spec"]["model"]
    other = tmp_path / "other.h5"
    other.write_bytes(test.read_bytes())
    result = xfer("fit", other, "--head", "prototype", "-o", model, ok=False)
    assert result.exit_code == 1 and "fitted on" in result.output


# --- Help that reads as one tool --------------------------------------------------------------


def test_every_command_and_option_has_help():
    for name, command in all_commands().items():
        assert command.help, name
        for param in command.params:
            if isinstance(param, __import__("click").Option):
                assert param.help, f"{name} {param.opts}"
        assert [o for p in command.params for o in getattr(p, "opts", [])].count("-o") <= 1
        if any("-o" in getattr(p, "opts", []) for p in command.params):
            assert any("--output" in getattr(p, "opts", []) for p in command.params), name


def test_fp16_on_a_cpu_is_refused(photo_dir, tmp_path):
    result = xfer("featurize", photo_dir, "--precision", "fp16", "--device", "cpu", "--cache-dir", tmp_path, ok=False)
    assert result.exit_code == 1 and "use bf16 on a CPU" in result.output


def test_text_layers_show_tokens_not_a_probe_length():
    out = xfer("layers", "minilm").output
    assert "tokens x 384" in out and "4x384" not in out


def test_a_closed_pipe_ends_quietly(digit_features, tmp_path):
    train, _, _ = digit_features
    code = f"import sys, cli; sys.argv = ['xfer', 'info', {str(train)!r}]; cli.main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        f"{sys.executable} -c {code!r} | head -1", shell=True, capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout.count("\n") == 1 and "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr


def test_offline_zoo_models_fail_at_once_with_one_line(photo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from featurizer.spec._network import offline

    offline.cache_clear()
    try:
        result = xfer("featurize", photo_dir, "-m", "timm/resnet18", "--cache-dir", tmp_path, "-q", ok=False)
    finally:
        offline.cache_clear()
    assert result.exit_code == 1 and "no network to download" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_only_full_fp32_modes_count_as_exact():
    """GPU kernels may trade accuracy for speed (TF32) only where the mode is not exact fp32."""
    from featurizer.spec import MODES

    exact = {(m.precision, m.runtime) for m in MODES.values() if m.exact}
    assert exact == {("fp32", "torch"), ("fp32", "onnx"), ("fp32", "numpy")}
    assert all(m.quantize == (m.precision == "int8") for m in MODES.values())
