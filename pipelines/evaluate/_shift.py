"""``xfer shift``: how far apart two feature files are, and what that means for a head.

Three measures on the layers both files hold:

- **MMD** (maximum mean discrepancy, Gretton et al. 2012) with an RBF kernel whose bandwidth is the
  median pairwise distance, and a permutation test's p-value (domains shuffled).
- **Proxy A-distance** (Ben-David et al. 2007): 2 (1 - 2 err), where err is the cross-validated error
  of a logistic regression told to tell the two domains apart; 0 when it cannot, 2 when it always can.
- **Class centroid drift** when both files have labels: for each shared class, the cosine distance
  between its source and target means, against the distances between source classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, FeaturizerError
from featurizer.spec import spec_differences
from pipelines.fit import choose_layers, read_xy
from pipelines.report import pyplot, save_png

SAMPLE = 500  # items per domain, at most, for the kernel and the domain classifier (the cost grows with its square)
PERMUTATIONS = 200


@dataclass
class ShiftReport:
    layers: tuple[str, ...]
    n_source: int
    n_target: int
    mmd: float
    mmd_p: float
    proxy_a: float
    domain_accuracy: float
    drift: dict[str, float] = field(default_factory=dict)  # class -> cosine distance of its two centroids
    class_spread: float | None = None  # median cosine distance between source class centroids
    reading: str = ""

    def to_dict(self) -> dict:
        return {**self.__dict__, "layers": list(self.layers)}


def _subsample(X: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return X if len(X) <= size else X[rng.choice(len(X), size, replace=False)]


def _sq_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T
    return np.maximum(d, 0)


def mmd_rbf(X: np.ndarray, Y: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[float, float]:
    """Squared MMD (biased estimate) of two samples under an RBF kernel with the median-distance
    bandwidth, and the permutation test's p-value (the share of domain shuffles that score as high)."""
    rng = np.random.default_rng(seed)
    Z = np.vstack([X, Y]).astype(np.float64)
    d2 = _sq_distances(Z, Z)
    median = np.median(d2[np.triu_indices(len(Z), 1)])
    K = np.exp(-d2 / max(median, 1e-12))
    n = len(X)

    def statistic(order: np.ndarray) -> float:
        a, b = order[:n], order[n:]
        return float(K[np.ix_(a, a)].mean() + K[np.ix_(b, b)].mean() - 2 * K[np.ix_(a, b)].mean())

    observed = statistic(np.arange(len(Z)))
    null = [statistic(rng.permutation(len(Z))) for _ in range(permutations)]
    p = (1 + sum(value >= observed for value in null)) / (1 + permutations)
    return max(observed, 0.0), float(p)


