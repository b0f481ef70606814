"""Self-contained HTML reports: a map of the embeddings, galleries of items, tables; one file, no network.

A report is data (``Report``: items, a map, galleries, tables) rendered by one Jinja2 template with
autoescaping (``templates/report.html.j2``): the title, summary and tables are escaped text, the
rest goes into the page as JSON (``script_json``) and a short script (``templates/report.js``,
the only one the page's Content-Security-Policy lets run) draws the map (SVG, one circle per sampled item,
coloured by label, suspicious items ringed), shows an item when its point or card is clicked, and
pages through the galleries. Images are embedded as small JPEG thumbnails, texts as text, so the
file opens anywhere, offline. Large inputs stay usable: the map shows at most ``MAP_POINTS``
items (a seeded sample that keeps every marked item it can), a gallery shows ``PAGE`` cards a page
and holds at most ``GALLERY_CARDS``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from markupsafe import Markup

from featurizer import FeaturizerError
from featurizer.inputs import load_image
from featurizer.storage import atomic_write_text

MAP_METHODS = ("auto", "umap", "tsne", "pca")  # auto: UMAP where umap-learn is installed, else PCA
MAP_POINTS = 2000
PAGE = 48
GALLERY_CARDS = 480
THUMB = 96  # pixels, longer side
TEXT_CHARS = 280
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#ad494a", "#8ca252", "#bd9e39", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
]  # fmt: skip


@dataclass
class Report:
    """What a report shows. ``items`` are (id, label, source) triples; galleries and the map refer to
    items by position in that list."""

    title: str
    modality: str
    items: list[tuple[str, str, str]]
    summary: dict[str, object] = field(default_factory=dict)
    map_rows: list[int] = field(default_factory=list)
    map_xy: np.ndarray | None = None
    map_method: str = ""
    marks: dict[int, str] = field(default_factory=dict)  # item -> why it is ringed on the map
    galleries: list[dict] = field(default_factory=list)  # {"title", "note", "cards": [(item, caption)]}
    tables: list[dict] = field(default_factory=list)  # {"title", "header", "rows", "heat": bool}
    map_of: int | None = None  # items the map samples from (default: all of ``items``)


def check_report_path(path: str | os.PathLike) -> Path:
    """The report's path, refused in one line before any work when its folder does not exist."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FeaturizerError(f"cannot write the report {path}: the folder {path.parent} does not exist")
    return path


def map_sample(n: int, marked: list[int], limit: int = MAP_POINTS, seed: int = 0) -> list[int]:
    """Rows to draw on the map: all of them up to ``limit``, else the marked ones first and a seeded
    sample of the others."""
    if n <= limit:
        return list(range(n))
    rng = np.random.default_rng(seed)
    keep = list(dict.fromkeys(marked))[:limit]
    others = np.setdiff1d(np.arange(n), keep)
    keep += rng.choice(others, size=limit - len(keep), replace=False).tolist()
    return sorted(keep)


def embedding_map(X: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of the rows of ``X``: UMAP (cosine) when umap-learn is installed and
    ``method`` is auto or umap, else PCA; ``tsne`` is scikit-learn's t-SNE. Returns (xy, method)."""
    if len(X) < 3:
        return np.zeros((len(X), 2)), "none"
    if method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if method == "umap":
                raise FeaturizerError("--map umap needs umap-learn: pip install 'featurizer[audit]'") from None
            method = "pca"
        else:
            if sys.stderr.isatty():  # the first UMAP of a process compiles for ~15 s (numba): say why it waits
                print(f"drawing the map of {len(X)} items with UMAP ...", file=sys.stderr, flush=True)
            neighbours = max(2, min(15, len(X) - 1))
            reducer = umap.UMAP(n_neighbors=neighbours, metric="cosine", random_state=seed, n_jobs=1)
            return reducer.fit_transform(X), "UMAP"
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(X) - 1) / 3)))
        return TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(X), "t-SNE"
    if method != "pca":
        raise FeaturizerError(f"unknown map method {method!r}; choose {', '.join(MAP_METHODS)}")
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(X), "PCA"


