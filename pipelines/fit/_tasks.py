"""Several tasks on one feature file: one head per label column, saved as one model.

``xfer fit --label-column topic --label-column tags --label-column price`` reads each column as a
target (``pipelines._targets``: classes, multi-label or regression) and fits, on the items that
have a label for it:

- **classes**: the ``--head`` with its grid searched by cross-validation, as ``xfer fit`` does;
- **multilabel**: one logistic regression per class (one-vs-rest), C chosen by cross-validation,
  and a probability threshold per class chosen on out-of-fold probabilities to maximise that
  class's F1 (rare classes need thresholds well below 0.5). The score reported is honest: each
  fold is predicted with thresholds tuned on the other folds;
- **regression**: ridge regression on standardised features, alpha by cross-validation; R2 and
  MAE of the out-of-fold predictions.

All tasks read the same layers (one feature spec per model): given with ``--layer``, or with
``auto`` the candidate whose LogME averaged over the tasks is highest (LogME scores one-hot
classes, label sets and standardised numbers alike).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score, mean_absolute_error, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from featurizer import FeatureFile, FeaturizerError
from pipelines.fit._fit import (
    AUTO,
    FitResult,
    calibrate_head,
    candidate_layers,
    check_labels,
    cross_validate,
    end_to_end,
    read_xy,
    unknown_label_warnings,
)
from pipelines.heads import (
    CLASSES,
    MULTILABEL,
    REGRESSION,
    Target,
    join_labels,
    label_set,
    log_grid,
    logme_of_targets,
    one_standard_error,
    read_target,
    scores_of,
)
from pipelines.models import ModelCard

MULTILABEL_C = log_grid(-4, 1)
RIDGE_ALPHAS = [float(a) for a in np.logspace(5, -2, 8)]  # strongest first: the simplest model leads the grid
THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)
SCREEN_ITEMS = 2000  # items per task LogME screens layer candidates on


class MultiLabelLogistic(BaseEstimator):
    """One logistic regression per class on standardised features; a class is predicted where its
    probability reaches its threshold (``thresholds``: chosen by cross-validation, 0.5 when None).

    ``fit(X, Y)`` takes a 0/1 matrix, one column per class. A class present in every item or in
    none gets a constant probability. Learned state is arrays only (loads without running code).
    """

    def __init__(self, C: float = 1.0, thresholds=None):
        self.C = C
        self.thresholds = thresholds

    def fit(self, X: np.ndarray, Y: np.ndarray) -> MultiLabelLogistic:
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y)
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        Xs = (X - self.mean_) / self.scale_
        k = Y.shape[1]
        self.coef_, self.intercept_ = np.zeros((k, X.shape[1])), np.zeros(k)
        for j in range(k):
            positives = int(Y[:, j].sum())
            if 0 < positives < len(Y):
                clf = LogisticRegression(C=self.C, max_iter=2000).fit(Xs, Y[:, j])
                self.coef_[j], self.intercept_[j] = clf.coef_[0], clf.intercept_[0]
            else:  # constant: the smoothed frequency
                p = (positives + 0.5) / (len(Y) + 1)
                self.intercept_[j] = np.log(p / (1 - p))
        self.thresholds_ = np.full(k, 0.5) if self.thresholds is None else np.asarray(self.thresholds, dtype=float)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of each class, independently (rows need not sum to 1)."""
        z = ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) >= self.thresholds_).astype(np.int8)


class TaskHeads(BaseEstimator):
    """Fitted heads over the same features, one per task: ``tasks`` is a list of
    (name, kind, classes, head). ``predict`` gives one column per task: a class, labels joined by
    ``|``, or a number. Like scikit-learn's ``FrozenEstimator``, ``fit`` does not refit the heads
    (each was fitted and cross-validated on the items labelled for its task)."""

    def __init__(self, tasks=()):
        self.tasks = tasks

    def fit(self, X: np.ndarray, y=None) -> TaskHeads:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    @property
    def names_(self) -> list[str]:
        return [task[0] for task in self.tasks]

    def predict_tasks(self, X: np.ndarray) -> dict[str, dict]:
        """Per task: ``predicted`` (classes, 0/1 matrix over ``classes``, or numbers) and ``scores``
        (class probabilities; None for regression)."""

        out = {}
        for name, kind, classes, head in self.tasks:
            if kind == REGRESSION:
                out[name] = {"predicted": np.asarray(head.predict(X), dtype=np.float64), "scores": None}
            elif kind == MULTILABEL:
                out[name] = {"predicted": head.predict(X), "scores": head.predict_proba(X)}
            else:
                scores = scores_of(head, X)
                out[name] = {"predicted": np.asarray(classes, dtype=object)[scores.argmax(axis=1)], "scores": scores}
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Items x tasks: each task's prediction as a cell (class, labels joined by ``|``, number)."""
        found = self.predict_tasks(X)
        columns = []
        for name, kind, classes, _ in self.tasks:
            predicted = found[name]["predicted"]
            if kind == MULTILABEL:
                predicted = [join_labels([c for c, on in zip(classes, row) if on]) for row in predicted]
            columns.append(np.asarray(predicted, dtype=object))
        return np.stack(columns, axis=1)


