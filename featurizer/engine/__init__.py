"""Running it: featurize (inputs > keys > cache > batches > backbone > pooled layers > cache), embed."""

from featurizer.engine._embed import EmbedOptions, embed_options
from featurizer.engine._extract import (
    ON_ERROR,
    Extractor,
    FeaturizeReport,
    default_feature_name,
    featurize,
    featurize_options,
    featurize_with,
    inputs_for,
    model_for,
)
from featurizer.engine._shards import ENGINES, SHARD_FORMATS, merge

__all__ = [
    "ENGINES",
    "ON_ERROR",
    "SHARD_FORMATS",
    "EmbedOptions",
    "Extractor",
    "FeaturizeReport",
    "default_feature_name",
    "embed_options",
    "featurize",
    "featurize_options",
    "featurize_with",
    "inputs_for",
    "merge",
    "model_for",
]
