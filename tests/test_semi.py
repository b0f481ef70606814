"""Semi-supervised heads on data whose answer is known, and the label-free choice between them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import check_estimator_cloneable, check_get_params_invariance

from pipelines.heads import LabelSpreading, PoolSubspace, SelfTraining, choose_semi, semi_estimator, stack_pool


def two_moons_of_clusters(seed=0, per_cluster=200):
    """Two well-separated clusters in 32 dimensions, labels A and B, with 2 labelled items each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2, 32)) * 4
    X = np.concatenate([c + rng.normal(size=(per_cluster, 32)) for c in centres]).astype(np.float32)
    truth = np.array(["A"] * per_cluster + ["B"] * per_cluster)
    y = np.full(len(X), "", dtype=object)
    for c in (0, per_cluster):
        y[c : c + 2] = truth[c : c + 2]
    return X, y.astype(str), truth


@pytest.mark.parametrize("semi", [SelfTraining(), LabelSpreading()], ids=["self-training", "spreading"])
def test_the_pool_of_two_clear_clusters_is_labelled_correctly_from_two_labels_each(semi):
    X, y, truth = two_moons_of_clusters()
    semi.fit(X, y)
    pool = y == ""
    assert (semi.pseudo_labels_ == truth[pool]).mean() == 1.0
    assert (semi.predict(X) == truth).mean() == 1.0
    assert list(semi.classes_) == ["A", "B"]


def test_self_training_labels_the_pool_evenly_so_a_majority_cannot_swallow_it():
    """One round may add at most share x pool / classes items to each class."""
    X, y, _ = two_moons_of_clusters()
    semi = SelfTraining(share=0.1, max_iter=1).fit(X, y)
    added = semi.pseudo_labels_[semi.pseudo_labels_ != ""]
    counts = {c: int((added == c).sum()) for c in ("A", "B")}
    assert counts == {"A": 20, "B": 20}  # ceil(0.1 * 396 / 2) each, not all 396


def test_numeric_labels_mark_the_pool_with_minus_one():
    X, y, _ = two_moons_of_clusters()
    numeric = np.where(y == "", -1, np.where(y == "A", 0, 1))
    semi = LabelSpreading().fit(X, numeric)
    assert set(semi.pseudo_labels_) == {0, 1} and semi.predict(X[:1])[0] == 0


def test_one_labelled_class_is_refused():
    X, y, _ = two_moons_of_clusters()
    y[y == "B"] = ""
    with pytest.raises(ValueError, match="two classes"):
        SelfTraining().fit(X, y)


