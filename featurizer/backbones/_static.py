"""Static text backbones: a table of one vector per token, distilled from an encoder by model2vec.

``minilm-static`` is distilled from the bundled all-MiniLM-L6-v2 on first use, offline (one
forward pass per vocabulary token, PCA, SIF weights), and kept in the cache folder's ``static/``
under a key of the source weights' SHA-256 and the recipe. A text's vector is then the mean of its
tokens' rows: numpy and a fast tokenizer, no network and no torch at run time (runtime ``numpy``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from featurizer.backbones._base import Description, Family, register_family
from featurizer.backbones._pooling import pool_array
from featurizer.base import FeaturizerError, MissingPackageError
from featurizer.spec import BackboneConfig, Layer, WeightsRef

log = logging.getLogger(__name__)

LIBRARY = "model2vec"
MAX_TOKENS = 512  # model2vec's own limit per text
# model2vec's defaults but SIF weighting, which took TREC from 0.748 to 0.712 and SST-2 from 0.741 to 0.719
# (AG News 0.805 either way; LR on standardised vectors, benchmarks/results/18-static.md); stored float32.
RECIPE = {"pca_dims": 256, "sif_coefficient": None, "pooling": "mean"}


def distiller_version() -> str:
    """The installed model2vec's version (part of the spec: another version may distil other vectors)."""
    try:
        return metadata.version("model2vec")
    except metadata.PackageNotFoundError:
        raise MissingPackageError(
            "static text models are distilled by model2vec: pip install 'featurizer[static]'"
        ) from None


def describe_static(config: BackboneConfig, weights: WeightsRef) -> Description:
    recipe = {**RECIPE, **config.extra.get("distill", {})}
    prep = {"tokenizer": "distilled", "max_length": MAX_TOKENS, "distill": {**recipe, LIBRARY: distiller_version()}}
    return (Layer("embeddings", int(recipe["pca_dims"])),), prep


class StaticBackbone:
    """Token vectors and the tokenizer they were distilled for; a text is the mean of its tokens' vectors."""

    modality = "text"

    def __init__(self, config: BackboneConfig, weights: WeightsRef, folder: Path, preprocessing: dict):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.config, self.weights, self.preprocessing = config, weights, preprocessing
        self.table = load_file(str(folder / "model.safetensors"))["embeddings"].astype(np.float32)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(preprocessing["max_length"]))
        unk = getattr(self.tokenizer.model, "unk_token", None)
        self.unk_id = self.tokenizer.token_to_id(unk) if unk else None
        self.pad_id = 0  # padded positions are masked out of the mean
        self.layers = (Layer("embeddings", self.table.shape[1]),)
        self.model = None  # no torch module: the table is the model

    def layer_names(self) -> list[str]:
        return ["embeddings"]

    def tokenize_counting(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Token ids per text without special tokens or unknown tokens (as model2vec encodes), and
        how many texts were longer than the maximum length."""
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ids = [[t for t in e.ids if t != self.unk_id] for e in encodings]
        return ids, sum(1 for e in encodings if e.overflowing)

    def pooled(self, batch, layers: Sequence[str], pooling: Sequence[str]) -> dict[str, np.ndarray]:
        """The pooled token vectors of each text (mean by default); a text with no known token is all zeros."""
        ids, mask = batch["input_ids"], batch["attention_mask"].astype(bool)
        out = {}
        for name, how in zip(layers, pooling):
            if how in ("mean", "avg"):  # summed by runs of real tokens: no items x tokens x dim array
                counts = mask.sum(axis=1)
                sums = np.zeros((len(ids), self.table.shape[1]), np.float32)
                rows = counts > 0
                starts = np.concatenate([[0], np.cumsum(counts[rows])[:-1]])
                sums[rows] = np.add.reduceat(self.table[ids[mask]], starts, axis=0)
                out[name] = sums / np.maximum(counts, 1)[:, None].astype(np.float32)
            else:
                out[name] = pool_array(self.table[ids], how, mask)
        return out


def static_folder(cache_dir: Path, config: BackboneConfig, weights: WeightsRef, preprocessing: dict) -> Path:
    """Where the table distilled from ``weights`` by this recipe lives: the cache folder's ``static/``, or
    ``$FEATURIZER_STATIC_DIR`` (one folder of tables shared by several cache folders)."""
    ident = json.dumps([config.name, weights.sha256 or weights.location, preprocessing["distill"]], sort_keys=True)
    shared = os.environ.get("FEATURIZER_STATIC_DIR")
    key = hashlib.sha256(ident.encode()).hexdigest()[:24]
    return (Path(shared) if shared else cache_dir / "static") / f"{config.name}-{key}"


def load_static(config: BackboneConfig, weights: WeightsRef, cache_dir: Path) -> StaticBackbone:
    """The static backbone of ``config``, distilling it from ``weights`` first if the cache has none."""
    _, preprocessing = describe_static(config, weights)
    folder = static_folder(cache_dir, config, weights, preprocessing)
    if not (folder / "model.safetensors").is_file():
        distill(weights, preprocessing["distill"], folder)
    return StaticBackbone(config, weights, folder, preprocessing)


def distill(weights: WeightsRef, recipe: dict, folder: Path) -> None:
    """Distil a token table from the encoder folder ``weights`` into ``folder``, whole or not at all."""
    if weights.kind != "folder":
        raise FeaturizerError(
            f"a static model is distilled from a Hugging Face model folder; {weights.location} is not one"
        )
    try:
        from model2vec.distill import distill_from_model
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise MissingPackageError(
            f"distilling a static model needs model2vec's distiller ({err.name}): pip install 'featurizer[static]'"
        ) from None
    log.warning("distilling a static text model from %s (once per cache folder)", weights.location)
    model = AutoModel.from_pretrained(weights.location)
    tokenizer = AutoTokenizer.from_pretrained(weights.location)
    static = distill_from_model(
        model,
        tokenizer,
        device="cpu",
        pca_dims=recipe["pca_dims"],
        sif_coefficient=recipe["sif_coefficient"],
        pooling=recipe["pooling"],
        quantize_to="float32",
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        static.save_pretrained(str(tmp))
        try:
            os.rename(tmp, folder)  # whole: a crash leaves only a temporary folder behind
        except OSError:
            if not (folder / "model.safetensors").is_file():  # not another process's finished table
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_elsewhere(config: BackboneConfig, weights: WeightsRef):
    raise FeaturizerError(f"{config.name} is a static table, not a network: it runs on runtime 'numpy' only")


register_family(Family("static", lambda c: c.library == LIBRARY, _build_elsewhere, describe_static))
