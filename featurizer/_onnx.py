"""Text encoders on ONNX Runtime: exported once per weights and precision, then run without transformers.

A run on the PyTorch runtime spends seconds importing transformers' modelling code before its
first batch; ONNX Runtime loads an exported graph in a fraction of a second, and its CPU kernels
ran MiniLM about 1.2x faster than PyTorch's on this project's machine. The export (and, for ``int8``,
per-channel dynamic quantisation with ONNX Runtime's quantiser) happens on first use and is kept
in the cache folder, keyed by the weights' SHA-256 and the precision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featurizer._errors import FeaturizerError, MissingPackageError
from featurizer._registry import BackboneConfig, Layer
from featurizer._weights import WeightsRef

RUNTIMES = ("torch", "onnx")
ONNX_PRECISIONS = ("fp32", "int8")
EXPORT_VERSION = 1  # bump when the exported graph changes: old files are then not reused

log = logging.getLogger(__name__)


def check_runtime(runtime: str, modality: str, precision: str, device: str = "auto") -> str:
    """``runtime`` if it can run a ``modality`` model at ``precision`` on ``device``; a clear error otherwise."""
    if runtime not in RUNTIMES:
        raise FeaturizerError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "onnx":
        if device not in ("auto", "cpu"):
            raise FeaturizerError(f"runtime 'onnx' runs on the CPU, not {device!r}; use --runtime torch on GPUs")
        if modality != "text":
            raise FeaturizerError("runtime 'onnx' runs text encoders; image models run on the torch runtime")
        if precision not in ONNX_PRECISIONS:
            raise FeaturizerError(f"runtime 'onnx' runs {' or '.join(ONNX_PRECISIONS)}, not {precision!r}")
    return runtime


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingPackageError("runtime 'onnx' needs ONNX Runtime: pip install 'featurizer[onnx]'") from None
    return onnxruntime


class OnnxTextBackbone:
    """A Hugging Face text encoder exported to ONNX: the same layers and tokens as ``TextBackbone``."""

    modality = "text"

    def __init__(self, config: BackboneConfig, weights: WeightsRef, preprocessing: dict, graph: Path):
        ort = _onnxruntime()
        self.config, self.weights, self.preprocessing = config, weights, preprocessing
        options = ort.SessionOptions()
        if os.environ.get("FEATURIZER_THREADS"):
            options.intra_op_num_threads = int(os.environ["FEATURIZER_THREADS"])
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        outputs = self.session.get_outputs()
        self.layers = tuple(Layer(o.name, int(o.shape[-1])) for o in outputs)
        self.tokenizer, self.pad_id = _fast_tokenizer(weights, int(preprocessing["max_length"]))
        self.model = None  # no torch module: the graph is the model

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def tokenize_counting(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Token ids per text (truncated at the maximum length) and how many texts were truncated."""
        encodings = self.tokenizer.encode_batch(list(texts))
        return [e.ids for e in encodings], sum(1 for e in encodings if e.overflowing)

    def forward(self, batch: dict[str, np.ndarray], layers: Sequence[str]) -> dict[str, np.ndarray]:
        """Hidden states of ``layers`` for a batch of token ids and attention masks (numpy arrays)."""
        return dict(zip(layers, self.session.run(list(layers), batch)))

    def pooled(self, batch: dict[str, np.ndarray], layers: Sequence[str], pooling: Sequence[str]):
        """One float32 vector per text for each layer, pooled over real tokens (in numpy: no torch needed)."""
        from featurizer._pooling import pool_tokens

        raw = self.forward(batch, layers)
        return {name: pool_tokens(raw[name], how, batch["attention_mask"]) for name, how in zip(layers, pooling)}


def _fast_tokenizer(weights: WeightsRef, max_length: int):
    """The model folder's ``tokenizer.json`` through the ``tokenizers`` library (truncating, unpadded) and its pad id.

    The same tokenizer transformers' fast tokenizers wrap, without importing transformers.
    """
    from tokenizers import Tokenizer

    path = Path(weights.location) / "tokenizer.json"
    if not path.is_file():
        raise FeaturizerError(f"runtime 'onnx' needs a tokenizer.json in the model folder; {weights.location} has none")
    tokenizer = Tokenizer.from_file(str(path))
    pad_id = tokenizer.padding["pad_id"] if tokenizer.padding else tokenizer.token_to_id("[PAD]") or 0
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer, int(pad_id)