def thumbnail(path: str, size: int = THUMB) -> str | None:
    """A small JPEG of the image at ``path`` as a data URI; None when it cannot be read."""
    from PIL import Image

    try:
        image = load_image(path, draft_short_side=size)
    except Exception:  # a report never fails on one unreadable image: the card says so
        return None
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _payload(report: Report) -> dict:
    from tqdm.auto import tqdm

    used = set(report.map_rows) | {i for g in report.galleries for i, _ in g["cards"]}
    labels = sorted({report.items[i][1] for i in used})
    colour = {label: PALETTE[k % len(PALETTE)] for k, label in enumerate(labels)}
    items = {}
    for i in tqdm(sorted(used), desc="report", unit="item", delay=2.0, leave=False):
        item_id, label, source = report.items[i]
        entry = {"id": item_id, "label": label, "colour": colour.get(label, "#999")}
        if report.modality == "image":
            entry["thumb"] = thumbnail(source)
            entry["path"] = source
        else:
            entry["text"] = source[:TEXT_CHARS] + ("..." if len(source) > TEXT_CHARS else "")
        if i in report.marks:
            entry["mark"] = report.marks[i]
        items[str(i)] = entry
    xy = report.map_xy
    points = []
    if xy is not None and len(report.map_rows):
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        scaled = (xy - lo) / np.where(hi > lo, hi - lo, 1.0)
        points = [[int(i), round(float(x), 4), round(float(y), 4)] for i, (x, y) in zip(report.map_rows, scaled)]
        points.sort(key=lambda p: p[0] in report.marks)  # marked items drawn last, on top, where a click finds them
    galleries = [
        {"title": g["title"], "note": g.get("note", ""), "cards": [[int(i), c] for i, c in g["cards"][:GALLERY_CARDS]],
         "total": len(g["cards"])}
        for g in report.galleries
    ]  # fmt: skip
    on_map = {report.items[i][1] for i in report.map_rows}
    legend = [[label, colour[label]] for label in labels if label in on_map]
    return {"items": items, "points": points, "galleries": galleries, "legend": legend, "page": PAGE}


TEMPLATES = Path(__file__).with_name("templates")
# What the page may do: run its one inline script (by hash, so no injected script or inline event
# handler runs), show data: images, use inline styles; fetch nothing, submit nothing.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{script}'; "
    "base-uri 'none'; form-action 'none'"
)
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(data) -> Markup:
    """``data`` as JSON that is inert inside ``<script type="application/json">``: ``<``, ``>``, ``&``,
    U+2028 and U+2029 written as ``\\uXXXX`` escapes, so no text in it can end the script, open a
    comment or a nested script, or break a JavaScript string; ``JSON.parse`` restores them."""
    text = json.dumps(data, separators=(",", ":"))
    return Markup(text.translate(str.maketrans(_JSON_ESCAPES)))  # no < > & left to escape


def script_hash(script: str) -> str:
    """The CSP source that allows exactly the inline script ``script``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


@functools.cache
def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )


def _cells(table: dict) -> list[list[dict]]:
    """A table's rows as cells of text (floats to 3 decimals) and, in a heat map, a background
    strength in [0, 1] (None elsewhere)."""
    rows = []
    for row in table["rows"]:
        cells = []
        for k, cell in enumerate(row):
            heat = None
            if table.get("heat") and k > 0 and isinstance(cell, float) and cell == cell:
                heat = min(max(cell, 0.0), 1.0)
            cells.append({"text": f"{cell:.3f}" if isinstance(cell, float) else str(cell), "heat": heat})
        rows.append(cells)
    return rows


def render_report(report: Report) -> str:
    """The HTML page of ``report``."""
    script = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    if "</script" in script.lower() or "<!--" in script:
        raise AssertionError("report.js must not contain '</script' or '<!--'")  # it is inlined as is
    method = f"{report.map_method} of the embeddings" if report.map_method else "no map"
    tables = [
        {"title": str(t["title"]), "note": str(t.get("note") or ""), "header": [str(h) for h in t["header"]],
         "rows": _cells(t)}
        for t in report.tables
    ]  # fmt: skip
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=report.title,
        csp=CSP.format(script=script_hash(script)),
        summary=[(str(k), str(v)) for k, v in report.summary.items()],
        method=method,
        shown=len(report.map_rows),
        total=len(report.items) if report.map_of is None else report.map_of,
        tables=tables,
        data=script_json(_payload(report)),
        script=Markup(script),  # a file of this package, not data
    )


def write_report(report: Report, path: str | os.PathLike) -> Path:
    """Render ``report`` into one self-contained HTML file at ``path`` (written atomically)."""

    path = check_report_path(path)
    atomic_write_text(path, render_report(report))
    return path
