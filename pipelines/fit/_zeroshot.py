"""Zero-shot from class names: prototypes from the text embeddings of class descriptions.

Each class's prototype starts at the mean (unit-length) embedding of its description written into
each template, and moves toward the class's labelled examples as they come: prototype =
``weight`` x text vector + the sum of the examples' unit vectors, so the text counts as ``weight``
examples. With labelled examples the weight is chosen by cross-validation (0 is plain prototypes);
without any, the head is the text vectors alone. Classification is by cosine similarity.

For texts, the class descriptions are embedded with the feature file's own spec. For images the
model must be an image-text model (CLIP, ``featurizer._clip``) and the layer its ``embeds``: the
descriptions go through the same model's text tower into the space the image vectors live in.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from featurizer import Extractor, FeatureFile, FeatureOptions, FeatureSpec, FeaturizerError, RunOptions, get_config
from featurizer.backbones import resolve_spec
from featurizer.inputs import texts_as_inputs
from featurizer.spec import SHARED_LAYER
from pipelines.fit._fit import CVRow, FitResult, choose_layers, end_to_end, grid_search, labelled, read_xy
from pipelines.heads import softmax, unit_rows
from pipelines.models import ModelCard

DEFAULT_TEMPLATES = ("{}",)
# Pseudo-examples the class text counts for, strongest prior first: the one-standard-error rule
# prefers the first candidates, and with few labels a strong prior is the safer model. 0 ignores the text.
WEIGHTS = [16.0, 8.0, 4.0, 2.0, 1.0, 0.0]


def read_class_texts(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(classes, descriptions) from a file of one class a line, ``name`` or ``name: description``."""
    classes, descriptions = [], []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, description = line.partition(":")
        name, description = name.strip(), description.strip() if sep else name.strip()
        if not name:
            raise FeaturizerError(f"{path}, line {number}: no class name before ':'")
        if not description:
            raise FeaturizerError(f"{path}, line {number}: class {name!r} has no description after ':'")
        if name in classes:
            raise FeaturizerError(f"{path}, line {number}: class {name!r} is listed twice")
        classes.append(name)
        descriptions.append(description)
    if not classes:
        raise FeaturizerError(f"{path} lists no classes (one a line, 'name' or 'name: description')")
    return classes, descriptions


def class_text_vectors(
    spec: FeatureSpec, descriptions: list[str], templates=DEFAULT_TEMPLATES, run: RunOptions | None = None
) -> np.ndarray:
    """One unit vector per class: its description in every template, embedded with ``spec``, averaged."""

    spec = text_spec_for(spec)
    for template in templates:
        if "{}" not in template:
            raise FeaturizerError(f"template {template!r} has no {{}} for the class description")
    texts = [template.format(d) for d in descriptions for template in templates]
    extractor = Extractor(spec, run or RunOptions(progress=False))
    inputs = texts_as_inputs(texts)
    keys, _ = extractor.keys(inputs)
    try:
        extractor.ensure(inputs, keys, "fail")
        vectors = np.hstack([extractor.vectors(layer, keys) for layer in spec.layers])
    finally:
        extractor.compact()  # releases the cache stores it held
    return unit_rows(unit_rows(vectors).reshape(len(descriptions), len(templates), -1).mean(axis=1)).astype(np.float32)


def text_spec_for(spec: FeatureSpec) -> FeatureSpec:
    """The spec that embeds class texts next to ``spec``'s vectors: ``spec`` itself for a text model,
    the text tower of the same image-text model (same weights, ``embeds`` layer) for images."""

    if spec.modality == "text":
        return spec
    if not get_config(spec.model, spec.modality).image_text:
        raise FeaturizerError(
            f"zero-shot for images needs an image-text model (CLIP, e.g. hf/openai/clip-vit-base-patch32); "
            f"these features are from {spec.model}"
        )
    if spec.layers != (SHARED_LAYER,):
        raise FeaturizerError(
            f"zero-shot compares images and texts in the space the towers share: use the layer {SHARED_LAYER!r} "
            f"alone (--layer {SHARED_LAYER}), not {'+'.join(spec.layers)}"
        )
    options = FeatureOptions(
        model=spec.model,
        weights=spec.weights if spec.weights_sha256 else None,
        layers=[SHARED_LAYER],
        precision=spec.precision,
        runtime=spec.runtime,
    )
    return resolve_spec(options, modality="text")


class ZeroShotPrototypes(ClassifierMixin, BaseEstimator):
    """Nearest prototype by cosine, the prototypes seeded by class-text vectors (see the module)."""

    def __init__(self, class_vectors=None, classes=None, weight: float = 4.0, temperature: float = 0.05):
        self.class_vectors = class_vectors
        self.classes = classes
        self.weight = weight
        self.temperature = temperature

    def fit(self, X=None, y=None):
        classes = list(self.classes)
        self.classes_ = np.asarray(classes, dtype=object)
        prototypes = self.weight * unit_rows(np.asarray(self.class_vectors))
        if X is not None and len(X):
            y = np.asarray(y).astype(str)
            unknown = sorted(set(y) - set(classes))
            if unknown:
                raise FeaturizerError(f"labels {', '.join(map(repr, unknown[:5]))} are not in the class list")
            U = unit_rows(X)
            for i, c in enumerate(classes):
                prototypes[i] += U[y == c].sum(axis=0)
        self.prototypes_ = unit_rows(prototypes).astype(np.float32)
        self.n_features_in_ = self.prototypes_.shape[1]
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "prototypes_")
        return unit_rows(X) @ self.prototypes_.T

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.decision_function(X) / self.temperature)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def zero_shot_head(vectors: np.ndarray, classes: list[str], X=None, y=None, seed: int = 0):
    """(fitted head, params, CV mean, CV std): the class texts alone without labels, else the text as
    a prior with its weight chosen by cross-validation (``WEIGHTS``; one example per class: 4)."""

    head = ZeroShotPrototypes(vectors, classes)
    if y is None or not len(y):
        return head.set_params(weight=1.0).fit(), {"weight": "text only"}, float("nan"), 0.0
    searched = grid_search(head, {"weight": WEIGHTS}, X, y, seed)
    return searched.model, searched.params, searched.mean, searched.std


def fit_zero_shot(
    train: str | os.PathLike,
    labels_file: str | os.PathLike,
    templates=DEFAULT_TEMPLATES,
    layer=None,
    run: RunOptions | None = None,
    seed: int = 0,
):
    """A zero-shot head for ``train``'s feature spec; with labelled items in ``train``, the text as a
    prior whose weight is chosen by cross-validation. Returns a ``FitResult`` like ``fit``."""

    classes, descriptions = read_class_texts(labels_file)
    with FeatureFile(train) as features:
        chosen = choose_layers(features.layers, layer)
        if chosen == "auto":
            raise FeaturizerError("zero-shot reads one layer setting; give layer names, not 'auto'")
        spec = features.spec.select(chosen)
        X, y, notes = labelled(*read_xy(features, chosen), str(train))
    vectors = class_text_vectors(spec, descriptions, tuple(templates), run)
    model, params, mean, std = zero_shot_head(vectors, classes, X, y, seed)
    row = CVRow(chosen, params, mean, std)
    pipeline = end_to_end(spec, model)
    card = ModelCard(
        spec=spec,
        classes=classes,
        head="zero-shot",
        params={**params, "templates": list(templates), "descriptions": dict(zip(classes, descriptions))},
        cv=[{"layers": row.name, "params": params, "mean": mean, "std": std}],
        cv_score=mean,
        train=str(os.path.abspath(train)),
    )
    return FitResult(pipeline, card, [row], warnings=notes)
