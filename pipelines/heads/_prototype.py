"""Few-shot heads on FAISS: nearest prototype (SimpleShot) and k nearest neighbours.

Both are scikit-learn classifiers. Features are optionally centred on the training mean and
L2-normalised (SimpleShot, Wang et al. 2019), which makes Euclidean and cosine distances agree
and is what makes nearest-centroid classification strong on frozen features.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

METRICS = ("cosine", "l2")
INDEXES = ("flat", "ivf", "hnsw")


def _faiss():
    import faiss

    return faiss


class _FaissHead(ClassifierMixin, BaseEstimator):
    """Shared machinery: feature normalisation and a FAISS index over reference vectors."""

    def _check_params(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.index not in INDEXES:
            raise ValueError(f"index must be one of {INDEXES}, got {self.index!r}")

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if self.center:
            X = X - self.mean_
        if self.center or self.metric == "cosine":
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(X, dtype=np.float32)

    def _build_index(self, vectors: np.ndarray):
        faiss = _faiss()
        d = vectors.shape[1]
        inner = self.metric == "cosine"
        if self.index == "hnsw":
            index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2)
        elif self.index == "ivf":
            quantizer = faiss.IndexFlatIP(d) if inner else faiss.IndexFlatL2(d)
            nlist = max(1, min(int(np.sqrt(len(vectors))), len(vectors) // 39 or 1))
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2)
            index.train(vectors)
            index.nprobe = min(nlist, 8)
        else:
            index = faiss.IndexFlatIP(d) if inner else faiss.IndexFlatL2(d)
        index.add(vectors)
        return index

    def _search(self, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances (smaller is closer) and ids of the ``k`` nearest reference vectors."""
        scores, ids = self._index.search(self._prepare(X), min(k, self._index.ntotal))
        distances = 1.0 - scores if self.metric == "cosine" else scores  # cosine distance or squared L2
        return distances, ids

    def _fit_common(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(X.shape[1], dtype=np.float32)
        return self._prepare(X), y_idx

    def __getstate__(self):  # a FAISS index does not pickle: it is rebuilt from the vectors on load
        state = self.__dict__.copy()
        state.pop("_index", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if hasattr(self, "classes_"):
            self._index = self._build_index(self._reference())

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class PrototypeClassifier(_FaissHead):
    """Nearest-prototype classifier: each class is one mean vector, or ``n_prototypes`` k-means centres.

    Parameters
    ----------
    metric : {"cosine", "l2"}
        Distance between a vector and the prototypes.
    center : bool
        Subtract the training mean, then L2-normalise (SimpleShot).
    n_prototypes : int
        Prototypes per class (k-means through FAISS when more than one; capped by the class size).
    temperature : float
        Softmax temperature of ``predict_proba`` over negative distances.
    index : {"flat", "ivf", "hnsw"}
        Exact search, or an approximate index for very many prototypes.
    random_state : int
        Seed of the k-means initialisation.

    Attributes
    ----------
    classes_, prototypes_, prototype_labels_, mean_, n_features_in_
    """

    def __init__(self, *, metric="cosine", center=True, n_prototypes=1, temperature=0.05, index="flat", random_state=0):
        # scikit-learn's estimator contract: every argument stored untouched (get_params reads them back).
        self.metric = metric
        self.center = center
        self.n_prototypes = n_prototypes
        self.temperature = temperature
        self.index = index
        self.random_state = random_state

    def fit(self, X, y) -> PrototypeClassifier:
        if not isinstance(self.n_prototypes, numbers.Integral) or self.n_prototypes < 1:
            raise ValueError(f"n_prototypes must be a positive integer, got {self.n_prototypes!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature!r}")
        X, y_idx = self._fit_common(X, y)
        prototypes, labels, counts = [], [], []
        for c in range(len(self.classes_)):
            centres, sizes = self._class_prototypes(X[y_idx == c])
            prototypes.append(centres)
            labels.extend([c] * len(centres))
            counts.extend(sizes)
        self.prototypes_ = np.ascontiguousarray(np.concatenate(prototypes), dtype=np.float32)
        self.prototype_labels_ = np.asarray(labels)
        self.prototype_counts_ = np.asarray(counts, dtype=np.int64)
        self._index = self._build_index(self._reference())
        return self

    def _class_prototypes(self, members: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """One class's prototypes (its mean, or k-means centres) and how many members each stands for."""
        k = min(int(self.n_prototypes), len(members))
        if k == 1:
            return members.mean(axis=0, keepdims=True), [len(members)]
        kmeans = _faiss().Kmeans(
            members.shape[1], k, niter=25, seed=int(self.random_state), verbose=False, min_points_per_centroid=1
        )
        kmeans.train(np.ascontiguousarray(members))
        nearest = kmeans.index.search(np.ascontiguousarray(members), 1)[1][:, 0]
        return kmeans.centroids, np.bincount(nearest, minlength=k).tolist()

    def partial_fit(self, X, y, classes=None) -> PrototypeClassifier:
        """Learn more items in place: a new class gets its own prototypes; an item of a known class
        moves its nearest prototype of that class (a running mean over the items it stands for).
        The centring mean stays as fitted; the first call fits. ``classes`` (scikit-learn's
        argument) is not needed: a class is learnt when its first items come."""
        if not hasattr(self, "classes_"):
            return self.fit(X, y)
        counts = getattr(self, "prototype_counts_", None)
        if counts is None:
            raise ValueError("this prototype head was fitted before it kept prototype counts: refit it")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        y = np.asarray(y)
        classes = np.union1d(self.classes_, y)
        labels = np.searchsorted(classes, self.classes_)[self.prototype_labels_]
        prototypes, counts = self.prototypes_.astype(np.float64), counts.copy()
        Z = self._prepare(X)
        added, added_labels, added_counts = [], [], []
        for label in np.unique(y):
            c = int(np.searchsorted(classes, label))
            members = Z[y == label]
            own = np.flatnonzero(labels == c)
            if not len(own):
                centres, sizes = self._class_prototypes(members)
                added.append(centres)
                added_labels.extend([c] * len(centres))
                added_counts.extend(sizes)
                continue
            gaps = ((members[:, None, :] - prototypes[own][None]) ** 2).sum(axis=2)
            nearest = own[np.argmin(gaps, axis=1)]
            for p in np.unique(nearest):
                chosen = members[nearest == p]
                prototypes[p] = (prototypes[p] * counts[p] + chosen.sum(axis=0)) / (counts[p] + len(chosen))
                counts[p] += len(chosen)
        self.prototypes_ = np.ascontiguousarray(np.concatenate([prototypes, *added]), dtype=np.float32)
        self.prototype_labels_ = np.concatenate([labels, np.asarray(added_labels, dtype=labels.dtype)])
        self.prototype_counts_ = np.concatenate([counts, np.asarray(added_counts, dtype=np.int64)])
        self.classes_ = classes
        self._index = self._build_index(self._reference())
        return self

    def _reference(self) -> np.ndarray:
        protos = self.prototypes_
        if self.center or self.metric == "cosine":  # class means of unit vectors are not unit length
            protos = protos / np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(protos, dtype=np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """Softmax over classes of minus the distance to each class's nearest prototype, / temperature."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        k = len(self.prototypes_) if self.index == "flat" else min(len(self.prototypes_), 64)
        distances, ids = self._search(X, k)
        nearest = np.full((len(X), len(self.classes_)), np.inf, dtype=np.float64)
        valid = ids >= 0
        rows = np.broadcast_to(np.arange(len(X))[:, None], ids.shape)[valid]
        cols = self.prototype_labels_[ids[valid]]
        np.minimum.at(nearest, (rows, cols), distances[valid])
        logits = -nearest / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)


class KNNClassifier(_FaissHead):
    """k-nearest-neighbour classifier on a FAISS index (cosine or L2), with SimpleShot normalisation.

    ``predict_proba`` is the (distance-weighted, if ``weights='distance'``) vote share of each class.
    """

    def __init__(self, *, n_neighbors=5, metric="cosine", center=True, weights="uniform", index="flat"):
        # scikit-learn's estimator contract: every argument stored untouched (get_params reads them back).
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.center = center
        self.weights = weights
        self.index = index

    def fit(self, X, y) -> KNNClassifier:
        if not isinstance(self.n_neighbors, numbers.Integral) or self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {self.n_neighbors!r}")
        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"weights must be 'uniform' or 'distance', got {self.weights!r}")
        X, y_idx = self._fit_common(X, y)
        self.train_vectors_, self.train_labels_ = X, y_idx
        self._index = self._build_index(self._reference())
        return self

    def partial_fit(self, X, y, classes=None) -> KNNClassifier:
        """Learn more items in place: they join the index (new classes too); the centring mean stays
        as fitted, so this is a refit on every item seen, with the first fit's mean. The first call
        fits; ``classes`` (scikit-learn's argument) is not needed."""
        if not hasattr(self, "classes_"):
            return self.fit(X, y)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        y = np.asarray(y)
        classes = np.union1d(self.classes_, y)
        old = np.searchsorted(classes, self.classes_)[self.train_labels_]
        self.train_vectors_ = np.ascontiguousarray(np.concatenate([self.train_vectors_, self._prepare(X)]))
        self.train_labels_ = np.concatenate([old, np.searchsorted(classes, y)])
        self.classes_ = classes
        self._index = self._build_index(self._reference())
        return self

    def _reference(self) -> np.ndarray:
        return self.train_vectors_

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        distances, ids = self._search(X, int(self.n_neighbors))
        votes_w = 1.0 / np.maximum(distances, 1e-09) if self.weights == "distance" else np.ones_like(distances)
        votes = np.zeros((len(X), len(self.classes_)))
        valid = ids >= 0
        rows = np.broadcast_to(np.arange(len(X))[:, None], ids.shape)[valid]
        np.add.at(votes, (rows, self.train_labels_[ids[valid]]), votes_w[valid])
        return votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
