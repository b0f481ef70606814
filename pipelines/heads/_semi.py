"""Semi-supervised heads: a few labelled vectors and a pool of unlabelled ones.

Both wrap any head (a scikit-learn classifier) and follow scikit-learn's convention for the pool:
rows of ``X`` whose label is ``UNLABELLED`` (-1 for numeric labels, "" for text labels).

- ``SelfTraining`` fits the head, labels the pool items it is surest of, and fits again. Each round
  adds at most the same number of items to every class (the ``share`` of the pool over the number
  of classes), each above ``threshold`` in the head's probability, so a majority class cannot
  swallow the pool.
- ``PoolSubspace`` fits the head in the pool's principal subspace: the top ``PCA_PER_CLASS``
  principal directions per class of the labelled and pool vectors together, scaled to unit total
  variance and not standardised, so the head's L2 penalty favours the directions along which the
  pool varies most. With few labels this is most of the gain on sentence vectors (TREC, AG News),
  where the nearest neighbours the other two methods trust follow topic (BENCHMARKS.md).
- ``LabelSpreading`` spreads the labels over a k-nearest-neighbour graph of the unit-length
  vectors (Zhou et al. 2004), exact inner products through FAISS when it is installed and the
  data is large, NumPy otherwise, then fits the head on every item with its spread label.

``choose_semi`` picks among none / pca / self-training / spreading by cross-validation on the labelled
part with the pool added to each training fold: test labels are never seen, and the plain head is
kept unless a method beats it beyond noise (``pipelines.heads._choice``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from pipelines.heads._choice import beats_plain
from pipelines.heads._heads import plain_head_like
from pipelines.heads._linalg import affine_map

SEMI_METHODS = ("auto", "pca", "self-training", "spreading", "none")
PCA_PER_CLASS = 3  # principal directions per class (2, 3, 4 and 8 measured: 3 best on TREC, AG News, flowers12)
FAISS_GRAPH_FROM = 4000  # items: beyond this the kNN graph is searched with FAISS (when installed)


def unlabelled_mask(y) -> np.ndarray:
    """Which labels mark pool items: -1 (numeric labels) or "" (text labels)."""
    y = np.asarray(y)
    return y == "" if y.dtype.kind in "USO" else y == -1


def stack_pool(X, y, X_pool) -> tuple[np.ndarray, np.ndarray]:
    """The labelled rows, then the pool's, with the pool marked unlabelled in ``y``'s own kind of label."""
    y = np.asarray(y)
    marker = "" if y.dtype.kind in "USO" else -1
    dtype = object if y.dtype.kind == "O" else y.dtype
    return np.concatenate([X, X_pool]), np.concatenate([y, np.full(len(X_pool), marker, dtype=dtype)])


def _default_head():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


class _SemiHead(ClassifierMixin, BaseEstimator):
    """What both semi-supervised heads share: reading (X, y with the pool marked), and predicting
    with ``estimator_``, the head fitted on the labelled items and the pool's new labels."""

    def _split(self, X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
        """(X, y, pool mask, the head to clone), the labelled part checked."""
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
        pool = unlabelled_mask(y)
        if len(np.unique(y[~pool])) < 2:
            raise ValueError("semi-supervised heads need labelled items of at least two classes")
        return X, y, pool, _default_head() if self.estimator is None else self.estimator

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(np.asarray(X, dtype=np.float32))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(np.asarray(X, dtype=np.float32))


class SelfTraining(_SemiHead):
    """Class-balanced self-training over ``estimator`` (default: standardised logistic regression).

    Parameters
    ----------
    estimator : classifier with ``predict_proba``, or None
    threshold : float
        The least probability at which a pool item is given the head's label.
    share : float
        Per round, at most ``share`` of the pool is labelled, split evenly over the classes.
    max_iter : int
        Rounds of labelling and refitting.

    Attributes
    ----------
    estimator_ : the head fitted on the labelled items and the pool items it labelled
    classes_ : the classes
    pseudo_labels_ : array of the pool's labels (``UNLABELLED`` where none was given), in pool order
    n_iter_ : rounds run
    """

    def __init__(self, estimator=None, *, threshold: float = 0.7, share: float = 0.2, max_iter: int = 5):
        self.estimator = estimator
        self.threshold = threshold
        self.share = share
        self.max_iter = max_iter

    def fit(self, X, y) -> SelfTraining:
        X, y, pool, base = self._split(X, y)
        labels = y.copy()
        self.classes_ = np.unique(y[~pool])
        quota = max(1, math.ceil(self.share * pool.sum() / len(self.classes_)))
        head = clone(base).fit(X[~pool], y[~pool])
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            left = np.flatnonzero(unlabelled_mask(labels))
            if not len(left):
                break
            proba = head.predict_proba(X[left])
            guess, sure = proba.argmax(axis=1), proba.max(axis=1)
            chosen = []
            for k in range(len(head.classes_)):
                mine = np.flatnonzero((guess == k) & (sure >= self.threshold))
                chosen.append(mine[np.argsort(-sure[mine], kind="stable")[:quota]])
            chosen = np.concatenate(chosen)
            if not len(chosen):
                break
            labels[left[chosen]] = head.classes_[guess[chosen]]
            known = ~unlabelled_mask(labels)
            head = clone(base).fit(X[known], labels[known])
            self.n_iter_ += 1
        self.estimator_ = head
        self.pseudo_labels_ = labels[pool]
        return self


class LabelSpreading(_SemiHead):
    """Labels spread over a kNN graph of the vectors, then ``estimator`` fitted on every item.

    Parameters
    ----------
    estimator : classifier, or None (standardised logistic regression)
    n_neighbors : int
        Neighbours per item in the graph (cosine similarity of unit-length vectors).
    alpha : float
        How much of an item's label comes from its neighbours (the rest from its own given label).
    max_iter : int
        Spreading steps.

    Attributes
    ----------
    estimator_, classes_, pseudo_labels_ (the pool's spread labels), label_distributions_ (pool rows)
    """

    def __init__(self, estimator=None, *, n_neighbors: int = 10, alpha: float = 0.9, max_iter: int = 30):
        self.estimator = estimator
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.max_iter = max_iter

    def fit(self, X, y) -> LabelSpreading:
        X, y, pool, base = self._split(X, y)
        self.classes_, index = np.unique(y[~pool], return_inverse=True)
        Y = np.zeros((len(X), len(self.classes_)), dtype=np.float32)
        Y[np.flatnonzero(~pool), index] = 1.0
        S = _normalised_graph(X, self.n_neighbors)
        F = Y.copy()
        for _ in range(self.max_iter):
            F = self.alpha * (S @ F) + (1 - self.alpha) * Y
        F = F / np.maximum(F.sum(axis=1, keepdims=True), 1e-12)
        labels = y.copy()
        reached = F[pool].max(axis=1) > 0  # items with no path to a label keep none
        labels[np.flatnonzero(pool)[reached]] = self.classes_[F[pool][reached].argmax(axis=1)]
        known = ~unlabelled_mask(labels)
        self.estimator_ = clone(base).fit(X[known], labels[known])
        self.pseudo_labels_ = labels[pool]
        self.label_distributions_ = F[pool]
        return self


class PoolSubspace(_SemiHead):
    """The head fitted on the labelled items in the principal subspace of every item, pool included.

    The subspace is spanned by the top ``per_class`` x classes principal directions of the labelled
    and pool vectors together, its coordinates scaled to unit total variance; ``estimator`` (default:
    logistic regression, C=1, no normalisation) sees those coordinates as they are: standardising
    them would undo what the pool says about which directions matter.

    Attributes
    ----------
    estimator_ : ``Pipeline`` of the projection (an ``AffineMap``) and the fitted head: it takes the
        original vectors, so it is saved and used as any head
    classes_ : the classes
    n_components_ : the subspace's dimension
    """

    def __init__(self, estimator=None, *, per_class: int = PCA_PER_CLASS):
        self.estimator = estimator
        self.per_class = per_class

    def fit(self, X, y) -> PoolSubspace:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression

        X, y, pool, _ = self._split(X, y)
        self.classes_ = np.unique(y[~pool])
        self.n_components_ = max(1, min(self.per_class * len(self.classes_), len(X) - 1, X.shape[1]))
        pca = PCA(self.n_components_, random_state=0).fit(X)
        scale = math.sqrt(max(float(pca.explained_variance_.sum()), 1e-12))
        matrix = pca.components_.T / scale
        projection = affine_map("pool-pca", matrix, -pca.mean_ @ matrix)
        base = LogisticRegression(max_iter=2000) if self.estimator is None else self.estimator
        head = clone(base).fit(projection.transform(X[~pool]), y[~pool])
        self.estimator_ = Pipeline([("pool_pca", projection), ("head", head)])
        return self


def _neighbours(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices) of each row's ``k`` nearest other rows by cosine similarity."""
    U = np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12), dtype=np.float32)
    k = min(k, len(U) - 1)
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None and len(U) >= FAISS_GRAPH_FROM:
        index = faiss.IndexFlatIP(U.shape[1])
        index.add(U)
        sims, ids = index.search(U, k + 1)
    else:
        G = U @ U.T
        ids = np.argsort(-G, axis=1, kind="stable")[:, : k + 1]
        sims = np.take_along_axis(G, ids, axis=1)
    keep = ids != np.arange(len(U))[:, None]  # each row's own entry goes
    rows = [i[m][:k] for i, m in zip(ids, keep)]
    vals = [s[m][:k] for s, m in zip(sims, keep)]
    return np.asarray(vals, dtype=np.float32), np.asarray(rows)


