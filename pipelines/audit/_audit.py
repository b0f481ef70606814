"""Auditing a feature file: near-duplicates, train/test leakage, likely label errors, outliers, classes.

Everything works on the cached vectors (every layer of the file, or those ``--layer`` names, each
scaled to unit length, then joined), so an audit of thousands of items takes seconds:

- **near-duplicates**: pairs whose cosine similarity reaches ``threshold`` (FAISS range search on
  unit vectors; by default a threshold read from the data, ``auto_threshold``), grouped into star
  clusters around a reference item; texts that are the same after normalising case, spaces and
  punctuation count whatever their similarity;
- **leaks**: test items whose nearest training item reaches ``threshold`` (or the same normalised text);
- **label issues**: confident learning (cleanlab's ``find_label_issues``, ``filter_by="both"``: an
  item is a suspect when both of cleanlab's pruning rules name it) on out-of-fold class
  probabilities of logistic regression (``OOF_FOLDS`` folds, C chosen by cross-validation as
  ``xfer fit`` does), ranked by the label's self-confidence, lowest first. These choices were
  compared on ``benchmarks/audit.py`` (one layer against all, 5 folds against 10, cleanlab's
  filters): see BENCHMARKS.md;
- **outliers**: cosine distance to the ``k``-th nearest neighbour, overall and within the item's
  class, flagged when its robust z-score (median and MAD) exceeds ``OUTLIER_Z``;
- **classes**: items per class and, from the out-of-fold predictions, the other class each looks like.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, FeaturizerError
from featurizer.spec import check_compatible
from featurizer.storage import atomic_output, claim, default_outputs, guarding, write_csv
from pipelines.fit import choose_layers, cross_validate, read_xy
from pipelines.heads import make_head, quiet_small_classes, unit_rows
from pipelines.report import Report, check_report_path, embedding_map, map_sample, write_report

AUTO_THRESHOLD_RANGE = (0.90, 0.995)  # cosine similarity; benchmarks/audit.py measures what fixed ones find
AUTO_THRESHOLD_SHARE = 0.75
NEIGHBOURS = 5
OOF_FOLDS = 10
OUTLIER_Z = 3.5  # robust z-score (Iglewicz and Hoaglin's cut-off for modified z-scores)


@dataclass
class Audit:
    """What an audit found; each list is what its CSV holds, worst or closest first."""

    ids: list[str]
    sources: list[str] | None
    labels: np.ndarray | None  # "" for items without a label
    X: np.ndarray  # the unit vectors audited
    threshold: float
    duplicates: list[dict] = field(default_factory=list)
    leaks: list[dict] = field(default_factory=list)
    label_issues: list[dict] | None = None  # None: not searched (no labels, or one class)
    outliers: list[dict] = field(default_factory=list)
    classes: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    oof_proba: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    test: dict | None = None  # ids, sources and vectors of the test file, when one was given
    modality: str = "image"

    def summary(self) -> dict[str, int]:
        return {
            "items": len(self.ids),
            "duplicate clusters": len({d["cluster"] for d in self.duplicates}),
            "items in duplicate clusters": len(self.duplicates),
            "test items leaked from train": len(self.leaks),
            "likely label errors": -1 if self.label_issues is None else len(self.label_issues),
            "outliers": sum(1 for o in self.outliers if o["flagged"]),
        }


def audit_vectors(features: FeatureFile, layer=None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The unit vectors an audit compares: each of the chosen layers (default: all) scaled to unit length, joined."""

    layers = tuple(features.layers) if layer is None else choose_layers(features.layers, layer)
    if layers == "auto":
        raise FeaturizerError("audit compares items on given layers; name them, not 'auto'")
    parts = [unit_rows(read_xy(features, (name,))[0]) for name in layers]
    return unit_rows(np.hstack(parts)).astype(np.float32), layers


