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

from pipelines._heads import make_head


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


def sample_few_shot(y: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices of ``shots`` examples of every class (all of a smaller class), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    chosen = [
        rng.choice(np.flatnonzero(y == c), size=min(shots, int((y == c).sum())), replace=False) for c in np.unique(y)
    ]
    return np.sort(np.concatenate(chosen))


def few_shot_head(head: str, max_iter: int | None = None):
    """A head with fixed defaults (too few examples to cross-validate); logistic regression as in MTEB."""
    if head == "logreg":
        return make_head("logreg", "none", max_iter=max_iter or 100, C=1.0)
    return make_head(head)


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
) -> list[FewShotRow]:
    """Accuracy of each head for each N, over ``runs`` seeded draws of the training examples."""
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from tqdm.auto import tqdm

    rows = []
    total = len(heads) * len(shots) * runs
    with tqdm(total=total, desc="few-shot", disable=not progress) as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=100 is the protocol, not a mistake
        for head in heads:
            template = few_shot_head(head, max_iter)
            for n in shots:
                scores = []
                for run in range(runs):
                    idx = sample_few_shot(y_train, n, seed + run)
                    model = clone(template).fit(X_train[idx], y_train[idx])
                    scores.append(float(model.score(X_test, y_test)))
                    bar.update(1)
                rows.append(FewShotRow(head, int(n), scores))
    return rows


def few_shot_files(
    train: str | os.PathLike, test: str | os.PathLike, layers=None, adapt: str | None = None, **protocol
) -> tuple[list[FewShotRow], tuple[str, ...], list[str]]:
    """``few_shot`` on two feature files, which must hold the same kind of features; (rows, layers read, warnings).

    ``layers`` follows ``fit``'s grammar (names or indices, concatenated; default the first layer).
    ``adapt`` (``mean``, ``coral``, ``subspace``) adds each head again, fitted on training features
    aligned to the test features (``pipelines._adapt``, fitted on all of both files' features,
    labels unused): the same head with and without adaptation, side by side.
    """
    from featurizer import FeatureFile, FeaturizerError
    from pipelines._evaluate import check_compatible, unknown_label_warnings
    from pipelines._fit import AUTO, check_labels, choose_layers, labelled, read_xy

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
    rows = few_shot(X_train, y_train, X_test, y_test, **protocol)
    if adapt:
        from pipelines._adapt import fit_adaptation

        source_map, target_map = fit_adaptation(adapt, X_train, X_test)
        adapted = few_shot(source_map.transform(X_train), y_train, target_map.transform(X_test), y_test, **protocol)
        rows += [FewShotRow(f"{row.head}+{adapt}", row.shots, row.scores) for row in adapted]
    return rows, chosen, warnings


def plot_learning_curve(rows: list[FewShotRow], path: str | os.PathLike, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
