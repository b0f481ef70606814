"""A label column read as a learning target: classes, label sets (multi-label) or numbers (regression).

The kind of a column is decided here, once, from its cells (``read_target``), and kept in the
model card so that evaluation reads test cells the same way:

- **multilabel** when a cell is a JSON list (``["sports", "politics"]``) or labels joined by ``|``
  (``sports|politics``); ``[]`` is an item with no label from the set, a blank cell an item
  without a label for this task;
- **regression** when every labelled cell is a number and one at least is not a whole number
  (whole numbers alone are classes: digits, star ratings, 0/1 flags; ``--label-kind age=regression``);
- **classes** otherwise.

Refused, with the cell named: a cell that reads as labels joined by a separator other than ``|``
(``;`` anywhere, or ``,`` / ``/`` between labels that are whole labels of other cells), a column of
numbers with text in some cells, a JSON list that does not parse or holds lists or objects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featurizer import FeaturizerError

CLASSES, MULTILABEL, REGRESSION = "classes", "multilabel", "regression"
KINDS = (CLASSES, MULTILABEL, REGRESSION)
SEPARATOR = "|"
# Separators people use for label sets that this tool does not split on: ';' is never inside a class
# name, ',' and '/' can be ("Sci/Tech"), so they count only between labels that stand alone elsewhere.
ALWAYS_A_LIST = (";",)
SOMETIMES_A_LIST = (",", "/")
MOSTLY_NUMBERS = 0.5  # share of numeric cells above which text cells in a column of fractions are taken for typos


@dataclass(frozen=True)
class Target:
    """One task's labels for every item: ``cells`` as read ("" where the item has none for this task)."""

    name: str
    kind: str
    cells: tuple[str, ...]
    classes: tuple[str, ...] = ()  # classes and multilabel: every label, sorted

    @property
    def known(self) -> np.ndarray:
        """Which items have a label for this task."""
        return np.array([cell != "" for cell in self.cells], dtype=bool)

    def y(self) -> np.ndarray:
        """The labels of the ``known`` items as a head learns them: class names, numbers, or a 0/1
        matrix with one column per class of ``classes``."""
        cells = [cell for cell in self.cells if cell != ""]
        if self.kind == REGRESSION:
            return np.array([float(cell) for cell in cells], dtype=np.float64)
        if self.kind == MULTILABEL:
            column = {c: i for i, c in enumerate(self.classes)}
            Y = np.zeros((len(cells), len(self.classes)), dtype=np.int8)
            for row, cell in enumerate(cells):
                for label in label_set(cell, self.name):
                    if label in column:  # a test label the model never saw has no column
                        Y[row, column[label]] = 1
            return Y
        return np.asarray(cells, dtype=object).astype(str)


def read_target(
    name: str, cells: Sequence[str], ids: Sequence[str], kind: str | None = None
) -> tuple[Target, list[str]]:
    """The target of column ``name`` and plain-words notes on how it was read; ``kind`` overrides
    the kind read from the cells. Bad cells raise ``FeaturizerError`` naming the item."""
    if kind is not None and kind not in KINDS:
        raise FeaturizerError(f"unknown kind {kind!r} for column {name!r}; choose {', '.join(KINDS)}")
    cells = tuple(cells)
    if not cells:
        raise FeaturizerError(
            f"no items to read column {name!r} from: the feature file holds none (where every input failed, "
            "its .errors.csv says why)"
        )
    labelled = [(i, cell) for i, cell in zip(ids, cells) if cell != ""]
    if not labelled:
        raise FeaturizerError(f"column {name!r} is blank in every row: no labels to learn from")
    kind = kind or _kind_of(name, labelled)
    notes = []
    if kind == REGRESSION:
        _check_numbers(name, labelled)
        return Target(name, kind, cells), notes
    if kind == MULTILABEL:
        sets = {i: label_set(cell, name, i) for i, cell in labelled}
        classes = sorted({label for labels in sets.values() for label in labels})
        _check_separators(name, [(i, label) for i, labels in sets.items() for label in labels], set(classes))
        if not classes:
            raise FeaturizerError(f"column {name!r}: every label set is empty")
        cells = tuple("" if cell == "" else _canonical(label_set(cell, name)) for cell in cells)
        return Target(name, kind, cells, tuple(classes)), notes
    classes = sorted({cell for _, cell in labelled})
    _check_separators(name, labelled, set(classes))
    whole = [c for c in classes if _number(c) is not None]
    if len(whole) == len(classes) and len(classes) > 20:
        notes.append(
            f"column {name!r} holds {len(classes)} distinct whole numbers: fitted as classes "
            f"(--label-kind {name}=regression to fit a number)"
        )
    return Target(name, CLASSES, cells, tuple(classes)), notes


