"""The featurizer as a scikit-learn transformer, for ``Pipeline``, ``GridSearchCV`` and notebooks.

``Featurizer`` maps raw inputs (image paths, PIL images, uint8 arrays, or strings for text
models) to an ``(n, d)`` array: the pooled vectors of its layers side by side, in the order the
layers are given. The network stays frozen and loads on first use; vectors go through the shared
cache, so the folds of a cross-validation, or a second ``transform`` of the same inputs, compute
nothing again. Pickling keeps the parameters only, never weights.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from featurizer.backbones import FeatureOptions, RunOptions, layer_dims, resolve_spec
from featurizer.base import FeaturizerError, InputError, ItemError
from featurizer.engine import Extractor
from featurizer.inputs import Inputs
from featurizer.spec import IMAGE, TEXT, FeatureSpec


class Featurizer(TransformerMixin, BaseEstimator):
    """Frozen pretrained features of raw inputs.

    Parameters
    ----------
    model : str, optional
        A registered name (``efficientnet_lite0``, ``minilm``), ``timm/NAME``, ``torchvision/NAME`` or
        ``hf/ID``; default: the registry's image model.
    layers : str, int or list of them, optional
        Layer names or depth indices (``-1`` is the last); default: pre-logits for images, the
        last layer for texts. Several layers are concatenated in the order given.
    pooling : str, optional
        ``avg``/``max``/``gem`` for CNN maps, ``mean``/``cls``/``max`` for tokens.
    precision : {"fp32", "bf16", "fp16", "int8"}
    runtime : {"auto", "torch", "onnx"}
        ``onnx`` runs on ONNX Runtime (CPU; fp32, or int8 for texts); needs ``featurizer[onnx]``.
        ``auto`` (the default) takes it on a CPU for the built-in models where it is installed.
    weights : str or path, optional
        A local checkpoint or model folder instead of the default weights.
    spec : FeatureSpec, optional
        Make exactly these features (saved pipelines use it); the six parameters above must then be
        left at their defaults.
    batch_size : int, optional
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    cache : str or path, optional
        Cache folder (default: ``$FEATURIZER_CACHE`` or ``./cache``); ``False`` keeps vectors in a
        temporary folder for this process only.
    workers : int, optional
        Image decoding processes.

    Attributes
    ----------
    layers_ : tuple of str
        The resolved layer names.
    spec_ : FeatureSpec
        The full feature spec.
    n_features_out_ : int
    """

    def __init__(
        self,
        model: str | None = None,
        layers=None,
        pooling: str | None = None,
        *,
        precision: str = "fp32",
        runtime: str = "auto",
        weights=None,
        spec: FeatureSpec | None = None,
        batch_size: int | None = None,
        device: str = "auto",
        cache=None,
        workers: int | None = None,
        progress: bool = False,
    ):
        # scikit-learn's estimator contract: every argument stored untouched (get_params reads them back).
        self.model = model
        self.layers = layers
        self.pooling = pooling
        self.precision = precision
        self.runtime = runtime
        self.weights = weights
        self.spec = spec
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.workers = workers
        self.progress = progress

    def _feature_options(self) -> FeatureOptions:
        return FeatureOptions(**{f.name: getattr(self, f.name) for f in fields(FeatureOptions)})

    def _resolved_spec(self) -> FeatureSpec:
        options = self._feature_options()
        if self.spec is None:
            return resolve_spec(options, None, self.device)
        if options != FeatureOptions():
            raise FeaturizerError("give either spec or model/layers/pooling/weights/precision/runtime, not both")
        return self.spec

    def _extractor(self) -> Extractor:
        current = getattr(self, "_extractor_obj", None)
        if current is None or getattr(self, "_extractor_params", None) != self.get_params():
            run = RunOptions(self.device, self.batch_size, self.workers, self._cache_dir(), self.progress)
            current = Extractor(self._resolved_spec(), run)
            self._extractor_obj, self._extractor_params = current, self.get_params()
        return current

    def _cache_dir(self):
        if self.cache is False:
            if getattr(self, "_tmp_cache", None) is None:
                self._tmp_cache = tempfile.TemporaryDirectory(prefix="featurizer-")
            return Path(self._tmp_cache.name)
        return None if self.cache is None else Path(self.cache)

    def fit(self, X=None, y=None) -> Featurizer:
        """Check the parameters and resolve the spec; the network is not trained, loaded or even looked for."""
        self.spec_ = self._resolved_spec()
        self.layers_ = self.spec_.layers
        self.n_features_out_ = sum(self._layer_dims())
        return self

    def _layer_dims(self) -> list[int]:
        return layer_dims(self.spec_)

    def transform(self, X) -> np.ndarray:
        """Vectors of ``X``, shape (n, sum of layer dims), layers side by side in ``layers_`` order."""
        check_is_fitted(self, "spec_")
        extractor = self._extractor()
        inputs = _as_inputs(X, extractor.modality)
        keys, errors = extractor.keys(inputs)
        _, item_errors = extractor.ensure(inputs, keys, on_error="fail")
        errors += item_errors
        if errors:
            raise ItemError(f"cannot featurize item {errors[0][0]}: {errors[0][1]}")
        return np.hstack([extractor.vectors(layer, keys) for layer in extractor.spec.layers])

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "spec_")
        dims = self._layer_dims()
        return np.asarray([f"{layer}_{i}" for layer, d in zip(self.layers_, dims) for i in range(d)], dtype=object)

    def __getstate__(self):
        state = self.__dict__.copy()
        for private in ("_extractor_obj", "_extractor_params", "_tmp_cache"):
            state.pop(private, None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags


def _as_inputs(X, modality: str) -> Inputs:
    """Raw items as ``Inputs``: texts for text models; paths, PIL images or uint8 arrays for images."""
    if isinstance(X, np.ndarray) and X.dtype == np.uint8 and X.ndim == 4:
        items = list(X)  # a stack of H x W x C images
    elif isinstance(X, str | os.PathLike) or (isinstance(X, np.ndarray) and X.ndim > 2):
        raise InputError("give a list of items (paths, images or texts), not a single item")
    elif hasattr(X, "tolist") and not isinstance(X, np.ndarray | list):
        items = list(X.tolist())  # pandas Series and the like
    else:
        items = list(np.asarray(X, dtype=object).ravel()) if isinstance(X, np.ndarray) else list(X)
    ids = [str(i) for i in range(len(items))]
    if modality == TEXT:
        if not all(isinstance(t, str) for t in items):
            raise InputError("a text model takes strings")
        return Inputs(ids, items, TEXT, from_files=False)
    sources: list = [str(Path(i)) if isinstance(i, str | os.PathLike) else i for i in items]
    return Inputs(ids, sources, IMAGE, from_files=True)
