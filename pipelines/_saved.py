"""Saved models: a joblib file plus a JSON sidecar that says what the model needs and proves the file.

The sidecar records the feature spec the model was trained on, the class names, cross-validation
scores, library versions and the SHA-256 of the joblib file. Loading checks that hash before
unpickling: joblib files can run code when loaded, so only files you trust should be loaded, and a
file that does not match its sidecar is refused unless the caller says it trusts it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import joblib

from featurizer import FeatureSpec, FeaturizerError
from featurizer._atomic import atomic_path, atomic_write_text
from featurizer._featurefile import library_versions
from featurizer._hashing import file_sha256

FORMAT = "featurizer-model/1"


class UntrustedModelError(FeaturizerError):
    """A model file whose hash does not match its sidecar (or that has no sidecar)."""


@dataclass
class ModelCard:
    """What the sidecar holds."""

    spec: FeatureSpec  # restricted to the layers the model reads, in the order they are concatenated
    classes: list[str]
    head: str
    params: dict = field(default_factory=dict)
    cv: list[dict] = field(default_factory=list)
    cv_score: float | None = None
    versions: dict = field(default_factory=library_versions)
    sha256: str = ""
    format: str = FORMAT
    train: str = ""  # the feature file it was fitted on (absolute path)

    def to_json(self) -> str:
        data = {**self.__dict__, "spec": json.loads(self.spec.to_json())}
        return json.dumps(data, indent=2, default=str)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        data = json.loads(text)
        data["spec"] = FeatureSpec.from_json(json.dumps(data["spec"]))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def save_model(model, card: ModelCard, path: str | os.PathLike, force: bool = False) -> Path:
    """Write ``model`` with joblib and its sidecar, each under a temporary name then renamed.

    A model fitted on another training file is not replaced without ``force``.
    """
    path = Path(path)
    if not force and sidecar_path(path).is_file():
        try:
            old = ModelCard.from_json(sidecar_path(path).read_text()).train
        except (ValueError, KeyError, TypeError):
            old = ""
        if old and card.train and old != card.train:
            raise FeaturizerError(
                f"{path} holds a model fitted on {old}, not {card.train}; choose another -o (or --force to replace it)"
            )
    with atomic_path(path) as tmp:
        joblib.dump(model, tmp)
    card.sha256 = file_sha256(path)
    atomic_write_text(sidecar_path(path), card.to_json())
    return path


def read_card(path: str | os.PathLike) -> ModelCard:
    side = sidecar_path(path)
    if not side.is_file():
        raise UntrustedModelError(f"{path} has no sidecar {side.name}: cannot check it before loading")
    try:
        return ModelCard.from_json(side.read_text())
    except (ValueError, KeyError, TypeError) as err:
        raise UntrustedModelError(f"sidecar {side} is not a featurizer model card: {err}") from None


def load_model(path: str | os.PathLike, trust: bool = False):
    """(model, card) after checking the file's SHA-256 against its sidecar.

    Joblib files run code when loaded: only load models you trust. ``trust=True`` skips the
    check (for a file you made yourself and changed on purpose).
    """
    path = Path(path)
    if not path.is_file():
        raise FeaturizerError(f"model file not found: {path}")
    card = None
    try:
        card = read_card(path)
        if file_sha256(path) != card.sha256:
            raise UntrustedModelError(
                f"{path} does not match the SHA-256 in {sidecar_path(path).name}: it changed after it was saved. "
                "Joblib files run code when loaded, so it was not loaded; pass --trust only if you trust it"
            )
    except UntrustedModelError:
        if not trust:
            raise
    return joblib.load(path), card
