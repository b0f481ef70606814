"""Text encoders on ONNX Runtime: the same tokens and vectors as PyTorch, exported once, keyed apart."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from featurizer import Extractor, FeatureFile, FeaturizerError, featurize
from featurizer._inputs import texts_as_inputs

pytest.importorskip("onnxruntime")

LONG = "word " * 400  # longer than MiniLM's 256 tokens: truncated alike by both tokenizers


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def vectors(extractor: Extractor, texts: list[str]) -> dict[str, np.ndarray]:
    inputs = texts_as_inputs(texts)
    keys, errors = extractor.keys(inputs)
    assert not errors
    extractor.ensure(inputs, keys)
    return {layer: extractor.vectors(layer, keys) for layer in extractor.spec.layers}


def test_onnx_vectors_equal_torch_at_every_layer_and_the_export_is_reused(questions, cache_dir):
    texts = [*questions, LONG]
    layers = ["0", "2", "-1"]
    torch_run = Extractor("minilm", layers, cache_dir=cache_dir, progress=False)
    onnx_run = Extractor("minilm", layers, cache_dir=cache_dir, runtime="onnx", progress=False)
    assert onnx_run.spec.layer_spec("layer.5").key() != torch_run.spec.layer_spec("layer.5").key()
    expected, got = vectors(torch_run, texts), vectors(onnx_run, texts)
    for layer in torch_run.spec.layers:
        np.testing.assert_allclose(got[layer], expected[layer], rtol=1e-4, atol=1e-5)
    assert onnx_run.truncated == torch_run.truncated == 1
    graphs = list((cache_dir / "onnx").glob("*-fp32.onnx"))
    assert len(graphs) == 1
    exported_at = graphs[0].stat().st_mtime_ns
    again = Extractor("minilm", cache_dir=cache_dir, runtime="onnx", progress=False)
    again._load()
    assert graphs[0].stat().st_mtime_ns == exported_at  # loaded, not exported again
    graphs[0].write_bytes(graphs[0].read_bytes()[:1000])  # damaged from outside: exported again on load
    Extractor("minilm", cache_dir=cache_dir, runtime="onnx", progress=False)._load()
    assert graphs[0].stat().st_size > 1_000_000


def test_onnx_int8_is_close_and_cached_apart_from_fp32(questions, cache_dir):
    exact = Extractor("minilm", cache_dir=cache_dir, runtime="onnx", progress=False)
    fast = Extractor("minilm", cache_dir=cache_dir, runtime="onnx", precision="int8", progress=False)
    assert fast.spec.layer_spec("layer.5").key() != exact.spec.layer_spec("layer.5").key()
    similarity = cosine(vectors(exact, questions)["layer.5"], vectors(fast, questions)["layer.5"])
    assert similarity.min() > 0.93


def test_a_run_on_an_exported_graph_imports_neither_transformers_nor_torch(questions, cache_dir, tmp_path):
    texts = tmp_path / "q.txt"
    texts.write_text("\n".join(questions) + "\n")
    Extractor("minilm", cache_dir=cache_dir, runtime="onnx", progress=False)._load()  # export
    out = tmp_path / "q.h5"
    loaded = "'transformers' in sys.modules or 'torch' in sys.modules"
    code = f"import sys, cli\ntry:\n    cli.main()\nfinally:\n    print({loaded}, file=sys.stderr)\n"
    args = ["featurize", str(texts), "-m", "minilm", "--runtime", "onnx", "-o", str(out), "--cache-dir", str(cache_dir)]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr
    with FeatureFile(out) as f:
        assert f.shape("layer.5") == (len(questions), 384) and f.spec.runtime == "onnx"


def test_onnx_runtime_refuses_what_it_cannot_run(photo_dir, cache_dir):
    with pytest.raises(FeaturizerError, match="runs text encoders"):
        featurize(photo_dir, runtime="onnx", cache_dir=cache_dir, progress=False)
    with pytest.raises(FeaturizerError, match="fp32 or int8"):
        Extractor("minilm", runtime="onnx", precision="bf16", cache_dir=cache_dir)
    with pytest.raises(FeaturizerError, match="runs on the CPU"):
        Extractor("minilm", runtime="onnx", device="cuda", cache_dir=cache_dir)


def test_a_pipeline_fitted_on_onnx_features_featurizes_new_texts_on_onnx(questions, cache_dir, tmp_path):
    import csv

    from sklearn.linear_model import LogisticRegression

    from pipelines._fit import end_to_end

    labels = ["how", "what", "who", "what", "when", "how", "why", "where", "other", "other"]
    table = tmp_path / "q.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *zip(questions, labels)])
    out = tmp_path / "q.h5"
    featurize(table, "minilm", output=out, runtime="onnx", cache_dir=cache_dir, progress=False)
    with FeatureFile(out) as f:
        spec, X = f.spec, f.read()
    model = end_to_end(spec, LogisticRegression(max_iter=1000).fit(X, labels))
    features = model.named_steps["features"].set_params(cache=cache_dir)
    assert features.runtime == "onnx"
    np.testing.assert_allclose(features.transform(questions), X, rtol=1e-5, atol=1e-6)
    assert features._extractor().spec == spec  # the same spec, so the same cached vectors
    assert list(model.predict(questions)) == list(model.named_steps["head"].predict(X))
