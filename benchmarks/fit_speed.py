"""Fit time of the default head, before and after warm-started regularisation paths, in one run.

For each shared set: featurize train and test once (ONNX runtime, cached in --work), then fit the
default head (logistic regression, C by stratified CV with the one-standard-error rule) twice:
"grid" is scikit-learn's GridSearchCV refitting every C from scratch (the code before issue 15),
"path" walks C upwards from the previous solution per fold with the standardisation fitted once per
fold, folds in parallel threads. Prints time, chosen C, CV accuracy and test accuracy for each, and
the calibration on the test split before and after temperature scaling.

    python benchmarks/fit_speed.py [--data ../shared/datasets] [--sets hymenoptera,flowers12,trec]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featurizer import FeatureFile, featurize
from pipelines import evaluate, fit
from pipelines.fit import read_xy
from pipelines.heads import calibration_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from accuracy import trec_files  # noqa: E402 - the one TREC-to-CSV conversion, shared with the accuracy benchmark


def sets(data: Path, work: Path) -> dict[str, tuple[Path, Path]]:
    work.mkdir(parents=True, exist_ok=True)
    return {
        "hymenoptera": (data / "hymenoptera/train", data / "hymenoptera/val"),
        "flowers12": (data / "flowers12/train", data / "flowers12/test"),
        "trec": trec_files(data, work),
    }  # fmt: skip


def against_plain(name: str, train: Path, test: Path, repeat: int) -> str:
    """A table row: the default fit and one plain logistic regression on the same three-layer file, in turns."""
    with FeatureFile(train) as f:
        layers = tuple(f.layers)
        X, y = read_xy(f, layers)
    with FeatureFile(test) as f:
        X_test, y_test = read_xy(f, layers)
    plain_s, default_s = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
        plain_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = fit(train)
        default_s.append(time.perf_counter() - started)
    with FeatureFile(test) as f:
        X_chosen, y_chosen = read_xy(f, result.card.spec.layers)
    accuracy = evaluate(result.model, X_chosen, y_chosen)["accuracy"]
    p, d = statistics.median(plain_s), statistics.median(default_s)
    chosen = f"{'+'.join(result.card.spec.layers)}, C {result.card.params.get('C', '')}"
    return f"| {name} | {p:.1f} | {lr.score(X_test, y_test):.3f} | {d:.1f} | {chosen} | {accuracy:.3f} | **{d / p:.1f}x** |"


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-fit-bench"))
    parser.add_argument("--sets", default="hymenoptera,flowers12,trec")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the default-against-plain comparison")
    args = parser.parse_args()
    rows = [
        "| data | fit | seconds | C | CV accuracy | test accuracy | test ECE: raw -> calibrated | test Brier: raw -> calibrated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    heads = ["| data | head | seconds | CV accuracy | test accuracy |", "|---|---|---|---|---|"]
    plain = [
        "| data | one plain LR fit (s) | its test accuracy | default `fit` (s) | its layers, C | its test accuracy | "
        "default / plain |",
        "|---|---|---|---|---|---|---|",
    ]
    commands = [
        "| data | `xfer fit` on the last layer (s) | `xfer fit` on the default three layers (s) | the same `--baseline` (s) |",
        "|---|---|---|---|",
    ]
    for name, (train_src, test_src) in sets(args.data, args.work).items():
        if name not in args.sets.split(","):
            continue
        files = []
        for split, src in (("train", train_src), ("test", test_src)):
            out = args.work / f"{name}-{split}.h5"
            featurize(
                src, None, "-1", output=out, runtime="onnx", cache_dir=args.work / "cache", progress=False, force=True
            )
            files.append(out)
        with FeatureFile(files[1]) as f:
            X_test, y_test = read_xy(f, tuple(f.layers[:1]))
        timings = {}
        for mode in ("grid", "path"):
            with (
                mock.patch("pipelines.fit._fit._warm_startable", lambda *a: False) if mode == "grid" else nullcontext()
            ):
                started = time.perf_counter()
                result = fit(files[0], "logreg")
                seconds = time.perf_counter() - started
            timings[mode] = seconds
            head = result.model.named_steps["head"]
            acc = head.score(X_test, y_test)
            row = result.table[0]
            calibration = ""
            if mode == "path":  # the temperature comes from the path's out-of-fold scores
                raw = fit(files[0], "logreg", calibrate=False).model.named_steps["head"]
                truth = np.searchsorted(head.classes_, y_test)
                before = calibration_report(raw.predict_proba(X_test), truth)
                after = calibration_report(head.predict_proba(X_test), truth)
                calibration = (
                    f"{before['ece']:.3f} -> {after['ece']:.3f} (T = {result.card.calibration['temperature']:.2f}) | "
                    f"{before['brier']:.3f} -> {after['brier']:.3f}"
                )
            rows.append(
                f"| {name} | {mode} | {seconds:.1f} | {row.params['C']:g} | {row.mean:.3f} | {acc:.3f} | "
                f"{calibration or ' | '} |"
            )
            print(rows[-1], flush=True)
        rows.append(f"| {name} | speed-up | **{timings['grid'] / timings['path']:.1f}x** | | | | | |")
        print(rows[-1], flush=True)
        default = args.work / f"{name}-train-default.h5"  # the default three layers
        featurize(train_src, output=default, cache_dir=args.work / "cache", progress=False, force=True)
        default_test = args.work / f"{name}-test-default.h5"
        featurize(test_src, output=default_test, cache_dir=args.work / "cache", progress=False, force=True)
        plain.append(against_plain(name, default, default_test, args.repeat))
        print(plain[-1], flush=True)
        xfer = [sys.executable, str(ROOT / "cli.py"), "fit"]
        cells = []
        for target, extra in ((files[0], []), (default, []), (default, ["--baseline"])):
            command = [*xfer, str(target), "-o", str(args.work / "m.skops"), "--force", *extra]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            cells.append(f"{time.perf_counter() - started:.1f}")
        commands.append(f"| {name} | {' | '.join(cells)} |")
        print(commands[-1], flush=True)
        for other in ("ridge", "lda"):  # the closed-form heads, on the same features
            started = time.perf_counter()
            result = fit(files[0], other)
            seconds = time.perf_counter() - started
            acc = result.model.named_steps["head"].score(X_test, y_test)
            heads.append(f"| {name} | {other} | {seconds:.1f} | {result.card.cv_score:.3f} | {acc:.3f} |")
            print(heads[-1], flush=True)
    import platform

    from speed import join_results, write_section

    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/fit_speed.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs: `fit` of the default head (logistic regression, C by stratified CV, "
        "one-standard-error rule) on cached features of the last layer, timed as a library call; test accuracy of "
        "the fitted head, and the calibration of its probabilities on the test split without and with the "
        "temperature fitted on out-of-fold scores (expected calibration error, 15 bins; Brier score)."
    )
    rows += ["", "The closed-form heads on the same features and folds (the path row above is `logreg`):", "", *heads]
    rows += [
        "",
        "The default `fit` (LogME screens the three layers and their concatenation, the best two are "
        "cross-validated) against one plain `StandardScaler` + `LogisticRegression(max_iter=1000)` fit on the "
        f"concatenated three layers, medians of {args.repeat} in one run:",
        "",
        *plain,
    ]
    rows += ["", "Whole `xfer fit` commands (a new process each: imports, fit, saving the model):", "", *commands]
    write_section(ROOT / "benchmarks" / "results" / "6-fit.md", "Fit", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
