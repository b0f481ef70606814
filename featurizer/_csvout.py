"""CSV files people open in spreadsheets: written whole (atomically), with formula cells escaped.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run as a
formula by Excel, LibreOffice or Google Sheets (CSV injection); such cells get a leading ``'``, the
OWASP rule. Ids come from file names and labels from user data, so any of them can start so.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from featurizer._atomic import atomic_path
from featurizer._guard import claim
from featurizer._storage import is_url

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# The headers xfer's CSVs begin with: how the output guard (featurizer._guard) knows a CSV is one
# xfer wrote, and may be replaced. ``write_csv`` refuses a header that is not recognised here, so a
# new kind of CSV belongs in this table (tests/test_guard.py checks the writers' headers).
XFER_HEADERS = (
    ("id", "reason"),  # the items that failed (featurize)
    ("id", "source", "label", "predicted", "correct", "confidence", "p_label"),  # evaluate
    ("rank", "id", "source", "predicted", "confidence", "score"),  # suggest
    ("cluster", "id", "source", "label", "similarity"),  # audit: near-duplicates
    ("rank", "id", "source", "label", "distance", "z"),  # audit: outliers
    ("test_id", "test_source", "train_id", "train_source", "similarity"),  # audit: leaks
    ("rank", "id", "source", "given", "suggested", "label_quality"),  # audit: label issues
    ("class", "items", "share", "oof_accuracy", "looks_like", "looks_like_items"),  # audit: classes
)


def spreadsheet_safe(cell):
    """``cell`` as a spreadsheet shows it without running it: text starting like a formula gets a ``'``."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def is_xfer_header(header: Sequence[str]) -> bool:
    """Whether a CSV's first row is one xfer writes: a header of ``XFER_HEADERS``, predictions
    (``id, label, p_<class>...``) or a multi-task model's predictions (``id``, then per task its
    column and probabilities; a task's probability column ends in ``_p`` or holds ``_p_``)."""
    cells = tuple(header)
    if any(cells[: len(known)] == known for known in XFER_HEADERS):
        return True
    if cells[:2] == ("id", "label") and len(cells) > 2 and all(c.startswith("p_") for c in cells[2:]):
        return True
    return len(cells) > 2 and cells[0] == "id" and any(c.endswith("_p") or "_p_" in c for c in cells[1:])


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> Path | str:
    """Write a CSV atomically (a local path or a URL), every text cell made spreadsheet-safe.
    A header that ``is_xfer_header`` does not recognise makes a file that is never replaced later."""
    path = path if is_url(path) else Path(path)
    claim(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([spreadsheet_safe(h) for h in header])
        writer.writerows([spreadsheet_safe(c) for c in row] for row in rows)
    return path
