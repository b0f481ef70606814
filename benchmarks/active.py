"""Active learning, simulated: labels needed by each ``xfer suggest`` strategy against random sampling.

TREC (5,452 training questions as the pool, TREC_10 as the test) and AG News (its 7,600 test
articles halved: a pool and a test set, seed 0), MiniLM's last layer. Each run starts from 2
labelled items per class, fits logistic regression (standardised, C = 1: too few labels to
cross-validate), then adds 20 labels a round chosen by the strategy from the pool, up to 212
labels. Three seeded runs per strategy; the plot and the table give mean test accuracy against
labels used, and the labels each strategy needs to reach random sampling's accuracy at 200.

    python benchmarks/active.py [--data ../shared/datasets] [--rounds 10] [--seeds 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, featurize
from pipelines import read_xy
from pipelines.evaluate import choose
from pipelines.fit import sample_few_shot
from pipelines.heads import make_head

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

STRATEGIES = ("random", "margin", "entropy", "kcenter", "hybrid")
START_PER_CLASS, STEP = 2, 20


def agnews_halves(data: Path, work: Path) -> tuple[Path, Path]:
    with open(data / "agnews/test.tsv", encoding="utf-8") as f:
        rows = [line.rstrip("\n").rsplit("\t", 1) for line in f if line.strip()]
    order = np.random.default_rng(0).permutation(len(rows))
    paths = []
    for name, part in (("pool", order[: len(rows) // 2]), ("test", order[len(rows) // 2 :])):
        path = work / f"agnews_{name}.csv"
        with open(path, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["text", "label"])
            writer.writerows(rows[i] for i in part)
        paths.append(path)
    return paths[0], paths[1]


def simulate(X, y, X_test, y_test, strategy: str, rounds: int, seed: int) -> list[tuple[int, float]]:

    labelled = list(sample_few_shot(y, START_PER_CLASS, seed))
    curve = []
    for round_ in range(rounds + 1):
        model = make_head("logreg", C=1.0).fit(X[labelled], y[labelled])
        curve.append((len(labelled), float(model.score(X_test, y_test))))
        if round_ == rounds:
            break
        pool = np.setdiff1d(np.arange(len(y)), labelled)
        proba = model.predict_proba(X[pool])
        picked, _ = choose(strategy, STEP, X[pool], proba, X[labelled], seed + round_)
        labelled += [int(pool[i]) for i in picked]
    return curve


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> str:
    for labels, accuracy in curve:
        if accuracy >= target:
            return str(labels)
    return f"> {curve[-1][0]}"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from accuracy import trec_files
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-active-bench"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sets = {
        "TREC": trec_files(args.data, args.work),
        "AG News": agnews_halves(args.data, args.work),
    }
    rows = [
        "| data | strategy | accuracy at 12-14 labels | at ~110 | at ~210 | labels to reach random's accuracy at ~200 |",
        "|---|---|---|---|---|---|",
    ]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.2))
    for ax, (name, (pool_src, test_src)) in zip(np.atleast_1d(axes), sets.items()):
        arrays = []
        for split, src in (("pool", pool_src), ("test", test_src)):
            out = args.work / f"{name.replace(' ', '')}-{split}.h5"
            featurize(src, "minilm", "-1", output=out, cache_dir=args.work / "cache", progress=False)
            with FeatureFile(out) as f:
                arrays += list(read_xy(f, tuple(f.layers)))
        X, y, X_test, y_test = arrays
        curves = {}
        for strategy in STRATEGIES:
            runs = [simulate(X, y, X_test, y_test, strategy, args.rounds, seed) for seed in range(args.seeds)]
            labels = [n for n, _ in runs[0]]
            curves[strategy] = list(zip(labels, np.mean([[a for _, a in run] for run in runs], axis=0)))
            ax.plot(labels, [a for _, a in curves[strategy]], marker="o", ms=3, label=strategy)
        target = curves["random"][-1][1]
        for strategy, curve in curves.items():
            middle = curve[len(curve) // 2]
            rows.append(
                f"| {name} | {strategy} | {curve[0][1]:.3f} | {middle[1]:.3f} | {curve[-1][1]:.3f} | "
                f"{labels_to_reach(curve, target)} |"
            )
            print(rows[-1], flush=True)
        ax.axhline(target, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{name}: MiniLM, logistic regression, {args.seeds} runs")
        ax.set_xlabel("labelled items")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    picture = ROOT / "benchmarks" / "results" / "active.png"
    fig.savefig(picture, dpi=110)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/active.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs: {START_PER_CLASS} labels per class to start, {STEP} more a round chosen from the "
        f"pool by each strategy, {args.rounds} rounds, mean of {args.seeds} seeded runs; logistic regression C = 1 "
        "on standardised MiniLM features. The last column: labels each strategy needed to match random "
        "sampling's final accuracy. Plot: benchmarks/results/active.png."
    )
    write_section(ROOT / "benchmarks" / "results" / "10-active.md", "Active learning", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
