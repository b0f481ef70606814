"""Accuracy of the fast text modes on data that played no part in designing them (a held-out quality guard).

The int8 modes were chosen by closeness to fp32 on TREC train and SST-2 dev, and the smoothing
scales come from bundled sentences; here they meet SST-2's test set (5,000 random training
sentences, seed 0, as in ../shared/datasets/README.md) and AG News (its 7,600 texts split in
half, seed 0). Linear probe: logistic regression, C=1, on L2-normalised mean-pooled vectors.

    python benchmarks/text_modes.py [--data ../shared/datasets]
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from featurizer import Extractor
from featurizer.inputs import texts_as_inputs

ROOT = Path(__file__).resolve().parents[1]
MODES = [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"), ("torch", "int8")]

Split = tuple[list[str], list[str], list[str], list[str]]  # train texts, labels, test texts, labels


def sst2(data: Path) -> Split:
    with open(data / "sst2/train.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(data / "sst2/test.tsv", newline="") as f:
        test = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    pick = np.random.default_rng(0).choice(len(rows), 5000, replace=False)
    return (
        [rows[i]["sentence"] for i in pick],
        [rows[i]["label"] for i in pick],
        [r["sentence"] for r in test],
        [r["label"] for r in test],
    )


def agnews(data: Path) -> Split:
    lines = (data / "agnews/test.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.rsplit("\t", 1) for line in lines if line.strip()]
    order = np.random.default_rng(0).permutation(len(rows))
    train, test = order[: len(rows) // 2], order[len(rows) // 2 :]
    return (
        [rows[i][0] for i in train],
        [rows[i][1] for i in train],
        [rows[i][0] for i in test],
        [rows[i][1] for i in test],
    )


def vectors(extractor: Extractor, texts: list[str]) -> np.ndarray:
    inputs = texts_as_inputs(texts)
    keys, errors = extractor.keys(inputs)
    assert not errors, errors[:3]
    extractor.ensure(inputs, keys)
    x = extractor.vectors("layer.5", keys)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/featurizer-text-modes"))
    args = parser.parse_args()
    sets = {"SST-2 (5,000 train -> 872 test)": sst2(args.data), "AG News (3,800 -> 3,800)": agnews(args.data)}
    rows, exact = [], {}
    for runtime, precision in MODES:
        extractor = Extractor.for_model(
            "minilm", runtime=runtime, precision=precision, cache_dir=args.cache, progress=False
        )
        cells = []
        for name, (train, y_train, test, y_test) in sets.items():
            x_train, x_test = vectors(extractor, train), vectors(extractor, test)
            accuracy = LogisticRegression(C=1.0, max_iter=3000).fit(x_train, y_train).score(x_test, y_test)
            exact.setdefault(name, x_test)  # the first mode, torch fp32, is the reference
            cells += [f"{accuracy:.3f}", f"{(x_test * exact[name]).sum(1).min():.4f}"]
        rows.append(f"| `--runtime {runtime} --precision {precision}` | {' | '.join(cells)} |")
        print(rows[-1], flush=True)
    names = list(sets)
    table = [
        f"| mode | {names[0]} accuracy | min cosine to fp32 | {names[1]} accuracy | min cosine to fp32 |",
        "|---|---|---|---|---|",
        *rows,
    ]
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/text_modes.py` on "
        f"{platform.machine()}: minilm, layer.5 mean-pooled, logistic regression C=1; data not used to design "
        "the int8 modes."
    )
    (ROOT / "benchmarks/results/2b-text-modes.md").write_text(
        "## Text modes on held-out data\n\n" + stamp + "\n\n" + "\n".join(table) + "\n"
    )
    from speed import join_results

    join_results()


if __name__ == "__main__":
    main()
