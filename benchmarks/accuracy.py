"""Accuracy of the default flows on the real datasets in ../shared/datasets (issue 3's acceptance).

For each dataset: featurize train with one layer (the old default) and with the default three
(the default layer and the two distinct layers before it, one pass), each from an empty cache
(the ONNX export included, as on a first run), best of two, for time and file size; then fit logistic regression three ways on the three-layer file: the first
layer only (the old default), the default (LogME screens the three layers and their
concatenation, the best two are cross-validated) and all four candidates cross-validated (the old
``--layer auto``); evaluate each on the test split. Then the few-shot protocol on TREC. Prints a
table and writes it to benchmarks/accuracy.md.

    python benchmarks/accuracy.py [--data ../shared/datasets] [--cache cache/bench]
"""

from __future__ import annotations

import argparse
import csv
import platform
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np

from featurizer import FeatureFile, featurize
from pipelines import _fit, evaluate, few_shot, fit, read_xy

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


def trec_files(data: Path, work: Path) -> tuple[Path, Path]:
    """TREC train and test as CSV files in ``work`` (the converted copies the text benchmarks read)."""
    return (
        trec_csv(data / "trec/train_5500.label", work / "trec_train.csv"),
        trec_csv(data / "trec/TREC_10.label", work / "trec_test.csv"),
    )


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
            *trec_files(args.data, args.cache),
        ),
    }
    lines = [
        "| dataset | backbone | featurize: one layer -> default three (s; MB) | first layer only: CV, test, fit s "
        "| default (LogME screens, best 2 CV'd): layers, CV, test, fit s | all 4 CV'd: layers, CV, test, fit s "
        "| reference |",
        "|---|---|---|---|---|---|---|",
    ]
    files = {}
    for name in args.only:
        model, train, test = sets[name]
        costs = {}
        for _ in range(2):  # the old default and the new one, taking turns, each from an empty cache; best of 2
            for layers in (["-1"], None):
                fresh = Path(tempfile.mkdtemp(dir=args.cache))
                out = args.cache / f"{name}_train_{'one' if layers else 'default'}.h5"
                started = time.perf_counter()
                featurize(train, model, layers, output=out, cache_dir=fresh, progress=False, force=True)
                seconds = time.perf_counter() - started
                shutil.rmtree(fresh)
                key = "one" if layers else "three"
                costs[key] = (min(seconds, costs.get(key, (seconds,))[0]), out.stat().st_size / 2**20)
        paths = [args.cache / f"{name}_train_default.h5", args.cache / f"{name}_test.h5"]
        featurize(test, model, output=paths[1], cache_dir=args.cache, progress=False, force=True)
        files[name] = paths
        cells = []
        with FeatureFile(paths[0]) as tr:
            first = tr.layers[0]  # the default layer: what fit read before issue 15
        for layer, full_cv in ((first, None), (None, None), ("auto", 99)):
            started = time.perf_counter()
            with mock.patch.object(_fit, "AUTO_FULL_CV", full_cv) if full_cv else nullcontext():
                result = fit(paths[0], "logreg", layer)
            seconds = time.perf_counter() - started
            with FeatureFile(paths[1]) as te:
                X, y = read_xy(te, result.card.spec.layers)
            acc = evaluate(result.model, X, y)["accuracy"]
            chosen = "+".join(result.card.spec.layers)
            cells.append(
                f"{chosen + ', ' if layer != first else ''}{result.card.cv_score:.3f}, **{acc:.3f}**, {seconds:.1f}"
            )
            table = "; ".join(f"{r.name} {r.mean:.3f} (LogME {r.logme})" for r in result.table)
            print(f"{name} layer={layer} full_cv={full_cv}: {table}; test {acc:.4f} in {seconds:.1f} s", flush=True)
        (one_s, one_mb), (three_s, three_mb) = costs["one"], costs["three"]
        lines.append(
            f"| {name} | {model} | {one_s:.1f} -> {three_s:.1f}; {one_mb:.1f} -> {three_mb:.1f} | "
            f"{' | '.join(cells)} | {REFERENCE[name]} |"
        )
        print(lines[-1], flush=True)

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
        f"({platform.processor() or 'cpu'}), {time.strftime('%Y-%m-%d %H:%M')}, 2 CPUs. Logistic regression head, "
        "C by 5-fold CV (3 repeats under 2,000 items) with the one-standard-error rule; fit times are library "
        "calls on cached features; featurize times are whole runs from an empty cache (ONNX export included), "
        "best of two.\n\n"
    )
    (Path(__file__).parent / "accuracy.md").write_text(header + text + "\n")


if __name__ == "__main__":
    main()
