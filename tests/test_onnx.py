"""Backbones on ONNX Runtime: the same tokens, pixels and vectors as PyTorch, exported once, keyed apart."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from featurizer import Extractor, FeatureFile, FeaturizerError, featurize
from featurizer.inputs._inputs import Inputs, read_inputs, texts_as_inputs
from featurizer.spec._registry import get_config

pytest.importorskip("onnxruntime")

LONG = "word " * 400  # longer than MiniLM's 256 tokens: truncated alike by both tokenizers


@pytest.fixture(autouse=True)
def graphs_in_the_cache_folder(monkeypatch):
    """These tests look at exported graphs where users find them: in the cache folder's ``onnx/``."""
    monkeypatch.delenv("FEATURIZER_ONNX_DIR", raising=False)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def vectors(extractor: Extractor, inputs: Inputs | list[str]) -> dict[str, np.ndarray]:
    inputs = texts_as_inputs(inputs) if isinstance(inputs, list) else inputs
    keys, errors = extractor.keys(inputs)
    assert not errors
    extractor.ensure(inputs, keys)
    return {layer: extractor.vectors(layer, keys) for layer in extractor.spec.layers}


def test_onnx_vectors_equal_torch_at_every_layer_and_the_export_is_reused(questions, cache_dir):
    texts = [*questions, LONG]
    layers = ["0", "2", "-1"]
    torch_run = Extractor.for_model("minilm", layers, cache_dir=cache_dir, progress=False, runtime="torch")
    onnx_run = Extractor.for_model("minilm", layers, cache_dir=cache_dir, runtime="onnx", progress=False)
    assert onnx_run.spec.layer_key("layer.5") != torch_run.spec.layer_key("layer.5")
    expected, got = vectors(torch_run, texts), vectors(onnx_run, texts)
    for layer in torch_run.spec.layers:
        np.testing.assert_allclose(got[layer], expected[layer], rtol=1e-4, atol=1e-5)
    assert onnx_run.truncated == torch_run.truncated == 1
    graphs = list((cache_dir / "onnx").glob("*-fp32.onnx"))
    assert len(graphs) == 1
    exported_at = graphs[0].stat().st_mtime_ns
    again = Extractor.for_model("minilm", cache_dir=cache_dir, runtime="onnx", progress=False)
    again._load()
    assert graphs[0].stat().st_mtime_ns == exported_at  # loaded, not exported again
    graphs[0].write_bytes(graphs[0].read_bytes()[:1000])  # damaged from outside: exported again on load
    Extractor.for_model("minilm", cache_dir=cache_dir, runtime="onnx", progress=False)._load()
    assert graphs[0].stat().st_size > 1_000_000


def test_onnx_int8_is_close_and_cached_apart_from_fp32(questions, cache_dir, caplog):
    import onnx

    exact = Extractor.for_model("minilm", cache_dir=cache_dir, runtime="onnx", progress=False)
    fast = Extractor.for_model("minilm", cache_dir=cache_dir, runtime="onnx", precision="int8", progress=False)
    assert fast.spec.layer_key("layer.5") != exact.spec.layer_key("layer.5")
    similarity = cosine(vectors(exact, questions)["layer.5"], vectors(fast, questions)["layer.5"])
    assert not [r for r in caplog.records if r.name == "root"]  # the quantiser's advice is not shown to users
    assert similarity.min() > 0.995  # 0.9965 here; 0.993 without smoothing, 0.988 with every projection int8
    # Q, K, V and feed-forward input projections (fed by LayerNorms) in int8; the 2 others per layer in fp32.
    graph = onnx.load(str(next((cache_dir / "onnx").glob("*-int8.onnx")))).graph
    weights = {init.name for init in graph.initializer}
    ops = [n.op_type for n in graph.node]
    float_projections = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    assert ops.count("MatMulInteger") == 4 * 6 and len(float_projections) == 2 * 6
    # One smoothing Mul per LayerNorm that feeds projections: embeddings, then 2 per layer but the last's output.
    assert sum(n.op_type == "Mul" and n.name.endswith("/smooth") for n in graph.node) == 1 + 2 * 6 - 1


def test_onnx_image_vectors_equal_torch_at_every_layer_and_the_graph_carries_its_preprocessing(photo_dir, cache_dir):
    layers = ["-1", "-2", "-3"]
    torch_run = Extractor.for_model("efficientnet_lite0", layers, cache_dir=cache_dir, progress=False, runtime="torch")
    onnx_run = Extractor.for_model("efficientnet_lite0", layers, cache_dir=cache_dir, runtime="onnx", progress=False)
    assert onnx_run.spec.layers == torch_run.spec.layers == ("pre_logits", "features", "blocks.6")
    assert onnx_run.spec.preprocessing == torch_run.spec.preprocessing
    assert onnx_run.spec.layer_key("pre_logits") != torch_run.spec.layer_key("pre_logits")
    inputs = read_inputs(photo_dir, "image")
    expected, got = vectors(torch_run, inputs), vectors(onnx_run, inputs)
    for layer in torch_run.spec.layers:
        np.testing.assert_allclose(got[layer], expected[layer], rtol=1e-4, atol=1e-5)
    backbone = onnx_run._load()
    assert backbone.preprocessing == get_config("efficientnet_lite0").preprocessing
    assert [(layer.name, layer.dim) for layer in backbone.layers][-3:] == [
        ("blocks.6", 320),
        ("features", 1280),
        ("pre_logits", 1280),
    ]


