"""Does ``xfer audit`` find what was planted? Flipped labels and train items copied into the test set.

On flowers12 (efficientnet_lite0) and TREC (minilm), each with the default three layers: 5% of the training
labels are flipped to another class at random (seeded), and 20 training items are copied into the
test set: for photos 18 as they are, one re-encoded as JPEG quality 70 and one resized to 60%; for
texts 18 as they are, one lower-cased and one with its final punctuation removed. Reported: the
label-issue finder's precision and recall on the flipped items, and how many of the 20 copies
``leaks`` finds at each threshold (with the test items it flags besides them, which may be real
duplicates in the data).

    python benchmarks/audit.py [--data ../shared/datasets] [--work /tmp/featurizer-audit-bench]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, featurize
from pipelines.audit import audit, leaks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

FLIP_SHARE = 0.05
COPIES = 20
THRESHOLDS = (0.90, 0.95, 0.98)


def flipped_labels(ids: list[str], labels: list[str], seed: int = 0) -> tuple[dict[str, str], set[str]]:
    """id -> label with ``FLIP_SHARE`` of them changed to another class at random, and the flipped ids."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    chosen = rng.choice(len(ids), size=round(FLIP_SHARE * len(ids)), replace=False)
    mapping = dict(zip(ids, labels))
    for i in chosen:
        others = [c for c in classes if c != labels[i]]
        mapping[ids[i]] = others[rng.integers(len(others))]
    return mapping, {ids[i] for i in chosen}


def write_labels(mapping: dict[str, str], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label"])
        writer.writerows(mapping.items())
    return path


def photo_test_with_copies(train: Path, test: Path, out: Path, seed: int = 0) -> list[str]:
    """A copy of the test folder with ``COPIES`` training photos added (one JPEG q70, one resized);
    the ids of the copies in the new folder."""
    from PIL import Image

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(test, out)
    photos = sorted(train.rglob("*.jpg"))
    chosen = np.random.default_rng(seed).choice(len(photos), size=COPIES, replace=False)
    ids = []
    for n, i in enumerate(chosen):
        src = photos[i]
        dst = out / src.parent.name / f"copy{n}-{src.name}"
        if n == 0:  # re-encoded
            buffer = io.BytesIO()
            Image.open(src).convert("RGB").save(buffer, format="JPEG", quality=70)
            dst.write_bytes(buffer.getvalue())
        elif n == 1:  # resized
            image = Image.open(src).convert("RGB")
            image.resize((int(image.width * 0.6), int(image.height * 0.6))).save(dst, quality=95)
        else:
            shutil.copyfile(src, dst)
        ids.append(f"{src.parent.name}/{dst.name}")
    return ids


def text_test_with_copies(train_csv: Path, test_csv: Path, out: Path, seed: int = 0) -> list[str]:
    """The test CSV with ``COPIES`` training texts appended (one lower-cased, one without its final
    punctuation); the ids (row numbers) of the copies."""
    with open(train_csv, newline="") as f:
        train = list(csv.DictReader(f))
    with open(test_csv, newline="") as f:
        test = list(csv.DictReader(f))
    chosen = np.random.default_rng(seed).choice(len(train), size=COPIES, replace=False)
    ids = []
    for n, i in enumerate(chosen):
        row = dict(train[i])
        if n == 0:
            row["text"] = row["text"].lower()
        elif n == 1:
            row["text"] = row["text"].rstrip(" ?.!")
        ids.append(str(len(test)))
        test.append(row)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(test[0]))
        writer.writeheader()
        writer.writerows(test)
    return ids