def proxy_a_distance(X: np.ndarray, Y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(proxy A-distance, cross-validated accuracy of the domain classifier), on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Z = np.vstack([X, Y])
    domain = np.r_[np.zeros(len(X)), np.ones(len(Y))]
    folds = StratifiedKFold(n_splits=min(5, len(X), len(Y)), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    accuracy = float(cross_val_score(model, Z, domain, cv=folds).mean())
    error = min(1 - accuracy, 0.5)  # a classifier worse than chance is chance
    return 2 * (1 - 2 * error), accuracy


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1 - a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def centroid_drift(
    X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray
) -> tuple[dict[str, float], float | None]:
    """Per shared class, the cosine distance between its source and target means (features centred
    on the source mean), and the median distance between source class means for scale."""
    centre = X.mean(axis=0)
    shared = sorted(set(y) & set(yt))
    drift = {c: _cosine_distance(X[y == c].mean(0) - centre, Xt[yt == c].mean(0) - centre) for c in shared}
    means = [X[y == c].mean(0) - centre for c in sorted(set(y))]
    pairs = [_cosine_distance(a, b) for i, a in enumerate(means) for b in means[i + 1 :]]
    return drift, float(np.median(pairs)) if pairs else None


def reading(report: ShiftReport) -> str:
    """The measures in plain words."""
    if report.mmd_p > 0.05:
        words = "no detectable shift (MMD permutation p = {:.2f}): a head fitted on the source should carry over"
        return words.format(report.mmd_p)
    if report.domain_accuracy >= 0.9:
        text = (
            f"the domains are easy to tell apart (a classifier does it {report.domain_accuracy:.0%} of the time): "
            "expect accuracy to drop; label some target items, or try fit --adapt"
        )
    elif report.domain_accuracy >= 0.7:
        text = (
            f"a clear shift (domains told apart {report.domain_accuracy:.0%} of the time): check accuracy on "
            "labelled target items before trusting the source's"
        )
    else:
        text = f"a mild but real shift (MMD p = {report.mmd_p:.3f}; domains told apart {report.domain_accuracy:.0%})"
    if report.drift and report.class_spread:
        worst = max(report.drift, key=report.drift.get)
        if report.drift[worst] > 0.5 * report.class_spread:
            text += (
                f"; class {worst!r} moved {report.drift[worst] / report.class_spread:.0%} of the typical distance "
                "between classes"
            )
    return text


def measure_shift(
    source: str | os.PathLike,
    target: str | os.PathLike,
    layer=None,
    seed: int = 0,
    png: str | os.PathLike | None = None,
) -> ShiftReport:
    """Shift measures between two feature files on ``layer`` (default: every layer both hold, side by side)."""

    with FeatureFile(source) as s, FeatureFile(target) as t:
        shared = [name for name in s.layers if name in t.layers]
        if not shared:
            raise FeaturizerError(
                f"{target} has none of {source}'s layers ({', '.join(s.layers)}); featurize both with the same layers"
            )
        layers = tuple(shared) if layer is None else choose_layers(shared, layer)
        if layers == "auto":
            raise FeaturizerError("shift compares the layers it is given; 'auto' is for xfer fit")
        diffs = spec_differences(s.spec.select(layers), t.spec)
        if diffs:
            raise FeaturizerError(f"{target} was made differently from {source}: " + "; ".join(diffs))
        X, y = read_xy(s, layers)
        Xt, yt = read_xy(t, layers)
    if len(X) < 2 or len(Xt) < 2:
        raise FeaturizerError("each feature file needs at least two items to compare")
    rng = np.random.default_rng(seed)
    size = min(len(X), len(Xt), SAMPLE)  # equal sizes: the domain classifier's chance is then 50%
    Xs, Xts = _subsample(X, size, rng), _subsample(Xt, size, rng)
    mmd, p = mmd_rbf(Xs, Xts, seed=seed)
    pad, accuracy = proxy_a_distance(Xs, Xts, seed)
    report = ShiftReport(layers, len(X), len(Xt), mmd, p, pad, accuracy)
    if y is not None and yt is not None:
        keep, keep_t = y != "", yt != ""
        report.drift, report.class_spread = centroid_drift(X[keep], y[keep], Xt[keep_t], yt[keep_t])
    report.reading = reading(report)
    if png:
        plot_domains(X, y, Xt, yt, png, f"{Path(source).name} vs {Path(target).name}", rng)
    return report


def plot_domains(X, y, Xt, yt, path, title: str, rng: np.random.Generator) -> Path:
    """Both domains on the first two principal components of their union: colour by class, marker by domain."""

    plt = pyplot()
    from sklearn.decomposition import PCA

    Xs, Xts = _subsample(X, 2000, rng), _subsample(Xt, 2000, rng)
    pca = PCA(n_components=2).fit(np.vstack([Xs, Xts]))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    labelled = y is not None and yt is not None
    classes = sorted((set(y) | set(yt)) - {""}) if labelled else []  # items without a label are not drawn
    colours = {c: plt.cm.tab20(i % 20) for i, c in enumerate(classes)}
    for data, labels, marker, name in ((X, y, "o", "source"), (Xt, yt, "x", "target")):
        points = pca.transform(data)
        if labelled:
            for c in classes:
                mask = labels == c
                ax.scatter(*points[mask].T, s=12, marker=marker, color=colours[c], alpha=0.6)
        else:
            ax.scatter(*points.T, s=12, marker=marker, alpha=0.5, label=name)
    if labelled:
        domains = (("o", "source"), ("x", "target"))
        handles = [plt.Line2D([], [], marker=m, ls="", color="grey", label=n) for m, n in domains]
        handles += [plt.Line2D([], [], marker="s", ls="", color=colours[c], label=c) for c in classes[:20]]
        ax.legend(handles=handles, fontsize=7, loc="best")
    else:
        ax.legend()
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
