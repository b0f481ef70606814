"""The few-shot protocol: N labelled examples per class, fit, score on the whole test set, repeat.

With ``heads=("logreg",)``, ``max_iter=100``, ``shots=(8,)`` and ``runs=10`` it is the MTEB
classification protocol (plain logistic regression on raw embeddings, 8 examples per label, 10
seeded draws), so the numbers compare with published MTEB results.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import clone

from featurizer import FeatureFile, FeaturizerError
from featurizer.spec import check_compatible
from featurizer.storage import same_location
from pipelines.adapt import fit_adaptation
from pipelines.fit._fit import (
    AUTO,
    check_labels,
    choose_layers,
    labelled,
    read_xy,
    sample_few_shot,
    unknown_label_warnings,
)
from pipelines.heads import SEMI_METHODS, choose_semi, make_head, semi_estimator, stack_pool
from pipelines.report import pyplot, save_png


@dataclass
class FewShotRow:
    head: str
    shots: int
    scores: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))


def few_shot_head(head: str, max_iter: int | None = None):
    """A head with fixed defaults (too few examples to cross-validate); logistic regression as in MTEB."""
    if head == "logreg":
        return make_head("logreg", "none", max_iter=max_iter or 100, C=1.0)
    return make_head(head)


def plan_shots(y: np.ndarray, shots: Sequence[int], runs: int) -> tuple[list[tuple[int, int]], list[str]]:
    """(N, runs) of each requested N that can be honoured, and a one-line reason for each one that cannot.

    An N is skipped when a class has fewer than N labelled examples (it would be drawn whole, so N
    would not be N), and runs once when it takes every example of every class (every draw is the same
    one). Nothing runnable is an error naming the smallest class.
    """

    classes, counts = np.unique(np.asarray(y), return_counts=True)
    plan, notes = [], []
    for n in dict.fromkeys(int(n) for n in shots):
        if n < 1:
            notes.append(f"N={n} skipped: a few-shot draw takes at least 1 example per class")
            continue
        small = [(str(c), int(k)) for c, k in zip(classes, counts) if k < n]
        if small:
            shown = ", ".join(f"{c!r} ({k})" for c, k in small[:5]) + (" ..." if len(small) > 5 else "")
            notes.append(
                f"N={n} skipped: {len(small)} of {len(classes)} classes have fewer than {n} labelled examples ({shown})"
            )
            continue
        if runs > 1 and (counts == n).all():
            notes.append(
                f"N={n} takes all {n} labelled examples of every class: every run would draw the same examples, "
                f"so it ran once, not {runs} times (its ± 0 is no spread)"
            )
            plan.append((n, 1))
            continue
        plan.append((n, runs))
    if not plan:
        smallest = int(np.argmin(counts))
        raise FeaturizerError(
            f"no N of --shots {','.join(map(str, shots))} can run: the smallest class, {str(classes[smallest])!r}, "
            f"has {int(counts[smallest])} labelled examples; give N from 1 to {int(counts[smallest])}"
        )
    return plan, notes


def head_problem(head: str, shots: int, n_classes: int) -> str:
    """Why ``head`` cannot run with ``shots`` examples of each of ``n_classes`` classes ("" if it can)."""
    if head == "lda" and shots * n_classes <= n_classes:
        return "lda needs more training examples than classes (one per class leaves no within-class spread)"
    if head == "knn" and shots == 1:
        k = few_shot_head("knn").get_params()["clf__n_neighbors"]
        if k > 1:
            return f"knn's {k} neighbours are then each of another class: every vote is a tie"
    return ""


def few_shot(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    shots: Sequence[int] = (1, 2, 4, 8, 16),
    runs: int = 10,
    heads: Sequence[str] = ("logreg", "prototype"),
    max_iter: int | None = None,
    seed: int = 0,
    progress: bool = False,
    notes: list[str] | None = None,
    semi: str | None = None,
) -> list[FewShotRow]:
    """Accuracy of each head for each N, over ``runs`` seeded draws of the training examples.

    Only what ran is returned: an N no draw can honour, and a head that cannot run at an N, are left
    out with a one-line reason appended to ``notes`` (see ``plan_shots`` and ``head_problem``).
    ``semi`` (``auto``, ``pca``, ``self-training``, ``spreading``) adds a row ``head+semi`` per head: the same
    draws, with every training item not drawn as the unlabelled pool (its labels unused).
    """
    from sklearn.exceptions import ConvergenceWarning
    from tqdm.auto import tqdm

    if semi is not None and semi not in SEMI_METHODS:
        raise FeaturizerError(f"--semi must be one of {', '.join(SEMI_METHODS)}, not {semi!r}")
    semi = None if semi == "none" else semi
    plan, said = plan_shots(y_train, shots, runs)
    n_classes = len(np.unique(y_train))
    rows = []
    total = len(heads) * sum(r for _, r in plan)
    with tqdm(total=total, desc="few-shot", disable=not progress) as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=100 is the protocol, not a mistake
        for head in heads:
            template = few_shot_head(head, max_iter)
            for n, n_runs in plan:
                problem = head_problem(head, n, n_classes)
                scores, with_pool = [], []
                for run in range(n_runs if not problem else 0):
                    idx = sample_few_shot(y_train, n, seed + run)
                    try:
                        model = clone(template).fit(X_train[idx], y_train[idx])
                        if semi:
                            pooled = _fit_with_pool(template, X_train, y_train, idx, semi, seed + run, model)
                            with_pool.append(float(pooled.score(X_test, y_test)))
                    except (ValueError, np.linalg.LinAlgError) as err:  # a head that cannot fit this draw
                        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                        break
                    scores.append(float(model.score(X_test, y_test)))
                    bar.update(1)
                if problem:
                    said.append(f"{head} at N={n} skipped: {problem}")
                    bar.update(n_runs - len(scores))
                    continue
                rows.append(FewShotRow(head, int(n), scores))
                if semi:
                    rows.append(FewShotRow(f"{head}+{semi}", int(n), with_pool))
    if notes is not None:
        notes += said
    return rows


def _fit_with_pool(template, X, y, drawn, semi: str, seed: int, plain):
    """The head fitted on the ``drawn`` items with every other item of ``X`` as the pool (``plain``
    where ``auto`` keeps the plain head)."""
    pool = np.setdiff1d(np.arange(len(y)), drawn)
    method = semi
    if semi == "auto":
        method = choose_semi(X[drawn], y[drawn], X[pool], template, seed=seed).method
    if method == "none":
        return plain
    return semi_estimator(method, clone(template)).fit(*stack_pool(X[drawn], y[drawn], X[pool]))


def overlap_warnings(X_train: np.ndarray, X_test: np.ndarray, train: str, test: str, what: str) -> list[str]:
    """A warning when test items are also training items, by content: identical vectors (ids repeat
    across folders with different files, so they prove nothing)."""
    same = same_location(train, test)
    shared = int(np.isin(_row_digests(X_test), _row_digests(X_train)).sum()) if len(X_test) and len(X_train) else 0
    if same:
        return [
            f"{test} is {what} itself: all {len(X_test)} test items are training items, so the scores measure "
            "memory, not how the model does on new items"
        ]
    if not shared:
        return []
    return [
        f"{shared} of {len(X_test)} test items are also in {what} ({train}: identical vectors): "
        "their scores are not those of new items"
    ]


def _row_digests(X: np.ndarray) -> np.ndarray:
    """A 16-byte digest of each row's bytes, as fixed-size byte strings that ``np.isin`` compares."""
    import hashlib

    X = np.ascontiguousarray(X, dtype=np.float32)
    X = X + np.float32(0.0)  # -0.0 and 0.0 as one value
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in X], dtype="S16")