def run(name: str, model: str, layer: str, train_in: Path, test_in: Path, copy_ids, work: Path, cache: Path) -> list:

    clean = work / f"{name}-train-clean.h5"
    featurize(train_in, model, layer, output=clean, cache_dir=cache, progress=False)
    with FeatureFile(clean) as f:
        mapping, flipped = flipped_labels(f.ids, f.labels)
    labels = write_labels(mapping, work / f"{name}-flipped.csv")
    train = work / f"{name}-train.h5"
    featurize(train_in, model, layer, output=train, cache_dir=cache, progress=False, labels=str(labels))
    test = work / f"{name}-test.h5"
    featurize(test_in, model, layer, output=test, cache_dir=cache, progress=False)
    started = time.perf_counter()
    found = audit(train, test)
    seconds = time.perf_counter() - started
    suspects = {found.ids[e["row"]] for e in found.label_issues}
    hits = len(suspects & flipped)
    precision, recall = hits / max(len(suspects), 1), hits / len(flipped)
    rows = [
        f"| {name} | {len(found.ids)} | {len(flipped)} | {len(suspects)} | {precision:.2f} | {recall:.2f} | "
        f"{seconds:.1f} |"
    ]
    leak_rows = []
    copies = set(copy_ids)
    texts = (found.sources, found.test["sources"]) if found.modality == "text" else (None, None)
    for threshold in (*THRESHOLDS, found.threshold):
        flagged = {found.test["ids"][t["test_row"]] for t in leaks(found.X, found.test["X"], threshold, *texts)}
        shown = f"{threshold:.3f} (auto, the default)" if threshold == found.threshold else f"{threshold:.2f}"
        leak_rows.append(f"| {name} | {shown} | {len(flagged & copies)} / {COPIES} | {len(flagged - copies)} |")
    test_row = {i: r for r, i in enumerate(found.test["ids"])}
    nearest = (found.test["X"] @ found.X.T).max(axis=1)
    altered = [round(float(nearest[test_row[i]]), 4) for i in copy_ids[:2]]
    print(f"{name}: cosine similarity of the two altered copies to their nearest training item: {altered}", flush=True)
    return rows, leak_rows


def main() -> None:
    from accuracy import trec_files
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-audit-bench"))
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    flowers = args.data / "flowers12"
    photo_test = args.work / "flowers12-test-with-copies"
    photo_copies = photo_test_with_copies(flowers / "train", flowers / "test", photo_test)
    trec_train, trec_test = trec_files(args.data, args.work)
    text_test = args.work / "trec-test-with-copies.csv"
    text_copies = text_test_with_copies(trec_train, trec_test, text_test)
    issue_rows = [
        "| dataset | training items | flipped (5%) | suspects | precision | recall | audit s |",
        "|---|---|---|---|---|---|---|",
    ]
    leak_rows = [
        "| dataset | threshold | planted copies found | other test items flagged |",
        "|---|---|---|---|",
    ]
    for name, model, layer, train_in, test_in, copies in (
        ("flowers12", "efficientnet_lite0", None, flowers / "train", photo_test, photo_copies),
        ("trec", "minilm", None, trec_train, text_test, text_copies),
    ):
        issues, found = run(name, model, layer, train_in, test_in, copies, args.work, args.cache)
        issue_rows += issues
        leak_rows += found
        print("\n".join(issues + found), flush=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/audit.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs: flowers12 with efficientnet_lite0, TREC with minilm, the default three layers of each "
        "(the audit joins them, each scaled to unit length). 5% of the "
        "training labels flipped at random (seed 0); label issues by confident learning (cleanlab) on out-of-fold "
        "logistic-regression probabilities. 20 training items copied into the test set (photos: 18 as they are, "
        "one JPEG quality 70, one resized to 60%; texts: 18 as they are, one lower-cased, one without its final "
        "punctuation; texts that are the same after normalising case, spaces and punctuation count as leaks "
        "whatever their similarity). 'audit s' is the whole audit of the training file (duplicates, leaks, outliers, label issues)."
    )
    write_section(ROOT / "benchmarks" / "results" / "12-audit.md", "Audit", stamp, [*issue_rows, "", *leak_rows])
    join_results()


if __name__ == "__main__":
    main()
