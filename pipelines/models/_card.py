"""A saved model's card as people read it: shown by ``xfer card``, and extended by each ``xfer evaluate``.

Each evaluation's headline numbers (exactly those ``evaluate`` returned) are stored in the JSON
card under ``evaluations``, keyed by the test data, and ``MODEL.md`` is rendered again. The JSON
card is not covered by the model's SHA-256, so updating it leaves the model loadable; the card
stays checked field by field (``card_problem``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from featurizer import FeaturizerError
from featurizer.storage import amending, atomic_write_text, claim, file_sha256, is_url, location
from pipelines.models._markdown import render_model_card, render_tuned_card
from pipelines.models._saved import (
    UntrustedModelError,
    card_problem,
    markdown_path,
    read_card,
    sidecar_path,
    write_markdown,
)

TUNED_REPORT = "report.json"  # what a fine-tuned backbone folder records (pipelines.finetune)
TUNED_CARD = "card.md"


def card_text(path: str | os.PathLike) -> str:
    """The Markdown card of a saved model (rendered fresh from its JSON card) or of a fine-tuned
    backbone folder (from its ``report.json``); anything else is refused in one line."""
    place = location(path)
    if not is_url(path) and Path(path).is_dir():
        report = Path(path) / TUNED_REPORT
        if not report.is_file():
            raise FeaturizerError(f"{path} is a folder but not a fine-tuned backbone: it has no {TUNED_REPORT}")
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise FeaturizerError(f"{report} is not a fine-tuning report: {err}") from None
        if not isinstance(data, dict) or "base" not in data:
            raise FeaturizerError(f"{report} is not a fine-tuning report: it names no base model")
        return render_tuned_card(data)
    if not sidecar_path(place).is_file():
        raise FeaturizerError(
            f"{path} is not a saved model: it has no card {sidecar_path(place).name} beside it "
            "(give a model from xfer fit, or a folder from xfer finetune)"
        )
    card = read_card(place)
    return render_model_card(json.loads(card.to_json()), place.name)


def evaluation_entry(report: dict, by: str | None = None) -> dict:
    """The headline numbers of an evaluation report, as they are (no rounding): items, accuracy,
    macro-F1, calibration, per-group metrics with ``by``, shift when measured; per task for a
    multi-task model."""
    entry = {"model_sha256": report.get("model_sha256", ""), "tta_views": report.get("tta_views", 0)}
    if "tasks" in report:
        scalars = (int, float, str, type(None))
        tasks = {name: {k: v for k, v in s.items() if isinstance(v, scalars)} for name, s in report["tasks"].items()}
        return {**entry, "tasks": tasks}
    entry.update({key: report[key] for key in ("n", "accuracy", "macro_f1")})
    for key in ("calibration", "without_adaptation", "shift"):
        if report.get(key) is not None:
            entry[key] = report[key]
    if "by_group" in report:
        found = report["by_group"]
        groups = {g: {k: row[k] for k in ("count", "accuracy", "macro_f1")} for g, row in found["groups"].items()}
        keys = ("worst_group", "worst_group_accuracy", "accuracy_gap", "macro_f1_gap", "small_groups")
        entry["by"] = str(by or "")
        entry["by_group"] = {"groups": groups, **{k: found[k] for k in keys if k in found}}
    return entry


def record_evaluation(model_path: str | os.PathLike, report: dict, by: str | None = None) -> Path | None:
    """Store ``report``'s headline numbers in the model's JSON card (a new evaluation of the same
    test data replaces its entry) and render ``MODEL.md`` again; the Markdown card's path.

    Skipped, returning None, where the card cannot or should not change: a model given by URL, a
    folder that cannot be written, a model file changed since it was saved (loaded with --trust),
    or a ``MODEL.md`` beside it that xfer did not write."""
    if is_url(model_path) or not report.get("test"):
        return None
    path = Path(model_path)
    side = sidecar_path(path)
    if not side.is_file() or not os.access(side.parent, os.W_OK):
        return None
    try:
        card = read_card(path)
    except UntrustedModelError:
        return None
    if not card.sha256 or file_sha256(path) != card.sha256:
        return None
    card.evaluations = {**card.evaluations, str(report["test"]): evaluation_entry(report, by)}
    data = json.loads(card.to_json())
    if card_problem(data):  # never write a card that would not load
        return None
    try:
        claim(markdown_path(path), what="the model's Markdown card", kind="card-md")  # before the JSON card changes
        with amending(side):  # the card is an input of evaluate; it alone may be rewritten
            atomic_write_text(side, card.to_json())
        return write_markdown(card, path)
    except (FeaturizerError, PermissionError):
        return None