def label_set(cell: str, column: str, item: str = "") -> tuple[str, ...]:
    """The labels of a multi-label cell: a JSON list, or labels joined by ``|``; sorted, without repeats."""
    text = cell.strip()
    where = f"column {column!r}" + (f", item {item!r}" if item else "")
    if text.startswith("["):
        try:
            found = json.loads(text)
        except json.JSONDecodeError:
            raise FeaturizerError(f"{where}: {cell[:60]!r} starts like a JSON list but is not one") from None
        if not isinstance(found, list) or any(isinstance(x, list | dict) or x is None for x in found):
            raise FeaturizerError(f"{where}: {cell[:60]!r}: a label set is a JSON list of names or numbers")
        labels = [str(x).strip() for x in found]
    else:
        labels = [part.strip() for part in text.split(SEPARATOR)]
    return tuple(sorted({label for label in labels if label}))


def join_labels(labels: Sequence[str]) -> str:
    """A label set as a predicted cell: names joined by ``|`` (empty for no label)."""
    return SEPARATOR.join(labels)


def _canonical(labels: tuple[str, ...]) -> str:
    return json.dumps(list(labels))


def _kind_of(name: str, labelled: list[tuple[str, str]]) -> str:
    if any(cell.lstrip().startswith("[") or SEPARATOR in cell for _, cell in labelled):
        return MULTILABEL
    numbers = [_number(cell) for _, cell in labelled]
    share = sum(x is not None for x in numbers) / len(numbers)
    fractional = any(x is not None and not float(x).is_integer() for x in numbers if x is not None and math.isfinite(x))
    if share == 1.0 and fractional:
        return REGRESSION
    if share >= MOSTLY_NUMBERS and fractional:
        _check_numbers(name, labelled)  # raises, naming the text cells
    return CLASSES


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _check_numbers(name: str, labelled: list[tuple[str, str]]) -> None:
    text = [(i, cell) for i, cell in labelled if _number(cell) is None]
    if text:
        shown = ", ".join(f"{i!r}: {cell[:30]!r}" for i, cell in text[:3]) + (" ..." if len(text) > 3 else "")
        raise FeaturizerError(
            f"column {name!r} holds numbers, but {len(text)} of its cells are text ({shown}): correct them, or "
            f"blank them for items without a value (or --label-kind {name}=classes to treat every cell as a class)"
        )
    bad = [(i, cell) for i, cell in labelled if not math.isfinite(float(cell))]
    if bad:
        raise FeaturizerError(
            f"column {name!r}: {len(bad)} cells are not finite numbers ({', '.join(repr(c) for _, c in bad[:3])}); "
            "a regression target must be finite"
        )


def _check_separators(name: str, labels: list[tuple[str, str]], known: set[str]) -> None:
    """Refuse a label that reads as several labels joined by a separator this tool does not split on."""
    for item, label in labels:
        for sep in (*ALWAYS_A_LIST, *SOMETIMES_A_LIST):
            if sep not in label:
                continue
            pieces = [p.strip() for p in label.split(sep) if p.strip()]
            if len(pieces) > 1 and (sep in ALWAYS_A_LIST or any(p in known and p != label for p in pieces)):
                raise FeaturizerError(
                    f"column {name!r}, item {item!r}: {label[:60]!r} looks like several labels joined by {sep!r}; "
                    f"join the labels of a cell with {SEPARATOR!r} (sports|politics) or write a JSON list"
                )