def _normalised_graph(X: np.ndarray, k: int):
    """D^-1/2 W D^-1/2 of the symmetric kNN graph, W weighted by (positive) cosine similarity."""
    from scipy import sparse

    sims, ids = _neighbours(X, k)
    n = len(X)
    W = sparse.csr_matrix(
        (np.clip(sims, 0, None).ravel(), (np.repeat(np.arange(n), ids.shape[1]), ids.ravel())), (n, n)
    )
    W = W.maximum(W.T)
    d = np.asarray(W.sum(axis=1)).ravel()
    inv = sparse.diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    return (inv @ W @ inv).tocsr()


@dataclass(frozen=True)
class SemiChoice:
    """What ``choose_semi`` measured and kept."""

    method: str
    scores: dict[str, tuple[float, float]]  # method: (accuracy, standard error) on the held-out labelled items
    reason: str


def semi_estimator(method: str, head):
    """The semi-supervised estimator of ``method`` over ``head``. ``pca`` takes the same kind of head
    without its normalisation and with the head table's default hyperparameters (``plain_head_like``):
    what cross-validation chose for standardised features does not carry over to the subspace."""
    if method == "pca":
        return PoolSubspace(plain_head_like(head))
    if method == "self-training":
        return SelfTraining(head)
    if method == "spreading":
        return LabelSpreading(head)
    raise ValueError(f"semi must be one of {', '.join(SEMI_METHODS)}, not {method!r}")