def audit(
    train: str | os.PathLike,
    test: str | os.PathLike | None = None,
    *,
    layer=None,
    threshold: float | None = None,
    neighbours: int = NEIGHBOURS,
    seed: int = 0,
) -> Audit:
    """Audit the feature file ``train`` (and leakage into ``test``, a feature file of the same spec);
    ``threshold`` None reads it from the data (``auto_threshold``)."""
    if threshold is not None and not 0 < threshold <= 1:
        raise FeaturizerError(f"--threshold is a cosine similarity in (0, 1], not {threshold}")
    with FeatureFile(train) as features:
        X, layers = audit_vectors(features, layer)
        ids, sources, labels = features.ids, features.sources, features.labels
        spec = features.spec.select(layers)
        modality = spec.modality
    if not len(ids):
        raise FeaturizerError(f"{train} holds no items to audit")
    y = None if labels is None else np.asarray(labels, dtype=object).astype(str)
    threshold = auto_threshold(X) if threshold is None else threshold
    found = Audit(ids, sources, y, X, threshold, modality=modality)
    texts = sources if modality == "text" else None
    found.duplicates = duplicate_clusters(X, threshold, texts)
    if test is not None:
        with FeatureFile(test) as t:
            check_compatible(spec, t.spec, str(test), f"the features of {Path(train).name}")
            Xt, _ = audit_vectors(t, layers)
            found.test = {"ids": t.ids, "sources": t.sources, "X": Xt}
        found.leaks = leaks(X, Xt, threshold, texts, found.test["sources"] if texts else None)
    found.outliers = outliers(X, y, neighbours)
    known = y is not None and len(set(y) - {""}) >= 2
    if not known:
        found.notes.append(
            "no labels (or a single class): label issues were not searched; duplicates and outliers were"
        )
        return found
    found.oof_proba, found.class_names = out_of_fold_proba(X[y != ""], y[y != ""], seed)
    found.label_issues = label_issues(found, y)
    found.classes = class_table(y, found.oof_proba, found.class_names)
    return found


def auto_threshold(X: np.ndarray) -> float:
    """The similarity from which two items count as near-duplicates in this data: three quarters of
    the way from the median similarity of items to their nearest neighbour up to identity (1.0),
    within ``AUTO_THRESHOLD_RANGE``. A fixed cut does not fit every space: the demo's upscaled 8x8
    digits sit far closer to their neighbours than photos of flowers or questions do, so a cut
    that finds re-encoded photos would call every digit a duplicate."""
    nearest = 1.0 - knn_distance(X, 1)
    nearest = nearest[np.isfinite(nearest)]
    if not len(nearest):
        return AUTO_THRESHOLD_RANGE[1]
    median = float(np.median(nearest))
    return float(np.clip(median + AUTO_THRESHOLD_SHARE * (1.0 - median), *AUTO_THRESHOLD_RANGE))


def _range_pairs(queries: np.ndarray, base: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    """(query row, base row, similarity) of every pair whose cosine similarity reaches ``threshold``."""
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base))
    limits, scores, rows = index.range_search(np.ascontiguousarray(queries), float(threshold) - 1e-6)
    query = np.repeat(np.arange(len(queries)), np.diff(limits.astype(np.int64)))
    return query, rows.astype(np.int64), scores


def duplicate_clusters(X: np.ndarray, threshold: float, texts: list[str] | None = None) -> list[dict]:
    """Items in clusters of near-duplicates: cluster number, row, and similarity to the cluster's
    reference item; largest clusters first.

    Clusters are stars, not chains: the item with the most near-duplicates is a reference, and its
    cluster is every unassigned item at or above ``threshold`` to it (so every member is a
    near-duplicate of the reference; connected components would chain distinct items together
    through intermediate ones). ``texts``: items whose text is the same after normalising case,
    spaces and punctuation are near-duplicates whatever their similarity.
    """
    a, b, _ = _range_pairs(X, X, threshold)
    pairs = {(int(i), int(j)) for i, j in zip(a, b) if i != j}
    pairs |= set(same_text_pairs(texts, texts, exclude_self=True))  # both directions, like the range search
    neighbours: dict[int, set[int]] = {}
    for i, j in pairs:
        neighbours.setdefault(i, set()).add(j)
    assigned: set[int] = set()
    clusters = []
    for centre in sorted(neighbours, key=lambda i: (-len(neighbours[i]), i)):
        if centre in assigned:
            continue
        members = [centre, *sorted(j for j in neighbours[centre] if j not in assigned)]
        if len(members) > 1:
            clusters.append(members)
            assigned.update(members)
    clusters.sort(key=lambda rows: (-len(rows), rows[0]))
    out = []
    for number, rows in enumerate(clusters, 1):
        similarity = X[rows] @ X[rows[0]]
        out += [{"cluster": number, "row": int(r), "similarity": float(v)} for r, v in zip(rows, similarity)]
    return out


