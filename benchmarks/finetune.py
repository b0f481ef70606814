"""Fine-tuning against the frozen linear probe and a representation without transfer.

For each set: test accuracy and wall time of (a) the frozen probe: logistic regression (C by CV)
on the backbone's cached features, (b) the raw baseline: the same on 16x16 raw pixels (images)
or TF-IDF (texts), (c) ``xfer finetune`` with its defaults, then the same logistic regression on
the tuned backbone's features, for each method: the default (``--schedule auto``), L2-SP, LoRA
and DANN (``METHODS``), with time and trainable parameters. Images: the demo's digits (60 per
class), flowers12 with 5 and 20 photos per class, and flowers12 tested on its colourless photos
(efficientnet_lite0, pre_logits). Texts: TREC with 8 training questions per class (minilm,
layer.5), tested on TREC's test set.

    python benchmarks/finetune.py [--data ../shared/datasets] [--work /tmp/featurizer-finetune-bench]
        [--only digits flowers12-5 ...] [--methods default lora ...]
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
from pipelines.finetune import Schedule, TuneReport, candidate_schedules, finetune
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


METHODS = ("default", "l2sp", "lora", "dann")  # `xfer finetune` with no option, --regularize l2sp, ...


def method_schedules(method: str, modality: str) -> list[Schedule]:
    """The schedules ``xfer finetune`` runs for ``method`` (texts use the first's options and keep the
    frozen encoder when tuning loses on validation, as images do)."""
    options = {"default": {}, "l2sp": {"regularize": "l2sp"}, "lora": {"adapter": "lora"}, "dann": {"adapt": "dann"}}
    return candidate_schedules("auto", **options[method])


def tuned_accuracy(
    model: str, layer: str, train, test, work: Path, name: str, schedules: list[Schedule], target=None
) -> tuple[float, float, TuneReport]:
    """(test accuracy, seconds of fine-tuning and probing, training report) of the tuned backbone."""

    started = time.perf_counter()
    tuned = work / f"{name}-tuned"
    report = finetune(train, model, tuned, schedules, force=True, progress=False, target=target)
    accuracy, _ = probe_accuracy(str(tuned), layer, train, test, work, f"{name}-tuned")
    return accuracy, time.perf_counter() - started, report


def per_class_subset(src: Path, per_class: int, dst: Path, seed: int = 0) -> Path:
    """A copy of the first ``per_class`` images of each class folder of ``src`` (a seeded draw)."""
    if dst.exists():
        return dst
    rng = np.random.default_rng(seed)
    tmp = dst.with_name(dst.name + ".tmp")
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        for i in rng.permutation(len(files))[:per_class]:
            (tmp / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(files[i], tmp / folder.name / files[i].name)
    tmp.rename(dst)
    return dst


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
    from shift import write_corrupted
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-finetune-bench"))
    parser.add_argument(
        "--only", nargs="*", default=["digits", "flowers12-5", "flowers12-20", "trec8", "flowers12-gray"],
        help="sets; each runs the frozen probe and every method",
    )  # fmt: skip
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    digits = args.work / "digits"
    if not digits.exists():
        write_digits(digits, per_class=60)
    flowers = args.data / "flowers12"
    trec_train, trec_test = trec_files(args.data, args.work)
    sets = {  # name: (modality, model, train, test, DANN's target)
        "digits": ("image", "efficientnet_lite0", digits / "train", digits / "test", digits / "test"),
        "flowers12-5": ("image", "efficientnet_lite0", per_class_subset(flowers / "train", 5, args.work / "fl5"),
                        flowers / "test", flowers / "test"),
        "flowers12-20": ("image", "efficientnet_lite0", per_class_subset(flowers / "train", 20, args.work / "fl20"),
                         flowers / "test", flowers / "test"),
        "trec8": ("text", "minilm", trec_subset(trec_train, 8, args.work / "trec8.csv"), trec_test, trec_test),
    }  # fmt: skip
    if "flowers12-gray" in args.only:  # the shift benchmark's worst corruption: grayscale 1.0
        gray = write_corrupted(flowers / "test", args.work / "flowers12-test-gray", "grayscale", 1.0)
        sets["flowers12-gray"] = ("image", "efficientnet_lite0", flowers / "train", gray, gray)
    rows = [
        "| set | method | train items | test accuracy | kept | best val / probe val | trainable parameters | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.only:
        modality, model, train, test, target = sets[name]
        layer = IMAGE_LAYER if modality == "image" else TEXT_LAYER
        probe, probe_s = probe_accuracy(model, layer, train, test, args.work, name)
        raw, _ = raw_accuracy(train, test, modality)
        items = len(read_inputs(train, modality))
        rows.append(f"| {name} | frozen probe (raw: {raw:.3f}) | {items} | {probe:.3f} | - | - | - | {probe_s:.0f} |")
        print(rows[-1], flush=True)
        for method in args.methods:
            schedules = method_schedules(method, modality)
            if name == "flowers12-gray" and method not in ("default", "dann"):
                continue
            tuned, tuned_s, report = tuned_accuracy(
                model, layer, train, test, args.work, name, schedules, target if method == "dann" else None
            )
            vals = "-" if report.probe_val_accuracy is None else (
                f"{report.best_val_accuracy:.3f} / {report.probe_val_accuracy:.3f}"
            )  # fmt: skip
            rows.append(
                f"| {name} | {method} | {report.items} | {tuned:.3f} | {report.chosen} | {vals} | "
                f"{report.trainable_parameters:,} | {tuned_s:.0f} |"
            )
            print(rows[-1], flush=True)
            shutil.rmtree(args.work / f"{name}-tuned", ignore_errors=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/finetune.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, no GPU: test accuracy of logistic regression (C by CV) on efficientnet_lite0 "
        f"{IMAGE_LAYER} / minilm {TEXT_LAYER} features, frozen (the probe; raw: the same head on 16x16 pixels or "
        "TF-IDF) and after `xfer finetune` (images: default = `--schedule auto`, gentle and deep tried within the "
        "5-minute budget, the best on a 20% validation split kept, or the frozen backbone; l2sp = the same with "
        "`--regularize l2sp`; lora = `--adapter lora --rank 8`; dann = `--adapt dann --target` the unlabelled test "
        "images or texts; texts: 4,000 contrastive pairs from the training split, lora on query/key/value, the frozen encoder kept "
        "when the tuned one does not beat it on the validation split). 'kept': the schedule auto kept; 's': "
        "fine-tuning plus featurizing train and test with the tuned backbone. flowers12-N: N training photos per "
        "class; flowers12-gray: the whole train set, tested on the test photos with their colour removed (the "
        "shift benchmark's grayscale 1.0, where `fit --adapt coral` scored 0.875 and no adaptation 0.800)."
    )
    write_section(ROOT / "benchmarks" / "results" / "13-finetune.md", "Fine-tuning", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