@dataclass
class TaskRow:
    """What cross-validation found for one task: its kind, head, parameters and scores."""

    name: str
    kind: str
    head: str
    params: dict
    scores: dict  # classes: accuracy; multilabel: micro_f1, macro_f1; regression: r2, mae
    n: int
    classes: list[str] = field(default_factory=list)


def read_targets(
    features: FeatureFile, columns: tuple[str, ...], kinds: dict[str, str] | None = None
) -> tuple[list[Target], list[str]]:
    """The targets of ``columns`` of a feature file (its labels when none is named), and notes."""
    kinds = kinds or {}
    unknown = sorted(set(kinds) - set(columns or ("label",)))
    if unknown:
        raise FeaturizerError(f"--label-kind names {', '.join(map(repr, unknown))}, which no --label-column names")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise FeaturizerError(f"--label-column {repeated[0]!r} is given twice")
    ids = features.ids
    if not columns:
        labels = features.labels
        if labels is None:
            return [], []
        target, notes = read_target("label", labels, ids, kinds.get("label"))
        return [target], notes
    targets, notes = [], []
    for name in columns:
        target, said = read_target(name, features.column(name), ids, kinds.get(name))
        targets.append(target)
        notes += said
    return targets, notes


def choose_task_layers(features: FeatureFile, targets: list[Target], layer, seed: int = 0) -> tuple[tuple, dict]:
    """The layers every task reads, and the LogME (mean over tasks) of each candidate when ``auto`` chose."""

    candidates = candidate_layers(features, layer)
    if len(candidates) == 1:
        return candidates[0], {}
    rng = np.random.default_rng(seed)
    scores = {}
    for layers in candidates:
        X, _ = read_xy(features, layers)
        per_task = []
        for target in targets:
            rows = np.flatnonzero(target.known)
            keep = np.sort(rng.permutation(len(rows))[:SCREEN_ITEMS])
            per_task.append(logme_of_targets(X[rows[keep]], _target_matrix(target)[keep]))
        scores[layers] = float(np.mean(per_task))
    return max(candidates, key=lambda c: scores[c]), scores


def _target_matrix(target: Target) -> np.ndarray:
    y = target.y()
    if target.kind == REGRESSION:
        return ((y - y.mean()) / (y.std() or 1.0))[:, None]
    if target.kind == MULTILABEL:
        return y
    return (y[:, None] == np.asarray(target.classes)[None, :]).astype(float)


def fit_tasks(
    train: str | os.PathLike,
    targets: list[Target],
    head: str = "logreg",
    layer=None,
    *,
    normalise: str | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    calibrate: bool = True,
    notes: list[str] | None = None,
):
    """One head per target on the same layers of ``train``, as one end-to-end model and its card."""

    with FeatureFile(train) as features:
        spec = features.spec
        layers, screened = choose_task_layers(features, targets, AUTO if layer is None else layer, seed)
        X, _ = read_xy(features, layers)
    rows, tasks = [], []
    for target in targets:
        Xt = X[target.known]
        row, fitted = fit_task(target, Xt, head, normalise, seed, n_jobs, calibrate)
        rows.append(row)
        tasks.append((target.name, target.kind, list(target.classes), fitted))
    model = end_to_end(spec.select(layers), TaskHeads(tasks).fit(X))
    card = ModelCard(
        spec=spec.select(layers),
        classes=[],
        head="tasks",
        params={"normalise": normalise or "default"},
        cv=[{"layers": "+".join(c), "logme": s} for c, s in screened.items()],
        cv_score=None,
        train=str(os.path.abspath(train)),
        tasks=[row.__dict__ for row in rows],
    )
    return FitResult(model, card, warnings=list(notes or []))