def text_key(text: str) -> str:
    """A text with case, spacing and punctuation normalised away: copies edited that little match."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


def same_text_pairs(queries: list[str] | None, base: list[str] | None, exclude_self: bool = False) -> list:
    """(query row, base row) of texts that are the same after ``text_key`` (empty texts never match)."""
    if queries is None or base is None:
        return []
    rows: dict[str, list[int]] = {}
    for j, text in enumerate(base):
        key = text_key(text)
        if key:
            rows.setdefault(key, []).append(j)
    return [
        (i, j) for i, text in enumerate(queries) for j in rows.get(text_key(text), []) if not (exclude_self and i == j)
    ]


def leaks(
    X_train: np.ndarray,
    X_test: np.ndarray,
    threshold: float,
    train_texts: list[str] | None = None,
    test_texts: list[str] | None = None,
) -> list[dict]:
    """Test items whose nearest training item reaches ``threshold`` (or, for texts, whose text is a
    training text after ``text_key``): most similar first."""
    a, b, s = _range_pairs(X_test, X_train, threshold)
    best: dict[int, tuple[float, int]] = {}
    for test_row, train_row, score in zip(a, b, s):
        if score > best.get(int(test_row), (-2.0, 0))[0]:
            best[int(test_row)] = (float(score), int(train_row))
    for test_row, train_row in same_text_pairs(test_texts, train_texts):
        if test_row not in best:
            best[test_row] = (float(X_test[test_row] @ X_train[train_row]), train_row)
    rows = sorted(best.items(), key=lambda kv: -kv[1][0])
    return [{"test_row": t, "train_row": r, "similarity": v} for t, (v, r) in rows]


def knn_distance(X: np.ndarray, k: int) -> np.ndarray:
    """Cosine distance of each row to its ``k``-th nearest other row (NaN with fewer than k others)."""
    import faiss

    if len(X) <= 1:
        return np.full(len(X), np.nan)
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(np.ascontiguousarray(X))
    kk = min(k, len(X) - 1)
    scores, _ = index.search(np.ascontiguousarray(X), kk + 1)  # the first is the item itself
    return (1.0 - scores[:, kk]).astype(np.float64)


def robust_z(values: np.ndarray) -> np.ndarray:
    """Modified z-score (Iglewicz and Hoaglin): (value - median) / (1.4826 MAD), or over 1.2533 times
    the mean absolute deviation when more than half the values are one value (exact duplicates make
    the MAD zero); NaN where undefined, 0 when every value is the same."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return np.full(len(values), np.nan)
    median = np.median(finite)
    spread = 1.4826 * np.median(np.abs(finite - median))
    if spread <= 1e-6:
        spread = 1.2533 * np.mean(np.abs(finite - median))
    return (values - median) / spread if spread > 1e-6 else np.zeros(len(values))


def outliers(X: np.ndarray, y: np.ndarray | None, k: int) -> list[dict]:
    """Every item's k-th-neighbour distance and robust z-score, overall and within its class; most
    isolated first, ``flagged`` where either z-score exceeds ``OUTLIER_Z``."""
    overall = knn_distance(X, k)
    z = robust_z(overall)
    within, zc = np.full(len(X), np.nan), np.full(len(X), np.nan)
    if y is not None:
        for c in set(y) - {""}:
            rows = np.flatnonzero(y == c)
            if len(rows) > k:  # too few items say nothing about their spread
                within[rows] = knn_distance(X[rows], k)
                zc[rows] = robust_z(within[rows])
    worst = np.fmax(z, zc)
    order = np.argsort(-np.nan_to_num(worst, nan=-np.inf), kind="stable")
    return [
        {
            "row": int(r),
            "distance": float(overall[r]),
            "z": float(z[r]),
            "class_distance": float(within[r]),
            "class_z": float(zc[r]),
            "flagged": bool(np.nan_to_num(worst[r], nan=0.0) > OUTLIER_Z),
        }
        for r in order
    ]


