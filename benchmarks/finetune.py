"""Fine-tuning against the frozen linear probe and a representation without transfer.

For each set: test accuracy and wall time of (a) the frozen probe: logistic regression (C by CV)
on the backbone's cached features, (b) the raw baseline: the same on 16x16 raw pixels (images)
or TF-IDF (texts), (c) ``xfer finetune`` with its defaults, then the same logistic regression on
the tuned backbone's features. Images: the demo's digits (60 per class), hymenoptera,
flowers12 (efficientnet_lite0, pre_logits). Texts: TREC with 8 and 64 training questions per
class (minilm, layer.5), tested on TREC's test set.

    python benchmarks/finetune.py [--data ../shared/datasets] [--work /tmp/featurizer-finetune-bench]
        [--only digits trec8 ...]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, featurize
from featurizer.inputs import read_inputs
from pipelines import evaluate, fit, read_xy
from pipelines.demo_data import write_digits
from pipelines.finetune import Schedule, finetune
from pipelines.fit import cross_validate, raw_pixels

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
IMAGE_LAYER, TEXT_LAYER = "pre_logits", "layer.5"


def probe_accuracy(model: str, layer: str, train, test, work: Path, name: str) -> tuple[float, float]:
    """(test accuracy, seconds) of logistic regression on ``model``'s features of ``train``."""

    started = time.perf_counter()
    paths = [work / f"{name}-train.h5", work / f"{name}-test.h5"]
    for source, path in zip((train, test), paths):
        featurize(source, model, layer, output=path, progress=False, force=True)
    result = fit(paths[0], "logreg", layer)
    with FeatureFile(paths[1]) as f:
        X, y = read_xy(f, (layer,))
    return evaluate(result.model, X, y)["accuracy"], time.perf_counter() - started


def raw_accuracy(train, test, modality: str) -> tuple[float, float]:
    """(test accuracy, seconds) of logistic regression on 16x16 raw pixels or TF-IDF."""

    started = time.perf_counter()
    a, b = read_inputs(train, modality), read_inputs(test, modality)
    ya, yb = np.asarray(a.labels), np.asarray(b.labels)
    if modality == "image":
        model = cross_validate(raw_pixels(a.sources), ya, "logreg").model
        accuracy = float((model.predict(raw_pixels(b.sources)) == yb).mean())
    else:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegressionCV

        vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
        clf = LogisticRegressionCV(Cs=7, max_iter=2000).fit(vectorizer.fit_transform(a.sources), ya)
        accuracy = float((clf.predict(vectorizer.transform(b.sources)) == yb).mean())
    return accuracy, time.perf_counter() - started


def tuned_accuracy(
    model: str, layer: str, train, test, work: Path, name: str, schedule: str = "gentle"
) -> tuple[float, float, dict]:
    """(test accuracy, seconds of fine-tuning and probing, training report) of the tuned backbone."""

    started = time.perf_counter()
    tuned = work / f"{name}-tuned"
    report = finetune(train, model, tuned, Schedule.preset(schedule), force=True, progress=False)
    accuracy, _ = probe_accuracy(str(tuned), layer, train, test, work, f"{name}-tuned")
    return accuracy, time.perf_counter() - started, report


def trec_subset(train_csv: Path, per_class: int, out: Path, seed: int = 0) -> Path:
    with open(train_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted({r["label"] for r in rows}):
        members = [r for r in rows if r["label"] == label]
        chosen += [members[i] for i in rng.permutation(len(members))[:per_class]]
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in chosen)
    return out


def main() -> None:
    from accuracy import trec_files
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-finetune-bench"))
    parser.add_argument(
        "--only",
        nargs="*",
        default=["digits", "digits:deep", "hymenoptera", "hymenoptera:deep", "flowers12", "trec8", "trec64"],
        help="sets, each with :deep for the deep schedule (images)",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    digits = args.work / "digits"
    if not digits.exists():
        write_digits(digits, per_class=60)
    trec_train, trec_test = trec_files(args.data, args.work)
    sets = {
        "digits": ("image", "efficientnet_lite0", digits / "train", digits / "test"),
        "hymenoptera": ("image", "efficientnet_lite0", args.data / "hymenoptera/train", args.data / "hymenoptera/val"),
        "flowers12": ("image", "efficientnet_lite0", args.data / "flowers12/train", args.data / "flowers12/test"),
        "trec8": ("text", "minilm", trec_subset(trec_train, 8, args.work / "trec8.csv"), trec_test),
        "trec64": ("text", "minilm", trec_subset(trec_train, 64, args.work / "trec64.csv"), trec_test),
    }
    rows = [
        "| set | schedule | train items | frozen probe | raw (pixels / TF-IDF) | fine-tuned | fine-tune s | "
        "best epoch / of | probe s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in args.only:
        name, _, schedule = entry.partition(":")
        modality, model, train, test = sets[name]
        schedule = (schedule or "gentle") if modality == "image" else "-"
        layer = IMAGE_LAYER if modality == "image" else TEXT_LAYER
        probe, probe_s = probe_accuracy(model, layer, train, test, args.work, name)
        raw, _ = raw_accuracy(train, test, modality)
        tuned, tuned_s, report = tuned_accuracy(
            model, layer, train, test, args.work, name, schedule if modality == "image" else "gentle"
        )
        epochs = f"{report.best_epoch} / {len(report.curve)}" if report.best_epoch else "-"
        best = max(probe, raw, tuned)
        cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in (probe, raw, tuned)]
        rows.append(
            f"| {name} | {schedule} | {report.items} | {' | '.join(cells)} | {tuned_s:.0f} | {epochs} | {probe_s:.0f} |"
        )
        print(rows[-1], flush=True)
        shutil.rmtree(args.work / f"{name}-tuned", ignore_errors=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/finetune.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, no GPU: test accuracy of logistic regression (C by CV) on efficientnet_lite0 "
        f"{IMAGE_LAYER} / minilm {TEXT_LAYER} features, frozen and after `xfer finetune` with its defaults "
        "(images, gentle: head 2 epochs, then 3 stages unfrozen 2 epochs each, early stopping on a 20% validation "
        "split; deep, `--schedule deep`: head 1 epoch, then all 8 stages 2 epochs each at 15x the rates, the best "
        "validation epoch kept; texts: 4,000 contrastive pairs), against the same head on 16x16 raw pixels or TF-IDF. 'fine-tune s' "
        "includes featurizing train and test with the tuned backbone; 'probe s' is featurizing (cache cold or "
        "warm as it came) and fitting the frozen probe. Bold: the best of the three."
    )
    write_section(ROOT / "benchmarks" / "results" / "13-finetune.md", "Fine-tuning", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
