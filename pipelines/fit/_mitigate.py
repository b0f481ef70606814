"""``xfer fit --mitigate CONSTRAINT --groups FILE``: the head ``fit`` chose, refitted under a
fairness constraint with each training item's group (``pipelines.heads._fairness``: why reductions,
what the saved model holds). The groups are read by the rule of ``evaluate --by``
(``pipelines.heads.read_groups``), and must cover every labelled item; the card records the
constraint, the groups file, and the gap and accuracy before and after on a held-out quarter.
"""

from __future__ import annotations

import os

import numpy as np

from featurizer import FeatureFile, FeaturizerError
from pipelines.fit._fit import read_xy
from pipelines.heads import MITIGATIONS, FairMixture, check_covered, mitigate, read_groups


def check_mitigation(constraint: str | None, groups, *, adapt: str | None = None, unlabelled=None) -> None:
    """Refuse, in one line and before any work, ``--mitigate`` and ``--groups`` that do not go together."""
    if constraint is None and groups is None:
        return
    if constraint is None:
        raise FeaturizerError("--groups is for --mitigate: give the constraint (--mitigate equalized_odds)")
    if constraint not in MITIGATIONS:
        raise FeaturizerError(f"--mitigate must be one of {', '.join(MITIGATIONS)}, not {constraint!r}")
    if groups is None:
        raise FeaturizerError(
            f"--mitigate {constraint} needs each training item's group: give --groups FILE (a CSV of id,group)"
        )
    if adapt or unlabelled is not None:
        raise FeaturizerError("--mitigate cannot be combined with --adapt or --unlabelled yet: choose one")


def training_groups(train: str | os.PathLike, groups: str | os.PathLike, label_column: str | None) -> np.ndarray:
    """The group of each labelled item of ``train``, read before any work; groups that leave a
    labelled item out are refused in one line (how many, and one id)."""
    with FeatureFile(train) as features:
        labels = features.labels if label_column is None else features.column(label_column)
        ids, modality = features.ids, features.spec.modality
    if labels is not None:
        ids = [i for i, label in zip(ids, labels) if label != ""]
    found, _ = read_groups(str(groups), train, ids, modality, option="--groups")
    check_covered(found, ids, str(groups), train)
    return found


def mitigated_head(
    train: str | os.PathLike,
    head,
    layers: tuple[str, ...],
    label_column: str | None,
    constraint: str,
    groups: str | os.PathLike,
    seed: int = 0,
) -> tuple[FairMixture, dict]:
    """``head`` (fitted on ``layers`` of ``train``) refitted under ``constraint`` with the groups of
    ``groups``, and what the card records of it."""
    with FeatureFile(train) as features:
        X, y = read_xy(features, layers, label_column)
    found = training_groups(train, groups, label_column)
    keep = y != ""
    model, summary = mitigate(head, X[keep], y[keep], found, constraint, seed)
    names, counts = np.unique(found, return_counts=True)
    summary["groups"] = str(os.path.abspath(groups))
    summary["group_counts"] = {str(g): int(n) for g, n in zip(names, counts)}
    return model, summary


def mitigation_note(summary: dict) -> str:
    """One line of what the mitigation did on the held-out items (or that none could be held out)."""
    held = summary.get("held_out")
    if not held:
        return f"mitigated for {summary['constraint']}: too few items per class to hold some out and measure it"
    return (
        f"mitigated for {summary['constraint']} on {len(summary['group_counts'])} groups: on {held['n']} held-out "
        f"items the gap went {held['gap_before']:.3f} -> {held['gap_after']:.3f}, accuracy "
        f"{held['accuracy_before']:.3f} -> {held['accuracy_after']:.3f} (cost {held['accuracy_cost']:+.3f})"
    )
