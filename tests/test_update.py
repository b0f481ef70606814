"""Models that grow: xfer update adds classes from a rehearsal memory, and heads learn more in place."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from featurizer import FeatureFile, FeatureFileWriter, featurize
from pipelines import load_model
from pipelines.fit import memory_path, read_xy
from pipelines.heads import KNNClassifier, PrototypeClassifier, RehearsalHead, herding, select_memory, update_head
from pipelines.models import head_of
from tests.test_flows import xfer

OLD, NEW = list("01234"), list("56789")


def subset(source, target, keep) -> None:
    """A feature file of the items of ``source`` whose label is in ``keep``, every layer as it was."""
    with FeatureFile(source) as f:
        rows = np.flatnonzero(np.isin(np.asarray(f.labels), keep))
        with FeatureFileWriter(target, f.spec, [f.ids[r] for r in rows], [f.labels[r] for r in rows]) as w:
            for layer in f.layers:
                w.write_layer(layer, 0, f.read(layer)[rows])


@pytest.fixture(scope="module")
def steps(digit_features, tmp_path_factory):
    train, test, _ = digit_features
    root = tmp_path_factory.mktemp("steps")
    subset(train, root / "old.h5", OLD)
    subset(train, root / "new.h5", NEW)
    return root / "old.h5", root / "new.h5", test, root


def accuracy(model_path, test) -> float:
    model, card = load_model(model_path)
    with FeatureFile(test) as f:
        X, y = read_xy(f, card.spec.layers)
    return float((head_of(model).predict(X) == y).mean())


def test_update_adds_classes_close_to_a_joint_refit_and_far_above_the_new_data_alone(steps, digit_features):
    old, new, test, root = steps
    flags = ("--layer", "pre_logits")
    xfer("fit", old, *flags, "-o", root / "old.skops")
    card = json.loads((root / "old.json").read_text())
    with FeatureFile(old) as f, FeatureFile(new) as g:
        n_old, n_new = len(f), len(g)
    assert card["memory"]["items"] == n_old and memory_path(root / "old.skops").is_file()  # under 200 a class: all kept
    result = xfer("update", root / "old.skops", new, "-o", root / "grown.skops")
    assert f"added classes: 5, 6, 7, 8, 9; {n_new} new items" in result.output
    assert "old classes: accuracy" in result.output and "new classes: accuracy" in result.output
    xfer("fit", digit_features[0], *flags, "-o", root / "joint.skops")
    xfer("fit", new, *flags, "-o", root / "naive.skops")
    grown, joint, naive = (accuracy(root / f"{n}.skops", test) for n in ("grown", "joint", "naive"))
    assert grown >= joint - 0.05 and grown >= naive + 0.2, (grown, joint, naive)
    grown_card = json.loads((root / "grown.json").read_text())
    assert grown_card["classes"] == OLD + NEW and grown_card["updates"][0]["added_classes"] == NEW
    with FeatureFile(memory_path(root / "grown.skops")) as memory:  # the memory is a feature file of its own
        assert len(memory) == n_old + n_new and sorted(set(memory.labels)) == OLD + NEW
    card_md = (root / "grown.md").read_text()  # the Markdown card shows the memory and the update
    assert "## Memory and updates" in card_md and "5, 6, 7, 8, 9" in card_md
    scored = xfer("evaluate", root / "grown.skops", test).output
    assert f"{grown:.3f}" in scored


def test_an_update_never_writes_over_its_model_and_refuses_what_it_cannot_grow_in_one_line(steps, tmp_path):
    old, new, _, _ = steps
    xfer("fit", old, "--layer", "pre_logits", "-o", tmp_path / "m.skops")
    over = xfer("update", tmp_path / "m.skops", new, "-o", tmp_path / "m.skops", ok=False)
    assert over.exit_code != 0 and "input" in over.output
    texts = tmp_path / "texts.h5"
    (tmp_path / "texts.csv").write_text("text,label\na question ?,x\nanother one ?,y\n")
    featurize(tmp_path / "texts.csv", "minilm", output=texts, cache_dir=tmp_path / "cache", progress=False)
    other = xfer("update", tmp_path / "m.skops", texts, "-o", tmp_path / "x.skops", ok=False)
    with FeatureFile(new) as f:
        spec, ids = f.spec, f.ids
    unlabelled = tmp_path / "unlabelled.h5"
    with FeatureFile(new) as f, FeatureFileWriter(unlabelled, spec, ids) as w:
        for layer in f.layers:
            w.write_layer(layer, 0, f.read(layer))
    bare = xfer("update", tmp_path / "m.skops", unlabelled, "-o", tmp_path / "x.skops", ok=False)
    memory = memory_path(tmp_path / "m.skops")
    memory.write_bytes(memory.read_bytes()[:-8] + b"\0" * 8)  # changed after the model was saved
    tampered = xfer("update", tmp_path / "m.skops", new, "-o", tmp_path / "x.skops", ok=False)
    for result, said in ((other, "does not match"), (bare, "has no labels"), (tampered, "changed after")):
        assert result.exit_code == 1 and said in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.skops").exists()


def test_models_that_cannot_grow_are_named(steps, tmp_path):
    from dataclasses import replace

    from featurizer import FeaturizerError
    from pipelines.fit._update import check_updatable
    from pipelines.models import read_card

    old, _, _, _ = steps
    xfer("fit", old, "--layer", "pre_logits", "-o", tmp_path / "m.skops")
    card = read_card(tmp_path / "m.skops")

    for change, said in (
        ({"tasks": [{"name": "a"}]}, "several tasks"),
        ({"adaptation": {"method": "coral"}}, "--adapt"),
        ({"params": {"semi": "pca"}}, "--semi"),
        ({"head": "zero-shot"}, "zero-shot"),
        ({"mitigation": {"constraint": "equalized_odds"}}, "--mitigate"),
    ):
        with pytest.raises(FeaturizerError, match=said):
            check_updatable(replace(card, **change), "m.skops")


def test_knn_and_prototype_heads_learn_more_items_in_place_as_a_refit_would():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 8)).astype(np.float32) + np.repeat(np.eye(8)[:3] * 4, 30, axis=0)
    y = np.repeat(["a", "b", "c"], 30)
    first, later = np.arange(90) % 3 != 0, np.arange(90) % 3 == 0
    first &= y != "c"  # c arrives later
    probe = rng.normal(size=(40, 8)).astype(np.float32) * 3
    for make in (lambda: KNNClassifier(n_neighbors=3, center=False), lambda: PrototypeClassifier(center=False)):
        grown = make().fit(X[first], y[first]).partial_fit(X[later], y[later])
        seen = first | later
        refit = make().fit(X[seen], y[seen])
        assert list(grown.classes_) == ["a", "b", "c"]
        np.testing.assert_allclose(grown.predict_proba(probe), refit.predict_proba(probe), atol=1e-5)


def test_rehearsal_head_is_an_estimator_that_grows_with_partial_fit():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X.astype(np.float32), y.astype(str)
    train, test = np.arange(len(y)) < 1200, np.arange(len(y)) >= 1200
    head = RehearsalHead("logreg", memory_per_class=20)
    assert clone(head).get_params()["memory_per_class"] == 20
    old = train & np.isin(y, OLD)
    head.partial_fit(X[old], y[old])  # the first call fits
    assert list(head.classes_) == OLD and len(head.memory_y_) == 100
    head.partial_fit(X[train & ~old], y[train & ~old])
    assert list(head.classes_) == OLD + NEW
    assert (head.predict(X[test]) == y[test]).mean() > 0.85


def test_herding_picks_items_whose_mean_approaches_the_class_mean_faster_than_chance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 16)) + 1.0
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    picked = herding(X, 10)
    assert len(set(picked)) == 10
    herded = np.linalg.norm(Z[picked].mean(0) - Z.mean(0))
    chance = np.median([np.linalg.norm(Z[rng.choice(200, 10, replace=False)].mean(0) - Z.mean(0)) for _ in range(50)])
    assert herded < chance / 2
    y = np.repeat(["a", "b"], [150, 50])
    kept = select_memory(X, y, 30, "random", seed=0)
    assert sorted(np.unique(y[kept], return_counts=True)[1]) == [30, 30] and (np.diff(kept) > 0).all()
    with pytest.raises(ValueError, match="herding, random"):
        select_memory(X, y, 3, "newest")


def test_a_logistic_update_starts_from_the_old_coefficients():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 5)) + np.repeat(np.eye(5)[:2] * 3, 30, axis=0)
    y = np.repeat(["a", "b"], 30)
    old = LogisticRegression(max_iter=0 + 200).fit(X, y)
    Xn = rng.normal(size=(20, 5)) + np.eye(5)[2] * 3
    grown = update_head(old, Xn, np.repeat("c", 20), X, y)
    assert list(grown.classes_) == ["a", "b", "c"] and grown.warm_start
    assert (grown.predict(X) == y).mean() > 0.9 and (grown.predict(Xn) == "c").mean() > 0.9
    assert not hasattr(old, "n_iter_") or list(old.classes_) == ["a", "b"]  # the old head is not changed


def test_memory_rows_weigh_as_the_items_of_their_class_they_stand_for():
    from pipelines.heads import class_counts, memory_weights

    y = np.array(["a"] * 5 + ["b"] * 2)
    weights = memory_weights(y, {"a": 1000, "b": 2})
    assert list(weights) == [200.0] * 5 + [1.0] * 2
    assert memory_weights(y, None) is None
    assert class_counts(["a", "b", "b"], {"a": 3}) == {"a": 4, "b": 2}


def test_the_warm_start_is_the_old_model_re_expressed_in_the_new_standardisation():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from pipelines.heads._incremental import warm_coefficients

    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 4)) * [1, 5, 0.2, 3] + [2, -1, 0, 7]
    y = np.repeat(["a", "b", "c", "d"], 20)
    old_norm = StandardScaler().fit(X[:40])
    clf = LogisticRegression(max_iter=500).fit(old_norm.transform(X[:40]), y[:40])  # a and b
    new_norm = StandardScaler().fit(X)
    coef, intercept = warm_coefficients(clf, np.array(["a", "b", "c", "d"]), 1.0, old_norm, new_norm)
    logits = new_norm.transform(X) @ coef.T + intercept
    old = clf.decision_function(old_norm.transform(X))  # binary: the second class's logit minus the first's
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], old, atol=1e-9)
    assert np.all(coef[2:] == 0) and np.all(intercept[2:] == 0)  # new classes start at zero


def test_items_learnt_before_and_given_again_are_kept_once(steps, tmp_path):
    old, _, _, _ = steps
    xfer("fit", old, "--layer", "pre_logits", "-o", tmp_path / "m.skops")
    with FeatureFile(old) as f:
        n_old, ids = len(f), sorted(f.ids)
    result = xfer("update", tmp_path / "m.skops", old, "-o", tmp_path / "again.skops")
    assert f"{n_old} items of" in result.output and "learnt before" in result.output
    with FeatureFile(memory_path(tmp_path / "again.skops")) as memory:
        assert sorted(memory.ids) == ids  # not two copies of each
    card = json.loads((tmp_path / "again.json").read_text())
    assert sum(card["memory"]["counts"].values()) == n_old  # the class counts are not doubled
