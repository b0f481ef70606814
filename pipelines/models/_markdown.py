"""Model cards in Markdown: what a saved model is, how it was chosen and how it scored, for people.

Rendered from card data as JSON holds it (a saved model's ``MODEL.json``, a tuned backbone's
``report.json``), so a card can be rendered again at any time, for models saved before cards
existed too. Every string a user chose (class and group names, paths, column names) goes through
``md_escape``: a card never carries HTML, and a name never breaks a table.
"""

from __future__ import annotations

import math
import re

from featurizer.storage import CARD_MARKER

# What Markdown (or the HTML it becomes) could read as syntax in running text or a table cell:
# ``<``, ``>`` and ``&`` as entities (no tag, no entity of the user's), the rest behind a backslash
# (CommonMark's escapes: no code span, emphasis, link, strike-through, math or column break).
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SPECIAL = re.compile(r"[&<>\\`*_\[\]|~$]")
_BREAKS = re.compile(r"[\r\n\t\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x9f]")


def md_escape(value) -> str:
    """``value`` as text that Markdown shows as it is, on one line: no HTML, no table break, no code span."""
    text = _CONTROLS.sub("", _BREAKS.sub(" ", str(value)))
    return _SPECIAL.sub(lambda m: _ENTITIES.get(m.group(), "\\" + m.group()), text)


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return md_escape(value)
    if isinstance(value, int):
        return str(value)
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _mean_std(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "not scored"
    return f"{_number(mean)} ± {_number(std)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table; the cells are escaped already."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _value(value) -> str:
    """A parameter or setting, escaped: numbers as numbers, objects as key=value lists."""
    if isinstance(value, dict):
        return ", ".join(f"{md_escape(k)}={_value(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) or "–"
    if isinstance(value, float):
        return _number(value, 4)
    return md_escape(value)


def _bullets(data: dict) -> list[str]:
    return [f"- {md_escape(key)}: {_value(value)}" for key, value in data.items()]


def render_model_card(data: dict, name: str = "model") -> str:
    """The Markdown card of a saved model from its JSON card ``data`` (``ModelCard.to_json``)."""
    spec = data.get("spec") or {}
    lines = [CARD_MARKER, f"# Model card: {md_escape(name)}", ""]
    lines += _task(data)
    lines += ["## Features", ""]
    lines += _table(
        ["setting", "value"],
        [
            ["backbone", md_escape(spec.get("model", ""))],
            ["modality", md_escape(spec.get("modality", ""))],
            ["weights", md_escape(spec.get("weights", ""))],
            ["weights SHA-256", md_escape(spec.get("weights_sha256") or "–")],
            ["layers", _value(spec.get("layers", []))],
            ["pooling", _value(spec.get("pooling", []))],
            ["precision", md_escape(spec.get("precision", ""))],
            ["runtime", md_escape(spec.get("runtime", ""))],
            ["preprocessing", _value(spec.get("preprocessing", {}))],
        ],
    )
    lines += ["## Data", ""]
    lines += [f"- training file: {md_escape(data.get('train') or 'unknown')}"]
    lines += [f"- training file SHA-256: {md_escape(data.get('train_sha256') or 'not recorded')}"]
    if data.get("label_column"):
        lines += [f"- labels from column: {md_escape(data['label_column'])}"]
    lines += [f"- model file SHA-256: {md_escape(data.get('sha256') or 'not recorded')}", ""]
    lines += _head(data)
    lines += _calibration(data.get("calibration") or {})
    if data.get("adaptation"):
        lines += ["## Adaptation", "", *_bullets(data["adaptation"]), ""]
    if data.get("mitigation"):
        lines += ["## Fairness mitigation", "", *_bullets(data["mitigation"]), ""]
    lines += _tasks(data.get("tasks") or [])
    lines += _growth(data.get("memory") or {}, data.get("updates") or [])
    lines += _evaluations(data.get("evaluations") or {})
    lines += _limits(data)
    versions = data.get("versions") or {}
    if versions:
        lines += ["## Versions", "", *_bullets(versions), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _task(data: dict) -> list[str]:
    classes, counts = data.get("classes") or [], data.get("label_counts") or {}
    lines = ["## Task", ""]
    if data.get("tasks"):
        return [*lines, f"{len(data['tasks'])} tasks on the same features (see Tasks).", ""]
    total = f", {sum(counts.values())} labelled training items" if counts else ""
    lines += [f"Classification into {len(classes)} classes{total}.", ""]
    rows = [[md_escape(c), _number(counts[c]) if c in counts else "not recorded"] for c in classes]
    return lines + _table(["class", "training items"], rows)


def _head(data: dict) -> list[str]:
    params = {k: v for k, v in (data.get("params") or {}).items() if k not in ("descriptions", "templates")}
    lines = ["## Head", "", f"- head: {md_escape(data.get('head', ''))}", f"- parameters: {_value(params)}"]
    cv = data.get("cv") or []
    tried = [r for r in cv if r.get("tried", True) and r.get("mean") is not None]
    best = data.get("cv_score")
    if best is None or (isinstance(best, float) and math.isnan(best)):
        lines += ["- why: not chosen by cross-validation (fixed parameters, or too few items to score)", ""]
    else:
        kept = next((r for r in tried if r.get("mean") == best), None)
        layers = f" ({md_escape(kept['layers'])})" if kept else ""
        lines += [
            f"- why: the best mean cross-validated accuracy of {len(tried)} candidate(s){layers}: {_number(best)}",
            "",
        ]
    if cv:
        rows = []
        for r in cv:
            score = _mean_std(r.get("mean"), r.get("std")) if r.get("tried", True) else "screened out"
            logme = _number(r.get("logme")) if r.get("logme") is not None else "–"
            rows.append([md_escape(r.get("layers", "")), _value(r.get("params") or {}), score, logme])
        lines += ["Cross-validation (accuracy, mean ± std over folds):", ""]
        lines += _table(["layers", "parameters", "CV accuracy", "LogME"], rows)
    base = data.get("baseline") or {}
    if base:  # --baseline: the same head without transfer
        lines += [
            f"Baseline without transfer ({md_escape(base.get('layers', ''))}): "
            f"{_mean_std(base.get('mean'), base.get('std'))} in cross-validation.",
            "",
        ]
    return lines


def _growth(memory: dict, updates: list[dict]) -> list[str]:
    """The rehearsal memory kept for ``xfer update``, and each update that grew the model."""
    if not memory and not updates:
        return []
    lines = ["## Memory and updates", ""]
    if memory:
        lines += [
            f"- memory: {md_escape(memory.get('file', ''))}, {_value(memory.get('items'))} items, up to "
            f"{_value(memory.get('per_class'))} per class ({md_escape(memory.get('strategy', ''))})",
            f"- memory SHA-256: {md_escape(memory.get('sha256', ''))}",
            "",
        ]
    if updates:
        rows = [
            [
                md_escape(u.get("new_file", "")),
                _value(u.get("added_classes", [])),
                _value(u.get("new_items")),
                _number(u.get("old_before")),
                _number(u.get("old_after")),
                _number(u.get("new_accuracy")),
            ]
            for u in updates
        ]
        header = ["new file", "added classes", "new items", "old classes before", "after", "new classes"]
        lines += _table(header, rows)
    return lines


def _calibration(calibration: dict) -> list[str]:
    lines = ["## Calibration", ""]
    if not calibration:
        return [*lines, "No temperature scaling at fit time; `xfer evaluate` reports calibration on test data.", ""]
    return [*lines, *_bullets(calibration), ""]


def _tasks(tasks: list[dict]) -> list[str]:
    if not tasks:
        return []
    rows = [
        [
            md_escape(t.get("name", "")),
            md_escape(t.get("kind", "")),
            md_escape(t.get("head", "")),
            _value(t.get("scores") or {}),
            _number(t.get("n")),
        ]
        for t in tasks
    ]
    return ["## Tasks", "", *_table(["task", "kind", "head", "CV scores", "items"], rows)]


def _evaluations(evaluations: dict) -> list[str]:
    if not evaluations:
        return ["## Evaluations", "", "Not evaluated yet: `xfer evaluate MODEL TEST` adds its results here.", ""]
    lines = ["## Evaluations", ""]
    for test, found in evaluations.items():
        lines += [f"### {md_escape(test)}", ""]
        if "tasks" in found:
            rows = [
                [md_escape(n), _value({k: v for k, v in s.items() if k != "kind"})] for n, s in found["tasks"].items()
            ]
            lines += _table(["task", "scores"], rows)
            continue
        lines += [f"- items: {_number(found.get('n'))}"]
        lines += [f"- accuracy: {_number(found.get('accuracy'))}", f"- macro-F1: {_number(found.get('macro_f1'))}"]
        if found.get("calibration"):
            cal = found["calibration"]
            lines += [f"- calibration: ECE {_number(cal.get('ece'))}, Brier {_number(cal.get('brier'))}"]
        if found.get("without_adaptation") is not None:
            lines += [f"- accuracy without adaptation: {_number(found['without_adaptation'])}"]
        if found.get("shift"):
            lines += [f"- shift from the training data: {_value(found['shift'])}"]
        lines += [f"- model file SHA-256: {md_escape(found.get('model_sha256', ''))}", ""]
        by = found.get("by_group")
        if by:
            lines += [f"Per group ({md_escape(found.get('by', ''))}):", ""]
            rows = [
                [md_escape(g), _number(r.get("count")), _number(r.get("accuracy")), _number(r.get("macro_f1"))]
                for g, r in by.get("groups", {}).items()
            ]
            lines += _table(["group", "items", "accuracy", "macro-F1"], rows)
            lines += [
                f"Worst group: {md_escape(by.get('worst_group', ''))} ({_number(by.get('worst_group_accuracy'))}); "
                f"accuracy gap {_number(by.get('accuracy_gap'))}, macro-F1 gap {_number(by.get('macro_f1_gap'))}.",
                "",
            ]
    return lines


def _limits(data: dict) -> list[str]:
    limits = [md_escape(note) for note in data.get("limits") or []]
    for test, found in (data.get("evaluations") or {}).items():
        small = (found.get("by_group") or {}).get("small_groups") or []
        if small:
            shown = ", ".join(md_escape(g) for g in small[:5])
            limits.append(f"groups of a single item in {md_escape(test)} ({shown}): their accuracy says little")
    if not limits:
        limits = ["none recorded"]
    return ["## Known limits", "", *(f"- {note}" for note in limits), ""]


def render_tuned_card(report: dict) -> str:
    """The Markdown card of a fine-tuned backbone from its ``report.json`` (``TuneReport``)."""
    lines = [CARD_MARKER, f"# Fine-tuned backbone: {md_escape(report.get('output', ''))}", ""]
    lines += [
        f"- base model: {md_escape(report.get('base', ''))} ({md_escape(report.get('modality', ''))})",
        f"- training data SHA-256: {md_escape(report.get('data_sha256', ''))}",
        f"- items: {_number(report.get('items'))}, classes: {len(report.get('classes') or [])}",
        f"- classes: {', '.join(md_escape(c) for c in report.get('classes') or [])}",
        f"- device: {md_escape(report.get('device', ''))}, {_number(report.get('seconds'), 1)} s"
        + (f" of a {_number(report.get('budget_s'), 0)} s budget" if report.get("budget_s") else ""),
        "",
        "## Schedule kept, and why",
        "",
    ]
    chosen, probe = report.get("chosen", ""), report.get("probe_val_accuracy")
    if chosen == "frozen":
        why = f"no schedule beat the frozen backbone's probe on validation ({_number(probe)})"
    else:
        tuned = _number(report.get("best_val_accuracy"))
        why = f"best validation accuracy {tuned} against the frozen probe's {_number(probe)}"
    lines += [f"- kept: {md_escape(chosen or 'unknown')}: {why}"]
    lines += [f"- trainable parameters: {_number(report.get('trainable_parameters'))}", ""]
    trials = report.get("trials") or []
    if trials:
        rows = [
            [
                md_escape(t.get("schedule", "")),
                _number(t.get("best_val_accuracy")),
                _number(t.get("trainable_parameters")),
                _number(t.get("seconds"), 1),
                md_escape(t.get("stopped") or ""),
            ]
            for t in trials
        ]
        rows.insert(0, ["frozen (probe)", _number(probe), "0", "–", ""])
        lines += _table(["schedule", "validation accuracy", "trainable parameters", "seconds", "stopped"], rows)
    if report.get("schedule"):
        lines += ["## Schedule settings", "", *_bullets(report["schedule"]), ""]
    notes = [md_escape(n) for n in report.get("notes") or []]
    if report.get("interrupted"):
        notes.append("the run was interrupted: the best epoch so far was kept")
    lines += ["## Notes", "", *(f"- {n}" for n in notes or ["none"]), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
