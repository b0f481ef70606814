"""Accuracy of the default flows on the real datasets in ../shared/datasets (issue 3's acceptance).

For each dataset: featurize train and test (three layers from one pass), fit the default head on
the default layer, fit with --layer auto, evaluate both on the test split; then the few-shot
protocol on TREC. Prints a table and writes it to benchmarks/accuracy.md.

    python benchmarks/accuracy.py [--data ../shared/datasets] [--cache cache/bench]
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, featurize
from pipelines import evaluate, few_shot, fit, read_xy

REFERENCE = {"hymenoptera": 0.954, "flowers12": 0.963, "trec": 0.902}
TARGET = {"hymenoptera": 0.95, "flowers12": 0.96, "trec": 0.90}


def trec_csv(src: Path, dst: Path) -> Path:
    """TREC's 'COARSE:fine question' lines as a CSV of text and coarse label."""
    with open(src, encoding="latin-1") as f, open(dst, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        for line in f:
            label, text = line.rstrip("\n").split(" ", 1)
            writer.writerow([text, label.split(":")[0]])
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--cache", type=Path, default=Path("cache/bench"))
    parser.add_argument("--only", nargs="*", default=list(REFERENCE))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    sets = {
        "hymenoptera": ("efficientnet_lite0", args.data / "hymenoptera/train", args.data / "hymenoptera/val"),
        "flowers12": ("efficientnet_lite0", args.data / "flowers12/train", args.data / "flowers12/test"),
        "trec": (
            "minilm",
            trec_csv(args.data / "trec/train_5500.label", args.cache / "trec_train.csv"),
            trec_csv(args.data / "trec/TREC_10.label", args.cache / "trec_test.csv"),
        ),
    }
    lines = [
        "| dataset | backbone | layers tried | default: layer, CV, test | auto: layer, CV, test | reference | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    files = {}
    for name in args.only:
        model, train, test = sets[name]
        paths = []
        for split, src in (("train", train), ("test", test)):
            out = args.cache / f"{name}_{split}.h5"
            report = featurize(src, model, ["-1", "-2", "-3"], output=out, cache_dir=args.cache, progress=False)
            print(report.summary(), flush=True)
            paths.append(out)
        files[name] = paths
        cells = []
        for layer in (None, "auto"):
            started = time.perf_counter()
            result = fit(paths[0], "logreg", layer)
            seconds = time.perf_counter() - started
            with FeatureFile(paths[1]) as te:
                X, y = read_xy(te, result.card.spec.layers)
            acc = evaluate(result.model, X, y)["accuracy"]
            cells.append(f"{'+'.join(result.card.spec.layers)}, {result.card.cv_score:.3f}, **{acc:.3f}**")
            if layer == "auto":
                table = "; ".join(f"{r.name} {r.mean:.3f}" for r in result.table)
                print(f"{name} auto CV table: {table}", flush=True)
            print(
                f"{name} layer={layer or 'default'}: test accuracy {acc:.4f} (target {TARGET[name]}) "
                f"in {seconds:.0f} s",
                flush=True,
            )
        with FeatureFile(paths[0]) as tr:
            tried = ", ".join(tr.layers)
        lines.append(f"| {name} | {model} | {tried} | {cells[0]} | {cells[1]} | {REFERENCE[name]} | {seconds:.0f} |")

    if "trec" in files:
        with FeatureFile(files["trec"][0]) as tr, FeatureFile(files["trec"][1]) as te:
            Xtr, ytr = read_xy(tr, ("layer.5",))
            Xte, yte = read_xy(te, ("layer.5",))
        rows = few_shot(
            Xtr, np.asarray(ytr), Xte, np.asarray(yte), shots=(8,), runs=10, heads=("logreg", "prototype"), max_iter=100
        )
        lines += [
            "",
            "Few-shot on TREC (6 coarse classes), 8 examples per class, 10 seeded runs (MTEB protocol for logreg):",
            "",
            "| head | accuracy (mean ± std) |",
            "|---|---|",
        ]
        lines += [f"| {r.head} | {r.mean:.3f} ± {r.std:.3f} |" for r in rows]
    text = "\n".join(lines)
    print(text)
    header = (
        f"# Accuracy benchmark\n\n`python benchmarks/accuracy.py` on {platform.machine()} "
        f"({platform.processor() or 'cpu'}), {time.strftime('%Y-%m-%d')}. Logistic regression head, "
        "C by 5-fold CV (3 repeats under 2,000 items) with the one-standard-error rule.\n\n"
    )
    (Path(__file__).parent / "accuracy.md").write_text(header + text + "\n")


if __name__ == "__main__":
    main()