def fit_task(target: Target, X: np.ndarray, head: str, normalise, seed: int, n_jobs, calibrate: bool):
    """(TaskRow, fitted head) of one target on the rows that have its labels."""
    y = target.y()
    if target.kind == REGRESSION:
        return fit_regression(target, X, y, seed)
    if target.kind == MULTILABEL:
        return fit_multilabel(target, X, y, seed)

    check_labels(y, f"column {target.name!r}")
    searched = cross_validate(X, y, head, normalise, seed, n_jobs)
    if calibrate:
        calibrate_head(searched)
    scores = {"accuracy": searched.mean, "accuracy_std": searched.std}
    return TaskRow(target.name, CLASSES, head, searched.params, scores, len(y), list(target.classes)), searched.model


def _folds(n: int, seed: int) -> KFold:
    if n < 4:
        raise FeaturizerError(f"{n} labelled items are too few to fit and check a head: label at least 4")
    return KFold(n_splits=min(5, n // 2), shuffle=True, random_state=seed)


def fit_regression(target: Target, X: np.ndarray, y: np.ndarray, seed: int):
    """Ridge on standardised features, alpha by cross-validated R2 (one-standard-error rule)."""
    folds = _folds(len(y), seed)
    estimator = Pipeline([("norm", StandardScaler()), ("reg", Ridge())])
    search = GridSearchCV(estimator, {"reg__alpha": RIDGE_ALPHAS}, cv=folds, scoring="r2", refit=one_standard_error)
    search.fit(X, y)
    alpha = search.best_params_["reg__alpha"]
    predicted = cross_val_predict(clone(estimator).set_params(reg__alpha=alpha), X, y, cv=folds)
    scores = {"r2": float(r2_score(y, predicted)), "mae": float(mean_absolute_error(y, predicted))}
    return TaskRow(target.name, REGRESSION, "ridge", {"alpha": alpha}, scores, len(y)), search.best_estimator_


def fit_multilabel(target: Target, X: np.ndarray, Y: np.ndarray, seed: int):
    """One-vs-rest logistic regression: C by cross-validated micro-F1, then a threshold per class."""
    folds = list(_folds(len(Y), seed).split(X))
    best = None
    for C in MULTILABEL_C:
        proba = np.zeros(Y.shape)
        for train, test in folds:
            proba[test] = MultiLabelLogistic(C).fit(X[train], Y[train]).predict_proba(X[test])
        predicted = np.zeros_like(Y)
        for train, test in folds:  # each fold judged with thresholds tuned on the others
            predicted[test] = proba[test] >= best_thresholds(proba[train], Y[train])
        micro = float(f1_score(Y, predicted, average="micro", zero_division=0))
        if best is None or micro > best[1] + 1e-9:
            best = (C, micro, predicted, proba)
    C, micro, predicted, proba = best
    thresholds = best_thresholds(proba, Y)
    model = MultiLabelLogistic(C, thresholds.tolist()).fit(X, Y)
    scores = {
        "micro_f1": micro,
        "macro_f1": float(f1_score(Y, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float((predicted == Y).all(axis=1).mean()),
    }
    params = {"C": C, "thresholds": dict(zip(target.classes, map(float, thresholds)))}
    return TaskRow(target.name, MULTILABEL, "one-vs-rest logreg", params, scores, len(Y), list(target.classes)), model


def best_thresholds(proba: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per class, the threshold of ``THRESHOLDS`` with the best F1 on (proba, Y); ties go to the
    one nearest 0.5, and a class with no positive item keeps 0.5."""
    chosen = np.full(Y.shape[1], 0.5)
    order = np.argsort(np.abs(THRESHOLDS - 0.5), kind="stable")  # nearest 0.5 first wins ties
    for j in range(Y.shape[1]):
        truth = Y[:, j].astype(bool)
        if not truth.any():
            continue
        said = proba[:, j][None, :] >= THRESHOLDS[order][:, None]
        tp = (said & truth).sum(axis=1)
        f1 = 2 * tp / np.maximum(said.sum(axis=1) + truth.sum(), 1)
        chosen[j] = THRESHOLDS[order][int(np.argmax(f1))]
    return chosen


# --- Using a multi-task model -------------------------------------------------------------


def task_cells(name: str, columns: dict[str, list[str]], labels: list[str] | None) -> list[str] | None:
    """The cells of task ``name`` in test data: its column, or the file's labels for a task fitted on them."""
    if name in columns:
        return columns[name]
    return labels if name == "label" else None


def task_prediction_rows(heads: TaskHeads, X: np.ndarray, ids: list[str]) -> tuple[list[str], list[list]]:
    """CSV header and rows: id, then per task its prediction and probabilities (classes: of the
    predicted class; label sets: of every class)."""
    found = heads.predict_tasks(X)
    header, columns = ["id"], []
    for name, kind, classes, _ in heads.tasks:
        predicted, scores = found[name]["predicted"], found[name]["scores"]
        if kind == REGRESSION:
            header.append(name)
            columns.append([f"{v:.6g}" for v in predicted])
        elif kind == MULTILABEL:
            header += [name, *(f"{name}_p_{c}" for c in classes)]
            columns.append([join_labels([c for c, on in zip(classes, row) if on]) for row in predicted])
            columns += [[f"{p:.6f}" for p in scores[:, j]] for j in range(len(classes))]
        else:
            header += [name, f"{name}_p"]
            columns += [list(predicted), [f"{p:.6f}" for p in scores.max(axis=1)]]
    return header, [[i, *cells] for i, *cells in zip(ids, *columns)]


def evaluate_tasks(heads: TaskHeads, X: np.ndarray, ids: list[str], columns: dict, labels) -> dict:
    """Per task, on the test items labelled for it: accuracy and macro-F1 (classes), micro- and
    macro-F1 and subset accuracy (label sets), R2 and MAE (numbers); warnings for what was not scored."""
    from sklearn.metrics import accuracy_score

    found = heads.predict_tasks(X)
    report, warnings = {}, []
    for name, kind, classes, _ in heads.tasks:
        cells = task_cells(name, columns, labels)
        if cells is None or all(c == "" for c in cells):
            warnings.append(f"the test data has no labels for task {name!r}: not scored")
            continue
        target, _ = read_target(name, cells, ids, kind)
        known, predicted = target.known, found[name]["predicted"]
        if kind == REGRESSION:
            y = target.y()
            report[name] = {
                "kind": kind,
                "n": int(len(y)),
                "r2": float(r2_score(y, predicted[known])) if len(y) > 1 else float("nan"),
                "mae": float(mean_absolute_error(y, predicted[known])),
            }
            continue
        if kind == MULTILABEL:
            unseen = sorted(set(_all_labels(target)) - set(classes))
            if unseen:
                warnings.append(
                    f"task {name!r}: test labels the model never saw ({', '.join(unseen[:5])}) count as misses"
                )
            Y, P = (
                _with_unseen(target, classes, unseen),
                np.hstack([predicted[known], np.zeros((known.sum(), len(unseen)), np.int8)]),
            )
            report[name] = {
                "kind": kind,
                "n": int(len(Y)),
                "micro_f1": float(f1_score(Y, P, average="micro", zero_division=0)),
                "macro_f1": float(f1_score(Y, P, average="macro", zero_division=0)),
                "subset_accuracy": float((Y == P).all(axis=1).mean()),
                "per_class_f1": {
                    c: float(f1_score(Y[:, j], P[:, j], zero_division=0)) for j, c in enumerate([*classes, *unseen])
                },
            }
            continue
        y = target.y()

        warnings += [f"task {name!r}: {w}" for w in unknown_label_warnings(y, classes, "the model")]
        guess = np.asarray(predicted[known]).astype(str)
        labels_all = sorted(set(classes) | set(y))
        report[name] = {
            "kind": kind,
            "n": int(len(y)),
            "accuracy": float(accuracy_score(y, guess)),
            "macro_f1": float(f1_score(y, guess, labels=labels_all, average="macro", zero_division=0)),
        }
    if not report:
        raise FeaturizerError(
            f"the test data has labels for none of the model's tasks ({', '.join(heads.names_)}); "
            "featurize a table with these columns"
        )
    return {"tasks": report, "warnings": warnings, "n": int(len(X))}


def _all_labels(target: Target) -> list[str]:

    return [label for cell in target.cells if cell for label in label_set(cell, target.name)]


def _with_unseen(target: Target, classes: list[str], unseen: list[str]) -> np.ndarray:
    from dataclasses import replace

    return replace(target, classes=(*classes, *unseen)).y()
