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

import numpy as np
from sklearn.pipeline import Pipeline

from featurizer import FeatureSpec, FeaturizerError
from featurizer.cache import library_versions
from featurizer.spec import get_config
from featurizer.storage import (
    Url,
    atomic_path,
    atomic_write_text,
    claim,
    download,
    file_sha256,
    is_url,
    location,
    staging_dir,
    upload,
)
from pipelines.heads import HEADS, FairMixture
from pipelines.models._markdown import render_model_card

FORMAT = "featurizer-model/2"
ZIP_MAGIC = b"PK\x03\x04"

# Types a saved model may hold beyond those skops trusts by default (scikit-learn's estimators,
# numpy and scipy containers). Each is a plain data holder or an estimator whose state is arrays
# and parameters; skops rebuilds them without calling anything but their ``__setstate__``.
TRUSTED_TYPES = [
    "featurizer.spec._spec.FeatureSpec",
    "featurizer.transformer.Featurizer",
    "pipelines.heads._fairness.FairMixture",
    "pipelines.heads._linalg.AffineMap",
    "pipelines.fit._tasks.MultiLabelLogistic",
    "pipelines.fit._tasks.TaskHeads",
    "pipelines.fit._zeroshot.ZeroShotPrototypes",
    "pipelines.heads._prototype.KNNClassifier",
    "pipelines.heads._prototype.PrototypeClassifier",
    # the same types by their earlier paths: older model files name them so (featurizer._moved)
    "pipelines.adapt._adapt.AffineMap",
    "featurizer._spec.FeatureSpec",
    "featurizer._transformer.Featurizer",
    "pipelines._adapt.AffineMap",
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
    memory: dict = field(default_factory=dict)  # the rehearsal memory file beside the model (pipelines.fit._memory)
    updates: list[dict] = field(default_factory=list)  # each `xfer update` that grew it (pipelines.fit._update)
    mitigation: dict = field(default_factory=dict)  # constraint, groups file, held-out gap (pipelines.heads._fairness)
    # Optional, for the Markdown card (pipelines.models._markdown); older cards load without them.
    label_counts: dict = field(default_factory=dict)  # training items per class
    train_sha256: str = ""  # SHA-256 of the training file's content
    limits: list[str] = field(default_factory=list)  # known limits in plain words (classes too small to judge, ...)
    baseline: dict = field(default_factory=dict)  # the --baseline row: layers, params, mean, std
    evaluations: dict = field(default_factory=dict)  # test file -> headline numbers of its last xfer evaluate

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


def sidecar_path(path: str | os.PathLike) -> Path | Url:
    """The card beside a model (local or a URL): its name with ``.json`` for its suffix."""
    return location(path).with_suffix(".json")


def markdown_path(path: str | os.PathLike) -> Path | Url:
    """The Markdown card beside a model (local or a URL): its name with ``.md`` for its suffix."""
    return location(path).with_suffix(".md")


def write_markdown(card: ModelCard, path: str | os.PathLike) -> Path | Url:
    """Render ``card`` as Markdown beside the model at ``path``, whole or not at all, through the output guard."""
    md = markdown_path(path)
    claim(md, what="the model's Markdown card", kind="card-md")  # never an input, nor a file xfer did not write
    atomic_write_text(md, render_model_card(json.loads(card.to_json()), location(path).name))
    return md


def save_model(model, card: ModelCard, path: str | os.PathLike, force: bool = False) -> Path | str:
    """Write ``model`` with skops, its card and its Markdown card (``MODEL.md``), each under a
    temporary name then renamed (in object storage: written locally, then uploaded, the cards last).

    A model fitted on another training file is not replaced without ``force``, and a card that
    would overwrite the model itself or a JSON file that is not a card is refused.
    """
    if is_url(path):
        url = str(path)
        with tempfile.TemporaryDirectory(dir=staging_dir()) as folder:
            local = Path(folder) / posixpath.basename(url)
            if sidecar_path(url).exists():  # the same checks against the card already there
                download(sidecar_path(url), sidecar_path(local))
            save_model(model, card, local, force)
            upload(local, url)
            upload(sidecar_path(local), sidecar_path(url))
            upload(markdown_path(local), markdown_path(url))
        return url
    sio = _skops_io()

    path = Path(path)
    side = sidecar_path(path)
    if side == path:
        raise FeaturizerError(f"{path}: the model's card would be written over the model; use another suffix (.skops)")

    claim(side, what="the model's card", kind="card")  # never an input, nor a JSON file that is no card
    claim(path, what="model", kind="model")  # never an input, nor a file xfer did not write
    claim(markdown_path(path), what="the model's Markdown card", kind="card-md")
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
    write_markdown(card, path)
    return path


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card beside the model at ``path``, checked field by field: anything else is refused in one line."""
    side = sidecar_path(path)
    if not side.is_file():
        raise UntrustedModelError(f"{path} has no card {side.name}: its feature spec is unknown, so it cannot be used")
    return _parse_card(side.read_bytes(), side)


def _parse_card(data: bytes, where) -> ModelCard:
    try:
        card = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise UntrustedModelError(f"{where} is not a featurizer model card: not JSON ({err})") from None
    problem = card_problem(card)
    if problem:
        raise UntrustedModelError(f"{where} is not a featurizer model card: {problem}")
    try:
        return ModelCard.from_json(json.dumps(card))
    except (ValueError, KeyError, TypeError) as err:
        raise UntrustedModelError(f"{where} is not a featurizer model card: {err}") from None


def _kind(value) -> str:
    """How JSON would name ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    names = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _objects(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number_or_null(value) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


# What each field of a card and of its feature spec must be: (test, what it must be). Required fields first.
CARD_FIELDS = {
    "spec": (lambda v: isinstance(v, dict), "an object (the feature spec)"),
    "classes": (_strings, "a list of class names (strings)"),
    "head": (lambda v: isinstance(v, str), "a string"),
    "params": (lambda v: isinstance(v, dict), "an object"),
    "cv": (_objects, "a list of objects"),
    "cv_score": (_number_or_null, "a number or null"),
    "versions": (lambda v: isinstance(v, dict), "an object"),
    "sha256": (lambda v: isinstance(v, str), "a string"),
    "format": (lambda v: isinstance(v, str), "a string"),
    "train": (lambda v: isinstance(v, str), "a string (a path)"),
    "calibration": (lambda v: isinstance(v, dict), "an object"),
    "adaptation": (lambda v: isinstance(v, dict), "an object"),
    "label_column": (lambda v: isinstance(v, str), "a string"),
    "tasks": (_objects, "a list of objects"),
    "memory": (lambda v: isinstance(v, dict), "an object"),
    "updates": (_objects, "a list of objects"),
    "mitigation": (lambda v: isinstance(v, dict), "an object"),
    "label_counts": (lambda v: isinstance(v, dict) and all(_count(n) for n in v.values()), "an object of counts"),
    "train_sha256": (lambda v: isinstance(v, str), "a string"),
    "limits": (_strings, "a list of strings"),
    "baseline": (lambda v: isinstance(v, dict), "an object"),
    "evaluations": (
        lambda v: isinstance(v, dict) and all(isinstance(e, dict) for e in v.values()),
        "an object of objects",
    ),
}
CARD_REQUIRED = ("spec", "classes", "head")
SPEC_FIELDS = {
    "model": (lambda v: isinstance(v, str) and v != "", "a model name (a string)"),
    "modality": (lambda v: v in ("image", "text"), "'image' or 'text'"),
    "weights": (lambda v: isinstance(v, str), "a string"),
    "weights_sha256": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "preprocessing": (lambda v: isinstance(v, dict), "an object"),
    "precision": (lambda v: isinstance(v, str), "a string"),
    "layers": (lambda v: _strings(v) and len(v) > 0, "a non-empty list of layer names (strings)"),
    "pooling": (_strings, "a list of poolings (strings), one per layer"),
    "runtime": (lambda v: isinstance(v, str), "a string"),
}
SPEC_REQUIRED = ("model", "modality", "weights", "weights_sha256", "preprocessing", "precision", "layers", "pooling")


def card_problem(data) -> str:
    """What is wrong with parsed card JSON, in a few words ("" if nothing): its shape, missing keys, wrong types."""
    if not isinstance(data, dict):
        return f"it holds {_kind(data)}, not an object"
    problem = _fields_problem(data, CARD_FIELDS, CARD_REQUIRED, "") or spec_problem(data["spec"], "spec.")
    if problem:
        return problem
    for i, task in enumerate(data.get("tasks", [])):
        bad = [key for key in ("name", "kind") if not isinstance(task.get(key), str)]
        if bad:
            return f"'tasks[{i}].{bad[0]}' must be a string, not {_kind(task.get(bad[0]))}"
    adaptation = data.get("adaptation") or {}
    bad = [key for key in ("method", "target") if adaptation and not isinstance(adaptation.get(key), str)]
    if bad:
        return f"'adaptation.{bad[0]}' must be a string, not {_kind(adaptation.get(bad[0]))}"
    return ""


def spec_problem(data, prefix: str = "") -> str:
    """What is wrong with parsed feature-spec JSON ("" if nothing)."""
    if not isinstance(data, dict):
        return f"{prefix.rstrip('.') or 'the spec'} holds {_kind(data)}, not an object"
    problem = _fields_problem(data, SPEC_FIELDS, SPEC_REQUIRED, prefix)
    if not problem and len(data["pooling"]) != len(data["layers"]):
        return f"{prefix}layers lists {len(data['layers'])} layer(s) but {prefix}pooling {len(data['pooling'])}"
    return problem


def _fields_problem(data: dict, expected: dict, required: tuple[str, ...], prefix: str) -> str:
    missing = [k for k in required if k not in data]
    if missing:
        return "it has no " + ", ".join(f"'{prefix}{k}'" for k in missing)
    for key, (test, what) in expected.items():
        if key in data and not test(data[key]):
            return f"'{prefix}{key}' must be {what}, not {_kind(data[key])}"
    return ""


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
            if sidecar_path(url).exists():
                download(sidecar_path(url), sidecar_path(local))
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
        magic = f.read(6)
    if magic.startswith(ZIP_MAGIC):
        return _load_skops(sio, path, card, trust), card
    if not magic.startswith(PICKLE_MAGICS):
        raise UntrustedModelError(
            f"{path} is not a model file: neither a skops file (a zip) nor a joblib pickle; it was not loaded"
        )
    if not trust:
        raise UntrustedModelError(
            f"{path} is a joblib pickle from an earlier version: loading it can run code, so it was not loaded. "
            "Fit it again to save it safely, or pass --trust if you made it yourself"
        )
    import joblib

    try:
        model = joblib.load(path)
    except Exception as err:  # not a pickle after all, or one of classes that are gone: one line
        raise UntrustedModelError(f"cannot load {path} as a joblib pickle: {_first_line(err)}") from None
    check_model(model, card, path)
    return model, card


# How joblib files begin: a pickle (protocol 2 and later), or one compressed by zlib, gzip, bz2, xz, lzma or lz4.
PICKLE_MAGICS = (b"\x80", b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _load_skops(sio, path: Path, card: ModelCard, trust: bool):
    try:
        unknown = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    except Exception as err:  # a zip without skops's schema, or a damaged one
        why = _first_line(err)
        raise UntrustedModelError(f"{path} is a zip but not a skops model file ({why}); it was not loaded") from None
    if unknown and not trust:
        raise UntrustedModelError(
            f"{path} holds types this tool does not load ({', '.join(unknown[:5])}); it was not loaded "
            "(pass --trust to load them anyway)"
        )
    try:
        model = sio.load(path, trusted=[*TRUSTED_TYPES, *unknown])
    except Exception as err:  # a damaged zip or a skops version mismatch: one line, not a traceback
        raise UntrustedModelError(f"cannot load {path}: {_first_line(err)}") from None
    check_model(model, card, path)
    return model


def _final_step(estimator):
    """The last estimator of nested pipelines (of the unmitigated head, for a fairness-mitigated one)."""
    while True:
        if isinstance(estimator, FairMixture):
            estimator = estimator.unmitigated_
        elif hasattr(estimator, "steps") and isinstance(estimator.steps, list) and estimator.steps:
            estimator = estimator.steps[-1][1]
        else:
            return estimator


def check_model(model, card: ModelCard, path) -> None:
    """Refuse, in one line, a loaded object that is not a model or does not belong with its card.

    Checked: it predicts; an end-to-end pipeline makes the features the card names; a multi-task
    card goes with a multi-task head and the other way round; the classes agree; and the layers the
    card names exist in its backbone with as many values, in all, as the model reads.
    """

    side = sidecar_path(path)
    if not callable(getattr(model, "predict", None)):
        raise UntrustedModelError(f"{path} is not a model: it holds {_what(model)}, which cannot predict")
    steps = getattr(model, "named_steps", None)
    inner = steps.get("features") if isinstance(steps, dict) else None
    inner_spec = getattr(inner, "spec_", None) or getattr(inner, "spec", None)
    if isinstance(inner_spec, FeatureSpec):
        diffs = card.spec.differences(inner_spec)
        if diffs:
            raise UntrustedModelError(
                f"{side} does not describe the features {path} was fitted on (card vs model): " + "; ".join(diffs)
            )
    maps = bool(card.adaptation) and card.adaptation.get("feature_map", True) is not False  # older cards: always
    if inner is not None and maps != ("adapt" in steps):
        says, holds = ("an adaptation map", "none") if maps else ("no adaptation map", "one")
        raise UntrustedModelError(f"{side} describes {says} but {path} holds {holds}: they do not belong together")
    head = head_of(model)
    multi = callable(getattr(_final_step(head), "predict_tasks", None))
    if bool(card.tasks) != multi:
        says, holds = ("several tasks", "one head") if card.tasks else ("one classifier", "several tasks")
        raise UntrustedModelError(f"{side} describes {says} but {path} holds {holds}: they do not belong together")
    if not multi:
        classes = getattr(head, "classes_", None)
        scores = any(callable(getattr(head, name, None)) for name in ("predict_proba", "decision_function"))
        if classes is None or not scores:
            raise UntrustedModelError(f"{path} is not a fitted classifier: it holds {_what(model)}")
        found = [str(c) for c in classes]
        if card.classes and list(card.classes) != found:  # in the model's order: probability columns follow it
            raise UntrustedModelError(
                f"{side} lists classes {_listed(card.classes)} but {path} predicts {_listed(found)}: "
                "they do not belong together"
            )
    width = getattr(head, "n_features_in_", None)
    dims = card_layer_dims(card.spec, side)
    if dims is not None and isinstance(width, int | np.integer) and sum(dims) != int(width):
        layers = " + ".join(f"{name} ({d})" for name, d in zip(card.spec.layers, dims))
        layers = f"{layers} = {sum(dims)} values" if len(dims) > 1 else f"{card.spec.layers[0]} ({dims[0]} values)"
        raise UntrustedModelError(
            f"{side} says the model reads {layers}, but {path} expects {int(width)} features: "
            "the card and the model do not belong together"
        )
    expected = HEADS[card.head].make() if card.head in HEADS and not multi else None
    if expected is not None and not isinstance(_final_step(head), type(expected)):
        raise UntrustedModelError(
            f"{side} says the head is {card.head} ({type(expected).__name__}) but {path} holds "
            f"{type(_final_step(head)).__name__}: they do not belong together"
        )


def card_layer_dims(spec: FeatureSpec, where) -> list[int] | None:
    """The length of each of ``spec``'s layers from the backbone's registry entry, without loading
    anything (None when the registry does not list them: zoo models); a layer the backbone does
    not have is refused, naming those it has."""

    try:
        config = get_config(spec.model, spec.modality)
    except (FeaturizerError, OSError, ValueError):
        return None  # an unknown model is named when its features are made or compared
    if not config.layers:
        return None
    known = {layer.name: layer.dim for layer in config.layers}
    missing = [name for name in spec.layers if name not in known]
    if missing:
        raise UntrustedModelError(
            f"{where} names layer {missing[0]!r}, which {spec.model} does not have "
            f"(it has {', '.join(known)}): the card is damaged or not this model's"
        )
    dims = [known[name] for name in spec.layers]
    return None if any(d is None for d in dims) else [int(d) for d in dims]


def _what(value) -> str:
    kind = type(value)
    return f"a {kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else f"a {kind.__name__}"


def _listed(classes) -> str:
    shown = ", ".join(map(repr, list(classes)[:5]))
    return f"[{shown}{', ...' if len(classes) > 5 else ''}]"


def head_of(model):
    """What an end-to-end pipeline does with features (the head, after the adaptation map if any);
    the model itself otherwise."""
    if isinstance(model, Pipeline) and "features" in model.named_steps:
        rest = model.steps[1:]
        return rest[0][1] if len(rest) == 1 else Pipeline(rest)
    return model