def graph_path(cache_dir: Path, weights: WeightsRef, precision: str) -> Path:
    """Where the exported graph of these weights at this precision lives in the cache folder."""
    ident = json.dumps([weights.sha256 or weights.location, precision, EXPORT_VERSION])
    return cache_dir / "onnx" / f"{hashlib.sha256(ident.encode()).hexdigest()[:24]}-{precision}.onnx"


def load_onnx_text(config: BackboneConfig, weights: WeightsRef, preprocessing: dict, precision: str, cache_dir: Path):
    """The ONNX backbone of ``config``, exporting (and quantising) it first if the cache has no graph."""
    _onnxruntime()
    graph = graph_path(cache_dir, weights, precision)
    if not graph.is_file():
        export(config, weights, precision, graph)
    try:
        return OnnxTextBackbone(config, weights, preprocessing, graph)
    except FeaturizerError:
        raise
    except Exception as err:  # a graph damaged after it was written (files are replaced whole): export again
        log.warning("cannot load %s (%s); exporting it again", graph, str(err).splitlines()[0])
        graph.unlink(missing_ok=True)
        export(config, weights, precision, graph)
        return OnnxTextBackbone(config, weights, preprocessing, graph)


def export(config: BackboneConfig, weights: WeightsRef, precision: str, graph: Path) -> None:
    """Export the encoder's hidden states (one output per layer) to ``graph``, atomically."""
    import torch

    from featurizer._backbones import load_backbone

    backbone = load_backbone(config, weights)
    names = backbone.layer_names()
    feed, expected = _probe(backbone)

    class HiddenStates(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            return tuple(out.hidden_states)

    graph.parent.mkdir(parents=True, exist_ok=True)
    tmp = graph.with_name(f".{graph.name}.{uuid.uuid4().hex}.tmp")
    ids = torch.tensor([backbone.tokenize(["an example sentence", "another"])[0]] * 2)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    axes.update({name: {0: "batch", 1: "tokens"} for name in names})
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape-dependent Python values: checked below
            torch.onnx.export(
                HiddenStates(backbone.model.eval()),
                (ids, torch.ones_like(ids)),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=names,
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        _check_export(tmp, feed, expected)
        if precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            plain, tmp = tmp, tmp.with_suffix(".int8.tmp")
            quantize_dynamic(str(plain), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
            plain.unlink()
        os.replace(tmp, graph)
    except Exception as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, FeaturizerError):
            raise
        raise FeaturizerError(f"cannot export {config.name} to ONNX ({err}); use --runtime torch") from None


def _probe(backbone) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A batch of another size and length than the export's example, and PyTorch's hidden states for it.

    Taken before exporting: the exporter leaves the PyTorch module unfit to run again.
    """
    import torch

    from featurizer._preprocess import pad_token_batch

    texts = ["a", "a question of middling length ?", "a longer text " * 12]
    ids, mask = pad_token_batch(backbone.tokenize(texts), backbone.pad_id)
    with torch.inference_mode():
        out = backbone.forward(
            {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}, backbone.layer_names()
        )
    return {"input_ids": ids, "attention_mask": mask}, {name: t.numpy() for name, t in out.items()}


def _check_export(graph: Path, feed: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """The exported graph must give PyTorch's hidden states (at real, unpadded tokens)."""
    session = _onnxruntime().InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    names = list(expected)
    real = feed["attention_mask"].astype(bool)
    for name, out in zip(names, session.run(names, feed)):
        want = expected[name][real]
        worst = float(np.abs(out[real] - want).max() / max(float(np.abs(want).max()), 1e-6))
        if worst > 1e-4:
            raise FeaturizerError(f"the ONNX export differs from PyTorch at {name} (by {worst:.1e})")