@pytest.mark.parametrize(
    ("model", "layer", "dim"), [("minilm", "layer.5", 384), ("efficientnet_lite0", "pre_logits", 1280)]
)
def test_a_run_on_an_exported_graph_imports_no_torch(model, layer, dim, questions, photo_dir, cache_dir, tmp_path):
    if model == "minilm":
        source = tmp_path / "q.txt"
        source.write_text("\n".join(questions) + "\n")
        n = len(questions)
    else:
        source, n = photo_dir, 12
    Extractor.for_model(model, cache_dir=cache_dir, runtime="onnx", progress=False)._load()  # export
    out = tmp_path / "out.h5"
    loaded = "any(m in sys.modules for m in ('torch', 'transformers', 'timm'))"
    code = f"import sys, cli\ntry:\n    cli.main()\nfinally:\n    print({loaded}, file=sys.stderr)\n"
    args = ["featurize", str(source), "-m", model, "--runtime", "onnx", "-o", str(out), "--cache-dir", str(cache_dir)]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr
    with FeatureFile(out) as f:
        assert f.shape(layer) == (n, dim) and f.spec.runtime == "onnx"


def test_onnx_runtime_refuses_what_it_cannot_run(cache_dir):
    with pytest.raises(FeaturizerError, match="image models at fp32, not 'bf16'"):
        Extractor.for_model("efficientnet_lite0", runtime="onnx", precision="bf16", cache_dir=cache_dir)
    with pytest.raises(FeaturizerError, match="text models at fp32 or int8"):
        Extractor.for_model("minilm", runtime="onnx", precision="bf16", cache_dir=cache_dir)
    with pytest.raises(FeaturizerError, match="runs on the CPU"):
        Extractor.for_model("minilm", runtime="onnx", device="cuda", cache_dir=cache_dir)


def test_a_pipeline_fitted_on_onnx_features_featurizes_new_texts_on_onnx(questions, cache_dir, tmp_path):
    import csv

    from sklearn.linear_model import LogisticRegression

    from pipelines.fit._fit import end_to_end

    labels = ["how", "what", "who", "what", "when", "how", "why", "where", "other", "other"]
    table = tmp_path / "q.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *zip(questions, labels)])
    out = tmp_path / "q.h5"
    featurize(table, "minilm", "-1", output=out, runtime="onnx", cache_dir=cache_dir, progress=False)
    with FeatureFile(out) as f:
        spec, X = f.spec, f.read()
    model = end_to_end(spec, LogisticRegression(max_iter=1000).fit(X, labels))
    features = model.named_steps["features"].set_params(cache=cache_dir)
    assert features.spec.runtime == "onnx" and features.spec.precision == "fp32"
    np.testing.assert_allclose(features.transform(questions), X, rtol=1e-5, atol=1e-6)
    assert features._extractor().spec == spec  # the same spec, so the same cached vectors
    assert list(model.predict(questions)) == list(model.named_steps["head"].predict(X))


def layer_norm_projection(path, outliers: dict[int, float]) -> None:
    """A LayerNorm whose output is both a layer (an output) and a projection's input, as in a BERT layer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    gamma = np.ones(16, np.float32)
    for channel, size in outliers.items():
        gamma[channel] = size  # a few large channels, as BERT's LayerNorms have
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(gamma, "gamma"),
        numpy_helper.from_array(np.zeros(16, np.float32), "beta"),
        numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["x", "mask3"], ["xm"]),
        helper.make_node("LayerNormalization", ["xm", "gamma", "beta"], ["layer"], axis=-1, name="ln"),
        helper.make_node("MatMul", ["layer", "w"], ["projection"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 16]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"]),
        ],
        [
            helper.make_tensor_value_info("layer", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("projection", TensorProto.FLOAT, None),
        ],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_smoothing_keeps_the_function_and_takes_outliers_out_of_the_int8_activations(tmp_path):
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from featurizer.backbones._onnx import quantize_smoothed

    plain = tmp_path / "plain.onnx"
    layer_norm_projection(plain, {3: 30.0, 7: 15.0})
    rng = np.random.default_rng(1)
    feeds = [
        {"x": rng.normal(size=(4, 6, 16)).astype(np.float32), "attention_mask": np.ones((4, 6), np.int64)}
        for _ in range(3)
    ]
    names = ["layer", "projection"]
    expected = dict(zip(names, ort.InferenceSession(str(plain)).run(names, feeds[0])))
    # check: the smoothed graph, still fp32, must give these outputs (it raises otherwise)
    quantize_smoothed(plain, tmp_path / "smooth.onnx", feeds, check=(feeds[0], expected))
    quantize_dynamic(str(plain), str(tmp_path / "int8.onnx"), per_channel=True, weight_type=QuantType.QInt8)

    def error(path):
        layer, projection = ort.InferenceSession(str(path)).run(names, feeds[0])
        np.testing.assert_array_equal(layer, expected["layer"])  # the layer itself is never scaled
        return np.abs(projection - expected["projection"]).max()

    assert error(tmp_path / "smooth.onnx") < error(tmp_path / "int8.onnx") / 2  # 0.53 against 1.45 here
