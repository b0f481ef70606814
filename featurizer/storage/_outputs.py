"""What each command writes when it is not told where: one table, so a name is decided in one place.

``default_outputs(command, ...)`` answers for the commands that name their outputs after their
inputs; ``xfer featurize`` names its feature file after the input and the spec
(``featurizer.engine.default_feature_name``), since only the engine knows the spec. Paths and URLs
(``Url``) are answered alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from featurizer.base import FeaturizerError
from featurizer.storage._storage import join


def name_of(path: Any) -> str:
    """The name an input gives its outputs: its stem, or for ``.`` the folder's own name."""
    return path.stem or path.resolve().name


def _picture_beside(png: Any, kind: str) -> Any:
    """Another picture named after the confusion matrix's: MODEL.<kind>-<test>.png (or PNG.<kind>.png)."""
    other = png.with_name(png.name.replace(".confusion-", f".{kind}-", 1))
    return other if other != png else png.with_name(f"{png.stem}.{kind}.png")


def _audit(train: Any) -> dict[str, Any]:
    return {"output": train.with_name(f"{train.stem}-audit")}


def _evaluate(model: Any, test: Any, png: Any = None, by: bool = False) -> dict[str, Any]:
    name = name_of(test)
    png = png or model.with_name(f"{model.stem}.confusion-{name}.png")
    return {
        "output": model.with_name(f"{model.stem}.eval-{name}.json"),
        "png": png,
        "reliability": _picture_beside(png, "reliability"),
        "groups": _picture_beside(png, "groups") if by else None,
        "pr": _picture_beside(png, "pr"),
        "predictions": model.with_name(f"{model.stem}.predictions-{name}.csv"),
        "errors": model.with_name(f"{model.stem}.errors-{name}.csv"),
    }


def _export(features: Any, fmt: str) -> dict[str, Any]:
    if fmt == "parquet":
        return {"output": features.with_suffix(".parquet")}
    if fmt == "h5":  # a quantised copy beside the float file
        return {"output": features.with_name(f"{features.stem}-quantized.h5")}
    return {"output": features.with_name(f"{features.stem}-npy")}


def _fit(train: Any, head: str) -> dict[str, Any]:
    model = Path("models") / f"{train.stem}-{head}.skops"
    return {"output": model, "card": model.with_suffix(".json")}


def _merge(folder: Any) -> dict[str, Any]:
    return {"output": join(folder, "merged.h5")}


def _predict(data: Any) -> dict[str, Any]:
    return {"output": Path(f"{name_of(data)}-predictions.csv")}


def _shift(target: Any) -> dict[str, Any]:
    return {"png": target.with_name(f"{target.stem}.shift.png")}


def _suggest(data: Any) -> dict[str, Any]:
    return {"output": Path(f"{name_of(data)}-suggestions.csv")}


DEFAULT_OUTPUTS: dict[str, Callable[..., dict[str, Any]]] = {
    "audit": _audit,
    "evaluate": _evaluate,
    "export": _export,
    "fit": _fit,
    "merge": _merge,
    "predict": _predict,
    "shift": _shift,
    "suggest": _suggest,
}


def default_outputs(command: str, *inputs: Any, **choices: Any) -> dict[str, Any]:
    """Every file ``command`` writes, named as it names them when no output is given."""
    if command not in DEFAULT_OUTPUTS:
        raise FeaturizerError(f"{command!r} names no outputs of its own: one of {', '.join(DEFAULT_OUTPUTS)}")
    return DEFAULT_OUTPUTS[command](*inputs, **choices)
