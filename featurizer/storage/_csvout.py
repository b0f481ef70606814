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

from featurizer.storage._atomic import atomic_path
from featurizer.storage._guard import claim
from featurizer.storage._storage import location

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell):
    """``cell`` as a spreadsheet shows it without running it: text starting like a formula gets a ``'``."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> Path | str:
    """Write a CSV atomically (a local path or a URL), every text cell made spreadsheet-safe.
    A header that ``is_xfer_header`` does not recognise makes a file that is never replaced later."""
    path = location(path)
    claim(path, kind="table")
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([spreadsheet_safe(h) for h in header])
        writer.writerows([spreadsheet_safe(c) for c in row] for row in rows)
    return path
