"""minilm-static against minilm: texts/s and the default fit's test accuracy on TREC, SST-2 and AG News.

Each model featurizes each training set from an empty cache folder (the ONNX graph and the static
table made once beforehand, in shared folders, and timed on their own), in-process, median of
``--repeat``; TREC is also timed as a whole ``xfer featurize`` command. Then the default ``fit`` on
the training file, scored on the test split. Data as in benchmarks/text_modes.py (SST-2: 5,000 random
training sentences -> the 872 test sentences; AG News: its 7,600 texts halved, seed 0).

    python benchmarks/static.py [--data ../shared/datasets] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from accuracy import trec_files
from text_modes import agnews, sst2

from featurizer import FeatureFile, featurize
from pipelines import evaluate, fit, read_xy

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("minilm", "minilm-static")


def write_csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path


def timed_featurize(csv_path: Path, model: str, out: Path, cache: Path) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    featurize(csv_path, model, output=out, cache_dir=cache, progress=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-static"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["FEATURIZER_ONNX_DIR"] = str(work / "onnx")
    os.environ["FEATURIZER_STATIC_DIR"] = str(work / "static")

    trec_train, trec_test = trec_files(args.data, work)
    sets = {"TREC (5,452 -> 500)": (trec_train, trec_test)}
    for name, split in (("SST-2 (5,000 -> 872)", sst2(args.data)), ("AG News (3,800 -> 3,800)", agnews(args.data))):
        stem = name.split()[0].lower().replace("-", "")
        sets[name] = (
            write_csv(work / f"{stem}_train.csv", *split[:2]),
            write_csv(work / f"{stem}_test.csv", *split[2:]),
        )

    first = {}
    for model in MODELS:  # the ONNX export and the distillation, once, on a few texts
        few = write_csv(work / "few.csv", ["a first question ?", "another one ?"], ["a", "b"])
        first[model] = timed_featurize(few, model, work / "few.h5", work / "first-cache")
        print(f"{model}: first run (export / distillation) {first[model]:.1f} s", flush=True)

    rows, speeds = [], {}
    for name, (train, test) in sets.items():
        with open(train) as f:
            count = sum(1 for _ in f) - 1
        for model in MODELS:
            stem = train.stem.removesuffix("_train")
            out, out_test = work / f"{stem}-{model}-train.h5", work / f"{stem}-{model}-test.h5"
            seconds = [timed_featurize(train, model, out, work / "cache") for _ in range(args.repeat)]
            median = statistics.median(seconds)
            featurize(test, model, output=out_test, cache_dir=work / "cache", progress=False)
            started = time.perf_counter()
            result = fit(out)
            fit_s = time.perf_counter() - started
            with FeatureFile(out_test) as f:
                X, y = read_xy(f, result.card.spec.layers)
            accuracy = evaluate(result.model, X, y)["accuracy"]
            speeds[(name, model)] = count / median
            ratio = speeds[(name, model)] / speeds[(name, MODELS[0])]
            rows.append(
                f"| {name} | {model} | {median:.2f} ({min(seconds):.2f}–{max(seconds):.2f}) | "
                f"{count / median:,.0f} | **{ratio:.1f}** | {'+'.join(result.card.spec.layers)} | {fit_s:.1f} | "
                f"**{accuracy:.3f}** |"
            )
            print(rows[-1], flush=True)

    commands = []
    for model in MODELS:  # TREC as a whole command: interpreter, imports and file writing included
        shutil.rmtree(work / "cache", ignore_errors=True)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), "featurize", str(trec_train), "-m", model, "-o",
             str(work / "cmd.h5"), "--cache-dir", str(work / "cache"), "-q"],
            check=True, capture_output=True,
        )  # fmt: skip
        commands.append((model, time.perf_counter() - started))
    table = [
        "| data (train -> test) | model | featurize train, s (range) | texts/s | speed-up | layers fit chose | "
        "fit s | test accuracy |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/static.py --repeat {args.repeat}` "
        f"on {platform.machine()}, {os.cpu_count()} CPUs: in-process `featurize` from an empty cache folder "
        f"(median of {args.repeat}), default runtimes (minilm: ONNX Runtime, three layers; minilm-static: numpy), "
        "then the default `fit` and its accuracy on the test split."
    )
    after = (
        "First runs, made once per cache folder (or shared folder): "
        + "; ".join(f"{m} {s:.1f} s ({'ONNX export' if m == 'minilm' else 'distillation'})" for m, s in first.items())
        + ". TREC train as a whole `xfer featurize` command (start-up included): "
        + "; ".join(f"{m} {s:.1f} s" for m, s in commands)
        + "."
    )
    text = "## Static text backbone\n\n" + stamp + "\n\n" + "\n".join(table) + "\n\n" + after + "\n"
    (ROOT / "benchmarks/results/18-static.md").write_text(text)
    print(text)
    from speed import join_results

    join_results()


if __name__ == "__main__":
    main()
