"""Hugging Face encoders (BERT family): the embedding output and every transformer layer's token
states, read from ``output_hidden_states``; described from ``config.json`` and the tokenizer alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featurizer.backbones._base import Backbone, Description, Family, from_hf, register_family, torch
from featurizer.base import InputError
from featurizer.inputs import read_json, text_preprocessing
from featurizer.spec import BackboneConfig, Layer, WeightsRef


class TextBackbone(Backbone):
    """A Hugging Face encoder: the embedding output and every transformer layer's token states."""

    modality = "text"

    def __init__(self, config, weights, model, preprocessing, tokenizer):
        self.tokenizer = tokenizer
        super().__init__(config, weights, model, preprocessing)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated at the model's maximum length, unpadded."""
        return self.tokenize_counting(texts)[0]

    def tokenize_counting(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Token ids per text and the number of texts that were longer than the maximum length."""
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.preprocessing["max_length"],
            add_special_tokens=True,
            return_overflowing_tokens=True,
        )
        rows = encoded.get("overflow_to_sample_mapping")
        if rows is None:  # slow tokenizers: no mapping, one row per text
            return encoded["input_ids"], 0
        first: dict[int, list[int]] = {}
        for ids, sample in zip(encoded["input_ids"], rows):
            first.setdefault(int(sample), ids)
        truncated = int((np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(texts)) > 1).sum())
        return [first[i] for i in range(len(texts))], truncated

    def _layer_names(self) -> list[str]:
        return ["embeddings", *(f"layer.{i}" for i in range(self.model.config.num_hidden_layers))]

    def example_batch(self) -> dict[str, torch.Tensor]:
        ids = torch.tensor([self.tokenize(["an example"])[0]])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def _forward(self, batch: dict[str, torch.Tensor], layers: Sequence[str]) -> dict[str, torch.Tensor]:
        out = self.model(**batch, output_hidden_states=True, return_dict=True)
        names = self._layer_names()
        return {name: out.hidden_states[names.index(name)] for name in layers}


def build_text(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    source = weights.location.removeprefix("hf:")
    tokenizer, model = from_hf(weights, "AutoTokenizer", "AutoModel")
    if weights.kind == "folder":
        prep = text_preprocessing(source)
    else:
        prep = _hub_text_preprocessing(source, tokenizer, model.config)
    return TextBackbone(config, weights, model, prep, tokenizer)


def hub_text_config(weights: WeightsRef) -> tuple[dict, dict]:
    """(model config, preprocessing) of a Hugging Face hub encoder, from its config and tokenizer files only."""
    source = weights.location.removeprefix("hf:")
    tokenizer, model_config = from_hf(weights, "AutoTokenizer", "AutoConfig")
    return model_config.to_dict(), _hub_text_preprocessing(source, tokenizer, model_config)


def _hub_text_preprocessing(source: str, tokenizer, model_config) -> dict:
    limit = min(tokenizer.model_max_length, getattr(model_config, "max_position_embeddings", 512))
    return {
        "tokenizer": f"hf:{source}",
        "max_length": int(limit),
        "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
    }


def describe_text(config: BackboneConfig, weights: WeightsRef) -> Description:
    if weights.kind == "folder":
        model_config = read_json(Path(weights.location) / "config.json")
        prep = text_preprocessing(weights.location)
    else:
        model_config, prep = hub_text_config(weights)
    depth, width = model_config.get("num_hidden_layers"), model_config.get("hidden_size")
    if not isinstance(depth, int):
        raise InputError(f"{config.name}: its config.json has no num_hidden_layers (not a BERT-family encoder?)")
    layers = (Layer("embeddings", width), *(Layer(f"layer.{i}", width) for i in range(depth)))
    return layers, prep


register_family(Family("hf-encoder", lambda c: c.library == "hf" and not c.image_text, build_text, describe_text))