def choose_semi(X, y, X_pool, head, method: str = "auto", seed: int = 0, folds: int = 5) -> SemiChoice:
    """Score the plain ``head`` and each semi-supervised method by stratified cross-validation on the
    labelled ``X, y`` with ``X_pool`` added (unlabelled) to every training fold; keep the best if it
    beats the plain head beyond noise (``beats_plain``: paired per-item differences on the held-out
    items), else the plain head. A fixed ``method`` is scored beside the plain head and kept as asked."""
    from sklearn.model_selection import StratifiedKFold

    if method not in SEMI_METHODS:
        raise ValueError(f"semi must be one of {', '.join(SEMI_METHODS)}, not {method!r}")
    y = np.asarray(y)
    smallest = int(np.unique(y, return_counts=True)[1].min())
    methods = ["none", "pca", "self-training", "spreading"] if method == "auto" else ["none", method]
    methods = list(dict.fromkeys(methods))
    if smallest < 2:
        return SemiChoice(method if method != "auto" else "none", {}, "a class has one labelled item: nothing to score")
    splits = StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed).split(X, y)
    right = {m: np.zeros(len(y)) for m in methods}  # per labelled item: 1 where its held-out prediction is right
    for train, test in splits:
        for m in methods:
            if m == "none":
                model = clone(head).fit(X[train], y[train])
            else:
                model = semi_estimator(m, head).fit(*stack_pool(X[train], y[train], X_pool))
            right[m][test] = model.predict(X[test]) == y[test]
    scores = {m: (float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r)))) for m, r in right.items()}
    if method != "auto":
        return SemiChoice(method, scores, "as asked")
    best = max(methods[1:], key=lambda m: scores[m][0])
    verdict = beats_plain(right[best], right["none"])
    if verdict.kept:
        reason = f"{best} beats the plain head by {verdict.gain:+.3f} (noise {verdict.noise:.3f})"
        return SemiChoice(best, scores, reason)
    return SemiChoice("none", scores, f"no method beats the plain head beyond noise (best {best} {verdict.gain:+.3f})")