def signal_in_the_pools_widest_direction(seed, n=300, d=200):
    """Two classes apart along one direction in 200 of unit noise, two labels per class: standardised,
    every noise dimension weighs as much as the signal; the pool's top principal direction is the signal."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2 * n, d))
    X[:, 0] += np.repeat([-2.5, 2.5], n)
    truth = np.repeat(np.array(["A", "B"]), n)
    labelled = np.concatenate([rng.choice(np.flatnonzero(truth == c), 2, replace=False) for c in "AB"])
    return X.astype(np.float32), truth, labelled, np.setdiff1d(np.arange(2 * n), labelled)


@pytest.mark.parametrize("seed", range(3))
def test_the_pools_principal_subspace_finds_the_direction_the_labels_are_too_few_to_show(seed):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, truth, labelled, pool = signal_in_the_pools_widest_direction(seed)
    plain = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[labelled], truth[labelled])
    sub = semi_estimator("pca", plain).fit(*stack_pool(X[labelled], truth[labelled], X[pool]))
    assert (plain.predict(X) == truth).mean() < 0.6 < 0.85 < (sub.predict(X) == truth).mean()
    assert sub.n_components_ == 6 and list(sub.classes_) == ["A", "B"]  # 3 per class
    # what is saved is one pipeline over the original vectors: projection, then the head
    assert (sub.estimator_.predict(X) == sub.predict(X)).all() and sub.estimator_.steps[0][0] == "pool_pca"
    # the subspace head is the plain head's kind without its scaler and with the table's defaults
    assert not any(isinstance(step, StandardScaler) for _, step in sub.estimator_.steps[1][1].steps)


def test_the_subspace_is_never_wider_than_the_data():
    X, truth, labelled, pool = signal_in_the_pools_widest_direction(0, n=3, d=4)
    sub = PoolSubspace(per_class=3).fit(*stack_pool(X[labelled], truth[labelled], X[pool]))
    assert sub.n_components_ == 4 and sub.predict(X).shape == (6,)
    alone = PoolSubspace().fit(X[labelled], truth[labelled])  # no pool at all: the labelled items' own subspace
    assert alone.n_components_ == 3


@pytest.mark.parametrize(
    "estimator",
    [SelfTraining(LogisticRegression()), LabelSpreading(n_neighbors=5), PoolSubspace(per_class=2)],
)
def test_semi_heads_are_scikit_learn_estimators(estimator):
    check_estimator_cloneable(type(estimator).__name__, estimator)
    check_get_params_invariance(type(estimator).__name__, estimator)


def test_auto_keeps_the_plain_head_when_the_pool_adds_nothing_or_ties():
    """The plain head is the default: a method is kept only when it beats it beyond the folds' noise."""
    rng = np.random.default_rng(1)
    head = LogisticRegression(max_iter=1000)
    centres = rng.normal(size=(3, 64)) * 1.2
    X = np.concatenate([c + rng.normal(size=(300, 64)) for c in centres]).astype(np.float32)
    truth = np.repeat(np.array(["a", "b", "c"]), 300)
    labelled = np.concatenate([np.flatnonzero(truth == c)[:4] for c in "abc"])
    pool = np.setdiff1d(np.arange(len(X)), labelled)
    tie = choose_semi(X[labelled], truth[labelled], X[pool], head, seed=0, folds=4)
    assert set(tie.scores) == {"none", "pca", "self-training", "spreading"}
    assert tie.scores["none"][0] == 1.0 and tie.method == "none"  # every method is perfect: plain it is
    empty = choose_semi(X[labelled], truth[labelled], X[:0], head, seed=0, folds=4)
    assert empty.method == "none" and "beyond noise" in empty.reason
    asked = choose_semi(X[labelled], truth[labelled], X[pool], head, method="spreading", folds=4)
    assert asked.method == "spreading" and set(asked.scores) == {"none", "spreading"}


def test_fewshot_adds_a_row_per_head_with_the_undrawn_items_as_the_pool():
    """Clusters far apart but stretched along a direction the labels do not show: one label per class
    misplaces the boundary, the pool puts it back."""
    from pipelines.fit._fewshot import few_shot

    rng = np.random.default_rng(1)
    n = 150
    stretch = np.zeros(16)
    stretch[0] = 6.0
    centres = np.zeros((2, 16))
    centres[:, 1] = (-5.0, 5.0)
    X = np.concatenate([c + rng.normal(size=(n, 16)) + np.outer(rng.normal(size=n), stretch) for c in centres])
    y = np.array(["A"] * n + ["B"] * n)
    rows = few_shot(X, y, X, y, shots=(1,), runs=5, heads=("logreg",), semi="spreading")
    plain, pooled = rows
    assert [r.head for r in rows] == ["logreg", "logreg+spreading"] and len(pooled.scores) == 5
    assert pooled.mean >= plain.mean + 0.1, (plain.mean, pooled.mean)  # 0.755 -> 1.0 here


def test_fewshot_cli_shows_the_semi_rows(digit_features, tmp_path):
    from tests.test_flows import xfer

    train, test, _ = digit_features
    out = xfer(
        "fewshot", train, test, "--shots", "2", "--runs", "2", "--head", "prototype", "--semi", "auto",
        "--png", tmp_path / "c.png",
    ).output  # fmt: skip
    assert [line.split()[0] for line in out.splitlines() if "±" in line] == ["prototype", "prototype+auto"]
    bad = xfer("fewshot", train, test, "--semi", "often", "--png", tmp_path / "d.png", ok=False)
    assert bad.exit_code == 2 and "often" in bad.output