def few_shot_files(
    train: str | os.PathLike, test: str | os.PathLike, layers=None, adapt: str | None = None, **protocol
) -> tuple[list[FewShotRow], tuple[str, ...], list[str]]:
    """``few_shot`` on two feature files, which must hold the same kind of features; (rows, layers read, warnings).

    ``rows`` hold only the (head, N) that ran; the warnings say why any other was skipped, and how
    many test items are also training items (by identical vectors).

    ``layers`` follows ``fit``'s grammar (names or indices, concatenated; default the first layer).
    ``adapt`` (``mean``, ``coral``, ``subspace``) adds each head again, fitted on training features
    aligned to the test features (``pipelines._adapt``, fitted on all of both files' features,
    labels unused): the same head with and without adaptation, side by side.
    """

    with FeatureFile(train) as tr, FeatureFile(test) as te:
        chosen = choose_layers(tr.layers, layers)
        if chosen == AUTO:
            raise FeaturizerError("fewshot reads the layers it is given; 'auto' is for xfer fit")
        check_compatible(tr.spec.select(chosen), te.spec, str(test), f"the features of {train}")
        X_train, y_train, notes = labelled(*read_xy(tr, chosen), str(train))
        X_test, y_test, test_notes = labelled(*read_xy(te, chosen), str(test))
    check_labels(y_train, str(train))
    check_labels(y_test, str(test))
    warnings = notes + test_notes + unknown_label_warnings(y_test, sorted(set(y_train)), str(train))
    warnings += overlap_warnings(X_train, X_test, str(train), str(test), "the training file")
    rows = few_shot(X_train, y_train, X_test, y_test, **protocol, notes=warnings)
    if adapt:
        source_map, target_map = fit_adaptation(adapt, X_train, X_test)
        skipped: list[str] = []
        adapted = few_shot(
            source_map.transform(X_train), y_train, target_map.transform(X_test), y_test, **protocol, notes=skipped
        )
        warnings += [note.replace(" at N=", f"+{adapt} at N=", 1) for note in skipped if " at N=" in note]
        rows += [FewShotRow(f"{row.head}+{adapt}", row.shots, row.scores) for row in adapted]
    return rows, chosen, warnings


def plot_learning_curve(rows: list[FewShotRow], path: str | os.PathLike, title: str = "") -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for head in dict.fromkeys(r.head for r in rows):
        mine = [r for r in rows if r.head == head]
        ax.errorbar(
            [r.shots for r in mine],
            [r.mean for r in mine],
            yerr=[r.std for r in mine],
            marker="o",
            capsize=3,
            label=head,
        )
    ax.set_xscale("log", base=2)
    shots = sorted({r.shots for r in rows})
    ax.set_xticks(shots, labels=[str(n) for n in shots])
    ax.minorticks_off()
    ax.set_xlabel("labelled examples per class")
    ax.set_ylabel("test accuracy (mean ± std over runs)")
    ax.set_title(title or "few-shot learning curve")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_png(fig, path)  # marked as xfer's, so the next run may replace it
