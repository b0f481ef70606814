"""The group of each item: from a CSV of ``id,group`` or a column of the input table.

One rule for every command that takes groups: ``xfer evaluate --by`` (reported per group) and
``xfer fit --groups`` (fairness mitigation, where every training item must have one).
"""

from __future__ import annotations

import csv
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from featurizer import FeaturizerError, ReadOptions, read_inputs
from featurizer.cache import is_feature_file
from featurizer.inputs import id_value_columns

NO_GROUP = "(no group)"


def read_groups(
    by: str,
    data: str | os.PathLike,
    ids: list[str],
    modality: str,
    read: ReadOptions | None = None,
    option: str = "--by",
) -> tuple[np.ndarray, list[str]]:
    """The group of each item in ``ids`` and notes: from a CSV of id,group (``by`` names a file), or
    from column ``by`` of the input table ``data``. Items without a group are grouped as NO_GROUP;
    ``option`` names the option in messages."""

    data = Path(data)
    if Path(by).is_file():
        mapping = _mapping_file(Path(by), set(ids))
    elif data.is_dir() or is_feature_file(data):
        raise FeaturizerError(
            f"{option} {by}: {data} is a {'folder' if data.is_dir() else 'feature file'}, which has no columns; "
            "give a CSV file of id,group instead"
        )
    else:
        table = read_inputs(data, modality, replace(read or ReadOptions(), label_column=by, labels=None))
        mapping = dict(zip(table.ids, table.labels or [""] * len(table.ids)))
    groups = np.asarray([mapping.get(i, "") or NO_GROUP for i in ids], dtype=object).astype(str)
    notes = []
    missing = int((groups == NO_GROUP).sum())
    if missing == len(groups):
        raise FeaturizerError(f"{option} {by}: no item has a group (are the ids those of {data}?)")
    if missing:
        notes.append(f"{missing} items have no group: they are reported as {NO_GROUP!r}")
    return groups, notes


def check_covered(groups: np.ndarray, ids: list[str], by: str, data, option: str = "--groups") -> None:
    """Refuse, in one line, groups that leave some items of ``data`` without one."""
    missing = np.flatnonzero(np.asarray(groups) == NO_GROUP)
    if len(missing):
        raise FeaturizerError(
            f"{option} {by} does not cover the items: {len(missing)} of the {len(ids)} items of {data} have no "
            f"group (e.g. {ids[missing[0]]!r}); give every item one"
        )


def _mapping_file(path: Path, ids: set[str]) -> dict[str, str]:

    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if row]
    id_col, group_col, data = id_value_columns(rows, "group", ids, path)
    return {row[id_col]: row[group_col].strip() for row in data}