def out_of_fold_proba(X: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Class probabilities of each labelled item from logistic regression fitted without it
    (``OOF_FOLDS`` stratified folds; C chosen by ``xfer fit``'s cross-validation), and the class order."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    classes = sorted(set(y))
    C = cross_validate(X, y, "logreg", seed=seed).params.get("C", 1.0)
    smallest = int(np.unique(y, return_counts=True)[1].min())
    folds = StratifiedKFold(n_splits=max(2, min(OOF_FOLDS, smallest)), shuffle=True, random_state=seed)
    import warnings

    with quiet_small_classes(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Number of classes in training fold", category=RuntimeWarning)
        proba = cross_val_predict(make_head("logreg", C=C), X, y, cv=folds, method="predict_proba")
    return proba, classes


def label_issues(found: Audit, y: np.ndarray) -> list[dict] | None:
    """Confident learning on the out-of-fold probabilities: likely wrong labels, least self-confident first."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        found.notes.append("label issues need cleanlab: pip install 'featurizer[audit]'")
        return None
    rows = np.flatnonzero(y != "")
    column = {c: i for i, c in enumerate(found.class_names)}
    given = np.array([column[c] for c in y[rows]])
    proba = found.oof_proba
    ranked = find_label_issues(given, proba, filter_by="both", return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(given, proba)
    return [
        {
            "row": int(rows[i]),
            "given": found.class_names[given[i]],
            "suggested": found.class_names[int(proba[i].argmax())],
            "quality": float(quality[i]),
            "p_suggested": float(proba[i].max()),
        }
        for i in ranked
    ]


def class_table(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> list[dict]:
    """Per class: items, share, out-of-fold accuracy, and the other class its items are most often
    predicted as (with how many)."""
    labelled = y[y != ""]
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    out = []
    for c in classes:
        mine = labelled == c
        wrong = predicted[mine][predicted[mine] != c]
        other, count = ("", 0)
        if len(wrong):
            names, counts = np.unique(wrong, return_counts=True)
            other, count = str(names[counts.argmax()]), int(counts.max())
        out.append(
            {
                "class": c,
                "items": int(mine.sum()),
                "share": float(mine.mean()),
                "oof_accuracy": float((predicted[mine] == c).mean()),
                "looks_like": other,
                "looks_like_items": count,
            }
        )
    return out


def write_audit(found: Audit, folder: str | os.PathLike) -> list[Path]:
    """One CSV per finding in ``folder``: duplicates, leaks, label_issues, outliers, classes. The
    folder is replaced whole (written aside, then renamed into place), so no CSV of an earlier
    audit is left beside the new ones."""

    folder = Path(folder)
    claim(folder, folder=True, kind="audit")
    src = found.sources or [""] * len(found.ids)
    label = found.labels if found.labels is not None else np.full(len(found.ids), "")
    tables = {
        "duplicates": (
            ["cluster", "id", "source", "label", "similarity"],
            [
                [d["cluster"], found.ids[d["row"]], src[d["row"]], label[d["row"]], f"{d['similarity']:.4f}"]
                for d in found.duplicates
            ],
        ),
        "outliers": (
            ["rank", "id", "source", "label", "distance", "z", "class_distance", "class_z", "flagged"],
            [
                [
                    i,
                    found.ids[o["row"]],
                    src[o["row"]],
                    label[o["row"]],
                    f"{o['distance']:.4f}",
                    f"{o['z']:.2f}",
                    f"{o['class_distance']:.4f}",
                    f"{o['class_z']:.2f}",
                    int(o["flagged"]),
                ]
                for i, o in enumerate(found.outliers, 1)
            ],
        ),
    }
    if found.test is not None:
        test_src = found.test["sources"] or [""] * len(found.test["ids"])
        tables["leaks"] = (
            ["test_id", "test_source", "train_id", "train_source", "similarity"],
            [
                [
                    found.test["ids"][t["test_row"]],
                    test_src[t["test_row"]],
                    found.ids[t["train_row"]],
                    src[t["train_row"]],
                    f"{t['similarity']:.4f}",
                ]
                for t in found.leaks
            ],
        )
    if found.label_issues is not None:
        tables["label_issues"] = (
            ["rank", "id", "source", "given", "suggested", "label_quality", "p_suggested"],
            [
                [
                    i,
                    found.ids[e["row"]],
                    src[e["row"]],
                    e["given"],
                    e["suggested"],
                    f"{e['quality']:.4f}",
                    f"{e['p_suggested']:.4f}",
                ]
                for i, e in enumerate(found.label_issues, 1)
            ],
        )
        tables["classes"] = (
            ["class", "items", "share", "oof_accuracy", "looks_like", "looks_like_items"],
            [
                [
                    c["class"],
                    c["items"],
                    f"{c['share']:.4f}",
                    f"{c['oof_accuracy']:.4f}",
                    c["looks_like"],
                    c["looks_like_items"],
                ]
                for c in found.classes
            ],
        )
    with atomic_output(folder, kind="audit") as tmp:
        tmp.mkdir()
        for name, (header, rows) in tables.items():
            write_csv(tmp / f"{name}.csv", header, rows)
    return [folder / f"{name}.csv" for name in tables]


def audit_report(found: Audit, title: str, map_method: str = "auto", seed: int = 0):
    """The HTML report of an audit (``pipelines._report``): the map of the training items with every
    finding ringed, a gallery per finding, and the class table."""

    n = len(found.ids)
    src = found.sources or [""] * n
    label = found.labels if found.labels is not None else np.full(n, "")
    items = [(i, str(c), s) for i, c, s in zip(found.ids, label, src)]
    marks: dict[int, str] = {}
    for o in found.outliers:
        if o["flagged"]:
            marks[o["row"]] = f"outlier (robust z {max(o['z'], np.nan_to_num(o['class_z'])):.1f})"
    for d in found.duplicates:
        marks[d["row"]] = f"near-duplicate cluster {d['cluster']}"
    for e in found.label_issues or []:
        marks[e["row"]] = f"label '{e['given']}' looks wrong: the model says '{e['suggested']}'"
    for t in found.leaks:
        marks[t["train_row"]] = f"also in the test set (similarity {t['similarity']:.3f})"
    galleries = []
    if found.label_issues is not None:
        cards = [
            (e["row"], f"{e['given']} -> {e['suggested']} (quality {e['quality']:.2f})") for e in found.label_issues
        ]
        note = "Confident learning on out-of-fold probabilities; least confident in the given label first."
        galleries.append({"title": "Likely label errors", "note": note, "cards": cards})
    cards = [(d["row"], f"cluster {d['cluster']}, similarity {d['similarity']:.3f}") for d in found.duplicates]
    note = (
        f"Items whose cosine similarity reaches {found.threshold:.2f}, grouped; each cluster's first is its reference."
    )
    galleries.append({"title": "Near-duplicate clusters", "note": note, "cards": cards})
    if found.test is not None:
        test_src = found.test["sources"] or [""] * len(found.test["ids"])
        items += [(i, "(test)", s) for i, s in zip(found.test["ids"], test_src)]
        cards = []
        for t in found.leaks:
            cards.append((n + t["test_row"], f"test item, similarity {t['similarity']:.3f} to ->"))
            cards.append((t["train_row"], f"training item {found.ids[t['train_row']]}"))
        note = f"Test items whose nearest training item reaches {found.threshold:.2f}: pairs, test item first."
        galleries.append({"title": "Leaks from train into test", "note": note, "cards": cards})
    flagged = [o for o in found.outliers if o["flagged"]]
    cards = [(o["row"], f"z {o['z']:.1f} overall, {np.nan_to_num(o['class_z']):.1f} in class") for o in flagged]
    note = f"Distance to the {NEIGHBOURS}th nearest item, robust z-score above {OUTLIER_Z} overall or within the class."
    galleries.append({"title": "Outliers", "note": note, "cards": cards})
    rows = map_sample(n, list(marks), seed=seed)
    xy, method = embedding_map(found.X[rows], map_method, seed)
    tables = []
    if found.classes:
        header = ["class", "items", "share", "out-of-fold accuracy", "looks like", "items that do"]
        body = [
            [c["class"], c["items"], c["share"], c["oof_accuracy"], c["looks_like"], c["looks_like_items"]]
            for c in found.classes
        ]
        tables.append({"title": "Classes", "header": header, "rows": body})
    summary = {k: ("not searched" if v == -1 else v) for k, v in found.summary().items()}
    return Report(
        title,
        found.modality,
        items,
        summary,
        rows,
        xy,
        method,
        marks=marks,
        galleries=galleries,
        tables=tables,
        map_of=n,
    )


def audit_files(
    train: str | os.PathLike,
    test: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    layer=None,
    threshold: float | None = None,
    map_method: str = "auto",
    seed: int = 0,
) -> tuple[Audit, list[Path]]:
    """``xfer audit``: audit ``train`` (and leaks into ``test``), write a CSV per finding into ``out``
    (default ``<train>-audit/`` beside it) and, with ``report``, the HTML report. Returns the audit
    and the files written."""

    out = Path(out) if out else default_outputs("audit", Path(train))["output"]
    with guarding(train, test):
        claim(out, folder=True, kind="audit")  # before the work, not after
        if report is not None:
            check_report_path(report)
            claim(report, kind="page")
        found = audit(train, test, layer=layer, threshold=threshold, seed=seed)
        written = write_audit(found, out)
        if report is not None:
            names = Path(train).name + (f" and {Path(test).name}" if test else "")
            written.append(write_report(audit_report(found, f"Audit of {names}", map_method, seed), report))
    return found, written
