"""What the user points at, read into items with ids and labels, decoded and preprocessed."""

from featurizer.inputs._augment import view_spec
from featurizer.inputs._decode import DecodedBatches, default_workers
from featurizer.inputs._inputs import (
    Inputs,
    ReadOptions,
    guess_modality,
    id_value_columns,
    read_inputs,
    texts_as_inputs,
)
from featurizer.inputs._keys import FileKeyMemo, array_key, text_key
from featurizer.inputs._preprocess import (
    ImageTransform,
    image_sizes,
    load_image,
    pad_token_batch,
    read_json,
    text_preprocessing,
)

__all__ = [
    "DecodedBatches",
    "FileKeyMemo",
    "ImageTransform",
    "Inputs",
    "ReadOptions",
    "array_key",
    "default_workers",
    "guess_modality",
    "id_value_columns",
    "image_sizes",
    "load_image",
    "pad_token_batch",
    "read_inputs",
    "read_json",
    "text_key",
    "text_preprocessing",
    "texts_as_inputs",
    "view_spec",
]
