"""Semi-supervised heads (issue 30): a few labels per class, the rest of train as the unlabelled pool.

For each dataset and number of labels per class, 10 seeded draws of the labelled items; the pool
is every other training item (its labels unused). Plain logistic regression (standardised, C=1)
against the head in the pool's principal subspace (``pca``), self-training, label spreading and ``auto`` (chosen by cross-validation on the labelled
part, the pool added to each training fold). Test accuracy, mean and spread over the runs.

    python benchmarks/semi.py [--data ../shared/datasets] [--cache cache/bench] [--only trec agnews flowers12]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from accuracy import trec_files  # this folder: the one TREC-to-CSV conversion
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from speed import join_results, write_section

from featurizer import FeatureFile, featurize
from pipelines.fit import read_xy, sample_few_shot
from pipelines.heads import choose_semi, semi_estimator, stack_pool

RUNS = 10


def agnews_files(data: Path, work: Path, seed: int = 0) -> tuple[Path, Path]:
    """AG News' one split (1,900 per class) halved at random into train and test CSVs."""
    import csv

    text = (data / "agnews/test.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if "\t" in line]
    order = np.random.default_rng(seed).permutation(len(rows))
    paths = (work / "agnews_train.csv", work / "agnews_test.csv")
    for path, part in zip(paths, (order[: len(rows) // 2], order[len(rows) // 2 :])):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([rows[i][0], rows[i][1]] for i in part)
    return paths


def vectors(source: Path, model: str, out: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    if not out.is_file():
        featurize(source, model, output=out, cache_dir=cache, progress=False)
    with FeatureFile(out) as f:
        X, y = read_xy(f, (f.spec.layers[0],))
    return X, np.asarray(y)


def head():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def run(X, y, Xte, yte, shots: int) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {"plain": [], "pca": [], "self-training": [], "spreading": [], "auto": []}
    chosen = []
    for seed in range(RUNS):
        labelled = sample_few_shot(y, shots, seed)
        pool = np.setdiff1d(np.arange(len(y)), labelled)
        fits = {"plain": head().fit(X[labelled], y[labelled])}
        for method in ("pca", "self-training", "spreading"):
            fits[method] = semi_estimator(method, head()).fit(*stack_pool(X[labelled], y[labelled], X[pool]))
        choice = choose_semi(X[labelled], y[labelled], X[pool], head(), seed=seed)
        chosen.append(choice.method)
        fits["auto"] = fits["plain" if choice.method == "none" else choice.method]
        for name, model in fits.items():
            scores[name].append(float(np.mean(model.predict(Xte) == yte)))
    scores["chosen"] = chosen
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--cache", type=Path, default=Path("cache/bench"))
    parser.add_argument("--only", nargs="*", default=["trec", "agnews", "flowers12"])
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    sets = {
        "trec": ("minilm", *trec_files(args.data, args.cache), (8, 32)),
        "agnews": ("minilm", *agnews_files(args.data, args.cache), (8, 32)),
        "flowers12": ("efficientnet_lite0", args.data / "flowers12/train", args.data / "flowers12/test", (5,)),
    }
    lines = [
        "| dataset | labels per class | pool | plain | pca | self-training | spreading | auto (chosen) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.only:
        model, train, test, shot_list = sets[name]
        X, y = vectors(train, model, args.cache / f"semi_{name}_train.h5", args.cache)
        Xte, yte = vectors(test, model, args.cache / f"semi_{name}_test.h5", args.cache)
        for shots in shot_list:
            started = time.perf_counter()
            s = run(X, y, Xte, yte, shots)
            cell = {k: f"{np.mean(v):.3f} ± {np.std(v):.3f}" for k, v in s.items() if k != "chosen"}
            picks = ", ".join(f"{m} {s['chosen'].count(m)}" for m in sorted(set(s["chosen"])))
            pool = len(y) - shots * len(np.unique(y))
            lines.append(
                f"| {name} | {shots} | {pool} | {cell['plain']} | {cell['pca']} | {cell['self-training']} "
                f"| {cell['spreading']} "
                f"| {cell['auto']} ({picks}) |"
            )
            print(lines[-1], f"[{time.perf_counter() - started:.0f} s]", flush=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/semi.py --only {' '.join(args.only)}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs: minilm layer.5 (texts), efficientnet_lite0 pre_logits "
        f"(flowers12); the labelled items drawn per class ({RUNS} seeds), the pool is the rest of train (labels "
        "unused); every head is standardised logistic regression, C=1, except `pca`'s (C=1 on the pool's top "
        "3 principal directions per class, unit total variance, not standardised); test accuracy mean ± std "
        "over the runs. "
        "`auto` chooses by 5-fold CV on the labelled part with the pool in every training fold: plain unless a "
        "method wins by more than twice the standard error of the paired per-item differences and by 0.01."
    )
    write_section(Path(__file__).with_name("results") / "30-semi.md", "Semi-supervised heads", stamp, lines)
    join_results()


if __name__ == "__main__":
    main()
