"""What augmented views give: fit on them (featurize --augment N) and average them at test time (--tta N).

For hymenoptera and flowers12: featurize train and test with the defaults and with N augmented
views (through one cache, so the originals are computed once), fit the default head on the plain
and on the augmented training file, and evaluate both on the test split with and without
test-time augmentation. Prints test accuracy and times, and writes the table to BENCHMARKS.md.

    python benchmarks/augment.py [--views 4] [--data ../shared/datasets]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from featurizer import FeatureFile, featurize
from pipelines import evaluate, fit, read_xy
from pipelines.fit import labelled_views

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-augment-bench"))
    parser.add_argument("--views", type=int, default=4)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    n = args.views
    rows = [
        f"| data | featurize train s: plain -> +{n} views | fit s: plain -> on views | test: plain | "
        f"test: --tta {n} | test: fit on views | test: fit on views, --tta {n} |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, train, test in (
        ("hymenoptera", args.data / "hymenoptera/train", args.data / "hymenoptera/val"),
        ("flowers12", args.data / "flowers12/train", args.data / "flowers12/test"),
    ):
        cache = args.work / f"cache-{name}"
        files, seconds = {}, {}
        for split, src in (("train", train), ("test", test)):
            for views in (0, n):
                files[split, views] = args.work / f"{name}-{split}-{views}.h5"
                started = time.perf_counter()
                featurize(src, output=files[split, views], cache_dir=cache, progress=False, force=True, augment=views)
                seconds[split, views] = time.perf_counter() - started
        accuracy, fit_seconds = {}, {}
        for views in (0, n):
            started = time.perf_counter()
            result = fit(files["train", views], "logreg")
            fit_seconds[views] = time.perf_counter() - started
            with FeatureFile(files["test", n]) as f:
                X, y = read_xy(f, result.card.spec.layers)
                test_views = labelled_views(f, result.card.spec.layers)
            accuracy[views, 0] = evaluate(result.model, X, y)["accuracy"]
            accuracy[views, n] = evaluate(result.model, X, y, views=test_views)["accuracy"]
            print(f"{name} train views {views}: layers {result.card.spec.layers}, CV {result.card.cv_score:.3f}")
        rows.append(
            f"| {name} | {seconds['train', 0]:.1f} -> {seconds['train', n]:.1f} | "
            f"{fit_seconds[0]:.1f} -> {fit_seconds[n]:.1f} | {accuracy[0, 0]:.3f} | {accuracy[0, n]:.3f} | "
            f"{accuracy[n, 0]:.3f} | {accuracy[n, n]:.3f} |"
        )
        print(rows[-1], flush=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/augment.py --views {n}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs: default featurize (three layers, ONNX Runtime) and fit "
        f"(layers screened by LogME, C by CV); views are random resized crops (25-100% of the area) and flips. "
        "The featurize times of the augmented files include computing the views only (the originals come "
        "from the cache the plain run filled)."
    )
    write_section(ROOT / "benchmarks" / "results" / "8-augment.md", "Augmented views", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
