"""Fairness mitigation on group gaps: SST-2 sentences grouped by length, as they are and with a planted gap.

A sample of SST-2's training sentences (seed 0), other training sentences drawn with them, and the
test split (GLUE dev) are featurized with the offline ``minilm`` model (last layer); each
sentence's group is its length: ``short`` (at most the training sample's median number of words) or
``long``. The planted gap: a labeller who calls 40% of the long sentences' negative reviews
positive, in the training and the held-out sentences alike. For each constraint, ``fit --mitigate
CONSTRAINT --groups`` (logistic regression, C by CV) is scored on the test sets by ``evaluate
--by``'s report: the gap the constraint targets and the accuracy, of the unmitigated head and of the
mitigated one, and the cost. The card's held-out figures (a quarter of the training sample) beside.

    python benchmarks/fairness.py [--data ../shared/datasets] [--work /tmp/featurizer-fairness-bench] [--n 3000] [--held 3000]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, featurize
from pipelines import evaluate, fit, read_xy
from pipelines.heads import MITIGATIONS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def read_sst2(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(text.strip(), {"0": "negative", "1": "positive"}[label]) for text, label in rows if text.strip()]


def write_split(rows, work: Path, name: str, cache: Path, cut: int) -> tuple[Path, Path]:
    """The sentences as a CSV, their feature file, and a CSV of id,group (short or long)."""
    table = work / f"{name}.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    features = work / f"{name}.h5"
    featurize(table, "minilm", "-1", output=features, cache_dir=cache, progress=False)
    with FeatureFile(features) as f:
        pairs = [(i, "short" if len(s.split()) <= cut else "long") for i, s in zip(f.ids, f.sources)]
    groups = work / f"{name}-groups.csv"
    with open(groups, "w", newline="") as f:
        csv.writer(f).writerows([("id", "group"), *pairs])
    return features, groups


def plant(rows, cut: int, seed: int, share: float = 0.4) -> list[tuple[str, str]]:
    """The rows with ``share`` of the long sentences' negative labels turned positive: a biased labeller."""
    rng = random.Random(seed)
    flip = [len(t.split()) > cut and label == "negative" and rng.random() < share for t, label in rows]
    return [(t, "positive" if f else label) for (t, label), f in zip(rows, flip)]


def run_set(data: str, train: Path, train_groups: Path, tests: dict, rows: list[str], sizes: list[str]) -> None:
    """Per constraint: fit on ``train`` mitigated with ``train_groups``, scored on each test set."""
    scored = {}
    for name, (features, group_file) in tests.items():
        with FeatureFile(features) as f:
            X, y = read_xy(f, f.layers[:1])
        with open(group_file, newline="") as f:
            groups = np.asarray([g for _, g in list(csv.reader(f))[1:]])
        scored[name] = (X, y, groups)
        if data == "SST-2":
            sizes.append(f"{name}: {int((groups == 'short').sum())} short, {int((groups == 'long').sum())} long")
    for constraint in MITIGATIONS:
        start = time.perf_counter()
        result = fit(train, "logreg", mitigate=constraint, groups=train_groups)
        seconds = time.perf_counter() - start
        held = result.card.mitigation["held_out"]
        for name, (X, y, groups) in scored.items():
            found = evaluate(result.model, X, y, groups=groups)["mitigation"]
            ratio = found["gap_after"] / found["gap_before"] if found["gap_before"] else float("nan")
            bold = "**" if ratio <= 0.5 else ""
            rows.append(
                f"| {data} | {constraint} | {name} | {found['gap_before']:.3f} | {found['gap_after']:.3f} | "
                f"{bold}{ratio:.2f}{bold} | {found['accuracy_before']:.3f} | {found['accuracy_after']:.3f} | "
                f"{found['accuracy_cost']:+.3f} | {held['gap_before']:.3f} -> {held['gap_after']:.3f} | {seconds:.0f} |"
            )
            print(rows[-1], flush=True)


def main() -> None:
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-fairness-bench"))
    parser.add_argument("--n", type=int, default=3000, help="training sentences sampled")
    parser.add_argument("--held", type=int, default=3000, help="other training sentences sampled as a test set")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache"
    drawn = random.Random(0).sample(read_sst2(args.data / "sst2/train.tsv"), args.n + args.held)
    train_rows, held_rows = drawn[: args.n], drawn[args.n :]
    cut = int(np.median([len(text.split()) for text, _ in train_rows]))
    held_name = f"{args.held} other training sentences"
    sets = {
        "SST-2": (
            write_split(train_rows, args.work, "train", cache, cut),
            {
                held_name: write_split(held_rows, args.work, "held", cache, cut),
                "test.tsv (GLUE dev)": write_split(
                    read_sst2(args.data / "sst2/test.tsv"), args.work, "test", cache, cut
                ),
            },
        ),
        "SST-2, planted gap": (
            write_split(plant(train_rows, cut, 0), args.work, "planted-train", cache, cut),
            {held_name: write_split(plant(held_rows, cut, 1), args.work, "planted-held", cache, cut)},
        ),
    }
    rows = [
        "| data | constraint | test | gap unmitigated | gap mitigated | gap ratio | accuracy unmitigated "
        "| accuracy mitigated | cost | card's held-out gap | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sizes = []
    for data, ((train, train_groups), tests) in sets.items():
        run_set(data, train, train_groups, tests, rows, sizes)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/fairness.py --n {args.n} --held {args.held}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs: minilm last layer (mean pooling, ONNX Runtime), "
        f"logistic regression (C by CV) on {args.n} SST-2 training sentences (seed 0), tested on "
        f"{args.held} other sentences of SST-2's training split (drawn with them) and on its test split ("
        + "; ".join(sizes)
        + f"). Groups: short is at most "
        f"{cut} words (the training median), long is longer. The gap is the largest difference between the groups "
        "of the rate the constraint equalises (equalized odds: true- or false-positive rate; demographic "
        "parity: share predicted positive); unmitigated is the head `fit` chose, mitigated is the same head "
        "refitted by fairlearn's exponentiated gradient (`xfer fit --mitigate ... --groups ...`), both scored "
        "on the test sentences as `xfer evaluate --by` reports them. Cost: accuracy lost. Held-out: the card's "
        "figures on a quarter of the training sample. Planted gap: in the training and the held-out "
        "sentences alike, 40% of the long sentences' negative labels are turned positive (a labeller biased "
        "against one group; the model learns the bias). Bold: the gap halved."
    )
    write_section(ROOT / "benchmarks" / "results" / "17-fairness.md", "Fairness mitigation", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
