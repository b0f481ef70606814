"""The heads on real embeddings, and the FAISS classifiers' estimator contract."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from featurizer import FeatureFile
from pipelines import HEADS, KNNClassifier, PrototypeClassifier, fit, make_cv, read_xy


@pytest.fixture(scope="module")
def digits_xy(digit_features):
    train, test, _ = digit_features
    with FeatureFile(train) as tr, FeatureFile(test) as te:
        return (*read_xy(tr, ("pre_logits",)), *read_xy(te, ("pre_logits",)))


@parametrize_with_checks([PrototypeClassifier(), KNNClassifier(), PrototypeClassifier(metric="l2", center=False)])
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("head", list(HEADS))
def test_every_head_learns_digits_from_real_embeddings_and_loads_back_without_trust(
    digit_features, digits_xy, head, tmp_path
):
    from pipelines import load_model, save_model

    _, _, X_test, y_test = digits_xy
    result = fit(digit_features[0], head, "pre_logits")
    assert result.card.classes == [str(d) for d in range(10)]
    assert 0.4 < result.card.cv_score <= 1.0  # chance is 0.1; ImageNet features, 8 training scans per digit
    assert result.model.named_steps["head"].score(X_test, y_test) > 0.4
    loaded, _ = load_model(save_model(result.model, result.card, tmp_path / "m.skops"))
    head = result.model.named_steps["head"]
    np.testing.assert_array_equal(loaded.named_steps["head"].predict(X_test), head.predict(X_test))


def test_layer_auto_screens_each_layer_and_their_concatenation_and_cross_validates_the_best(digit_features):
    """Three candidates: LogME screens all of them and the best two by LogME are cross-validated."""
    from pipelines.fit._fit import AUTO_FULL_CV

    result = fit(digit_features[0], "prototype", "auto")
    assert [row.name for row in result.table] == ["pre_logits", "blocks.6", "pre_logits+blocks.6"]
    assert all(row.logme is not None for row in result.table)
    tried = [row for row in result.table if row.mean == row.mean]
    by_logme = sorted(result.table, key=lambda r: -r.logme)
    assert len(tried) == AUTO_FULL_CV and {r.name for r in tried} == {r.name for r in by_logme[:AUTO_FULL_CV]}
    best = max(tried, key=lambda r: r.mean)
    assert result.card.cv_score == best.mean and result.card.spec.layers == best.layers
    assert [c["logme"] for c in result.card.cv] == [r.logme for r in result.table]


def test_prototypes_are_class_means(digits_xy):
    X, y, _, _ = digits_xy
    model = PrototypeClassifier(metric="l2", center=False).fit(X, y)
    for c, proto in zip(model.classes_, model.prototypes_):
        np.testing.assert_allclose(proto, X[y == c].mean(axis=0), rtol=1e-5, atol=1e-5)


def test_predictions_do_not_depend_on_the_order_of_training_rows(digits_xy):
    X, y, X_test, _ = digits_xy
    order = np.random.default_rng(0).permutation(len(y))
    for model in (PrototypeClassifier(), KNNClassifier(n_neighbors=3)):
        a = clone(model).fit(X, y).predict_proba(X_test)
        b = clone(model).fit(X[order], y[order]).predict_proba(X_test)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_probabilities_indexes_and_pickling(digits_xy):
    X, y, X_test, _ = digits_xy
    exact = PrototypeClassifier(n_prototypes=2).fit(X, y)
    proba = exact.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (exact.classes_[proba.argmax(1)] == exact.predict(X_test)).all()
    assert len(exact.prototypes_) == 20
    for index in ("ivf", "hnsw"):
        approx = PrototypeClassifier(n_prototypes=2, index=index).fit(X, y)
        assert (approx.predict(X_test) == exact.predict(X_test)).mean() > 0.9
    restored = pickle.loads(pickle.dumps(exact))
    np.testing.assert_array_equal(restored.predict_proba(X_test), proba)
    sharper = clone(exact).set_params(temperature=0.01).fit(X, y).predict_proba(X_test)
    assert sharper.max(axis=1).mean() > proba.max(axis=1).mean()


def test_folds_work_with_one_or_two_examples_in_a_class():
    y = np.array(["a"] * 10 + ["b"] * 10 + ["rare"] * 1)
    cv = make_cv(y)
    folds = list(cv.split(np.zeros((len(y), 1)), y))
    assert cv.get_n_splits() >= 2 and all(len(test) for _, test in folds)
    X = np.random.default_rng(0).normal(size=(len(y), 4)) + (y == "a")[:, None] * 3
    model = KNNClassifier(n_neighbors=1).fit(X, y)
    assert set(model.classes_) == {"a", "b", "rare"}


def test_the_warm_path_search_chooses_as_grid_search_does():
    """The fast path (one normalisation per fold, C walked upwards from the last solution, folds in
    parallel) picks the same C as scikit-learn's GridSearchCV with the same folds and rule."""
    from unittest import mock

    from sklearn.datasets import load_digits

    from pipelines import _fit

    X, y = load_digits(return_X_y=True)
    X, y = X[:400].astype(np.float32), y[:400].astype(str)
    fast = _fit.cross_validate(X, y, "logreg")
    with mock.patch.object(_fit, "_warm_startable", lambda *a: False):
        slow = _fit.cross_validate(X, y, "logreg")
    assert fast.params == slow.params  # the chosen C
    assert abs(fast.mean - slow.mean) < 0.005  # mean CV accuracy: converged solutions agree
    np.testing.assert_array_equal(fast.model.predict(X), slow.model.predict(X))


def test_saving_a_model_does_not_import_pytorch_and_leaves_scikit_learn_whole(tmp_path):
    """skops' import walks scikit-learn's packages; the walk must not pull in PyTorch (about 2 s of
    every ``xfer fit``), and the array-API shim it skips must still import afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from pipelines.models._saved import _skops_io\n"
        "sio = _skops_io()\n"
        f"sio.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), {str(tmp_path / 'm.skops')!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import sklearn.externals.array_api_compat.torch\n"
        "assert 'torch' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_cli_offers_every_head():
    """fit and fewshot take their --head choices from the library's table: a new head is one entry."""
    from commands import load_command

    for name in ("fit", "fewshot"):
        (head,) = [p for p in load_command(name).params if p.name in ("head", "heads")]
        assert list(head.type.choices) == list(HEADS), name
