"""Vectors at rest: the content-addressed cache, feature files and their Parquet form."""

from featurizer.cache._featurefile import (
    STORE_DTYPES,
    FeatureFile,
    FeatureFileWriter,
    check_output,
    is_feature_file,
    library_versions,
    storable_text,
)
from featurizer.cache._parquet import columns_and_layers, feature_file_as_parquet, read_parquet_features, write_parquet
from featurizer.cache._quantize import (
    QUANTIZATIONS,
    binary_calibration,
    check_quantization,
    dequantize,
    pack_bits,
    quantize,
    read_info,
)
from featurizer.cache._remote_cache import RemoteCache, mirror_dir
from featurizer.cache._store import CacheDamaged, EmbeddingStore, default_cache_dir, lock_output, release_output

__all__ = [
    "QUANTIZATIONS",
    "STORE_DTYPES",
    "CacheDamaged",
    "EmbeddingStore",
    "FeatureFile",
    "FeatureFileWriter",
    "RemoteCache",
    "binary_calibration",
    "check_output",
    "check_quantization",
    "columns_and_layers",
    "default_cache_dir",
    "dequantize",
    "feature_file_as_parquet",
    "is_feature_file",
    "library_versions",
    "lock_output",
    "mirror_dir",
    "pack_bits",
    "quantize",
    "read_info",
    "read_parquet_features",
    "release_output",
    "storable_text",
    "write_parquet",
]
