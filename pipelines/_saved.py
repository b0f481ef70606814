"""Saved models: a skops file whose loading runs no code, plus a JSON card that says what the model needs.

The model is written with ``skops.io``: a zip of JSON and numpy arrays that is rebuilt, on
loading, only from an explicit list of types (``TRUSTED_TYPES``: scikit-learn's estimators that the
heads use, and this project's ``Featurizer``, ``FeatureSpec`` and FAISS heads). A file naming any
other type is refused with the type named; nothing in it is executed, whoever sent it.

The card (``MODEL.json`` beside it) records the feature spec the model was trained on, the class
names, cross-validation scores, the training file, library versions and the SHA-256 of the model
file, which is checked on loading: a file changed after it was saved is refused.

Models saved by earlier versions with joblib are pickles, which can run code when loaded: they
load only with ``trust=True`` (``--trust``), for files you made yourself.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

from featurizer import FeatureSpec, FeaturizerError
from featurizer._atomic import atomic_path, atomic_write_text
from featurizer._featurefile import library_versions
from featurizer._hashing import file_sha256
from featurizer._storage import download, exists, is_url, read_bytes, staging_dir, upload

FORMAT = "featurizer-model/2"
ZIP_MAGIC = b"PK\x03\x04"

# Types a saved model may hold beyond those skops trusts by default (scikit-learn's estimators,
# numpy and scipy containers). Each is a plain data holder or an estimator whose state is arrays
# and parameters; skops rebuilds them without calling anything but their ``__setstate__``.
TRUSTED_TYPES = [
    "featurizer._spec.FeatureSpec",
    "pipelines._adapt.AffineMap",
    "featurizer._transformer.Featurizer",
    "pipelines._prototype.KNNClassifier",
    "pipelines._prototype.PrototypeClassifier",
    "pipelines._tasks.MultiLabelLogistic",
    "pipelines._tasks.TaskHeads",
    "pipelines._zeroshot.ZeroShotPrototypes",
]


class UntrustedModelError(FeaturizerError):
    """A model file that cannot be loaded safely: changed since it was saved, a pickle, or foreign types."""


@dataclass
class ModelCard:
    """What the card holds."""

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
    calibration: dict = field(default_factory=dict)  # temperature and out-of-fold ECE/Brier (pipelines._calibration)
    adaptation: dict = field(default_factory=dict)  # method and target feature file (pipelines._adapt)
    label_column: str = ""  # the input column the labels came from ("": the feature file's labels)
    tasks: list[dict] = field(default_factory=list)  # one per task of a multi-task model (pipelines._tasks)

    def to_json(self) -> str:
        data = {**self.__dict__, "spec": json.loads(self.spec.to_json())}
        return json.dumps(data, indent=2, default=str)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        data = json.loads(text)
        data["spec"] = FeatureSpec.from_json(json.dumps(data["spec"]))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _skops_io():
    """``skops.io``, imported without importing PyTorch on the way when nothing else has.

    skops lists scikit-learn's estimators at import by walking every scikit-learn package, and
    the walk imports scikit-learn's PyTorch array-API shim, hence PyTorch: about 1.9 s of a 4 s
    ``xfer fit`` on this 2-core machine. The shim holds no estimator, so the walk skips it here;
    the sentinel is removed at once, so later imports of the shim work as usual.
    """
    import sys

    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io

        return skops.io
    shim = "sklearn.externals.array_api_compat.torch"
    sys.modules.setdefault(shim, None)  # ``import`` of a None entry raises ImportError, which the walk skips
    try:
        import skops.io
    finally:
        if sys.modules.get(shim, 0) is None:
            del sys.modules[shim]
    return skops.io


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def _sidecar_url(url: str) -> str:
    return posixpath.splitext(url)[0] + ".json"


def save_model(model, card: ModelCard, path: str | os.PathLike, force: bool = False) -> Path | str:
    """Write ``model`` with skops and its card, each under a temporary name then renamed (in
    object storage: written locally, then uploaded, the card last).

    A model fitted on another training file is not replaced without ``force``, and a card that
    would overwrite the model itself or a JSON file that is not a card is refused.
    """
    if is_url(path):
        url = str(path)
        with tempfile.TemporaryDirectory(dir=staging_dir()) as folder:
            local = Path(folder) / posixpath.basename(url)
            if exists(_sidecar_url(url)):  # the same checks against the card already there
                download(_sidecar_url(url), sidecar_path(local))
            save_model(model, card, local, force)
            upload(local, url)
            upload(sidecar_path(local), _sidecar_url(url))
        return url
    sio = _skops_io()

    path = Path(path)
    side = sidecar_path(path)
    if side == path:
        raise FeaturizerError(f"{path}: the model's card would be written over the model; use another suffix (.skops)")
    if side.is_file():
        try:
            old = ModelCard.from_json(side.read_text()).train
        except (ValueError, KeyError, TypeError):
            raise FeaturizerError(f"{side} exists and is not a model card; choose another -o") from None
        if not force and old and card.train and old != card.train:
            raise FeaturizerError(
                f"{path} holds a model fitted on {old}, not {card.train}; choose another -o (or --force to replace it)"
            )
    with atomic_path(path) as tmp:
        sio.dump(model, tmp)
    card.sha256 = file_sha256(path)
    card.format = FORMAT
    atomic_write_text(side, card.to_json())
    return path


def read_card(path: str | os.PathLike) -> ModelCard:
    if is_url(path):
        if not exists(_sidecar_url(str(path))):
            raise UntrustedModelError(f"{path} has no card beside it: its feature spec is unknown; not used")
        try:
            return ModelCard.from_json(read_bytes(_sidecar_url(str(path))).decode())
        except (ValueError, KeyError, TypeError) as err:
            raise UntrustedModelError(f"{_sidecar_url(str(path))} is not a featurizer model card: {err}") from None
    side = sidecar_path(path)
    if not side.is_file():
        raise UntrustedModelError(f"{path} has no card {side.name}: its feature spec is unknown, so it cannot be used")
    try:
        return ModelCard.from_json(side.read_text())
    except (ValueError, KeyError, TypeError) as err:
        raise UntrustedModelError(f"{side} is not a featurizer model card: {err}") from None


def load_model(path: str | os.PathLike, trust: bool = False):
    """(model, card), loading nothing that can run code unless ``trust``.

    skops files are rebuilt from ``TRUSTED_TYPES`` only, after their SHA-256 is checked against the
    card; ``trust=True`` also accepts a changed file, other types, and old joblib pickles (which run
    code when loaded: only for files you made yourself).
    """
    if is_url(path):
        url = str(path)
        with tempfile.TemporaryDirectory(dir=staging_dir()) as folder:
            local = Path(folder) / posixpath.basename(url)
            download(url, local)
            if exists(_sidecar_url(url)):
                download(_sidecar_url(url), sidecar_path(local))
            return load_model(local, trust)
    sio = _skops_io()

    path = Path(path)
    if not path.is_file():
        raise FeaturizerError(f"model file not found: {path}")
    card = read_card(path)
    if file_sha256(path) != card.sha256 and not trust:
        raise UntrustedModelError(
            f"{path} does not match the SHA-256 in {sidecar_path(path).name}: it changed after it was saved, "
            "so it was not loaded (pass --trust only if you changed it yourself)"
        )
    with open(path, "rb") as f:
        is_skops = f.read(4) == ZIP_MAGIC
    if not is_skops:
        if not trust:
            raise UntrustedModelError(
                f"{path} is a joblib pickle from an earlier version: loading it can run code, so it was not loaded. "
                "Fit it again to save it safely, or pass --trust if you made it yourself"
            )
        import joblib

        return joblib.load(path), card
    unknown = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    if unknown and not trust:
        raise UntrustedModelError(
            f"{path} holds types this tool does not load ({', '.join(unknown[:5])}); it was not loaded "
            "(pass --trust to load them anyway)"
        )
    try:
        return sio.load(path, trusted=[*TRUSTED_TYPES, *unknown]), card
    except Exception as err:  # a damaged zip or a skops version mismatch: one line, not a traceback
        raise UntrustedModelError(f"cannot load {path}: {str(err).splitlines()[0] if str(err) else err!r}") from None
