"""Class-incremental learning: `xfer update` against a joint refit and against refitting on the new data only.

flowers12 (efficientnet_lite0 pre_logits) arrives in 3 steps of 4 classes, TREC (minilm layer.5) in
2 steps of 3 classes. Each step's training items are only that step's classes. After the last step:
test accuracy over every class of (a) the model grown by `update` from the first step's `fit`,
(b) a joint refit on all the training items (what rehearsal tries to match), (c) a refit on the
last step's items alone (forgetting: it knows only those classes); and the seconds of each
update and fit. Then the same updates with rehearsal memories of other sizes.

    python benchmarks/incremental.py [--data ../shared/datasets] [--work /tmp/featurizer-incremental-bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, FeatureFileWriter, featurize
from pipelines import load_model
from pipelines.fit import fit_file, read_xy, update_file
from pipelines.heads import MEMORY_PER_CLASS
from pipelines.models import head_of

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
SIZES = (10, 50, MEMORY_PER_CLASS, 500)  # memory items per class tried (the default among them)


def subset(source: Path, target: Path, keep) -> Path:
    """The items of ``source`` whose label is in ``keep``, as a feature file of their own."""
    with FeatureFile(source) as f:
        rows = np.flatnonzero(np.isin(np.asarray(f.labels), list(keep)))
        with FeatureFileWriter(target, f.spec, [f.ids[r] for r in rows], [f.labels[r] for r in rows]) as w:
            for layer in f.layers:
                w.write_layer(layer, 0, f.read(layer)[rows])
    return target


def accuracy(model_path: Path, test: Path) -> float:
    model, card = load_model(model_path)
    with FeatureFile(test) as f:
        X, y = read_xy(f, card.spec.layers)
    return float((head_of(model).predict(X) == y).mean())


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def run_set(name: str, train: Path, test: Path, layer: str, steps: list[list[str]], work: Path) -> list[str]:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    parts = [subset(train, folder / f"step{k + 1}.h5", classes) for k, classes in enumerate(steps)]
    fit = {"head": "logreg", "layer": (layer,), "force": True}
    rows = []
    for memory in SIZES:
        label = f"{memory} (the default)" if memory == MEMORY_PER_CLASS else str(memory)
        _, fit_s = timed(fit_file, parts[0], output=folder / "m1.skops", memory=memory, **fit)
        seconds, model = [], folder / "m1.skops"
        for k, part in enumerate(parts[1:], start=2):
            grown = folder / f"m{k}.skops"
            result, s = timed(update_file, model, part, grown, force=True, memory=memory)
            seconds.append(s)
            model = grown
        rows.append((label, accuracy(model, test), seconds, result))
    _, joint_s = timed(fit_file, train, output=folder / "joint.skops", **fit)
    _, naive_s = timed(fit_file, parts[-1], output=folder / "naive.skops", **fit)
    joint_acc, naive_acc = accuracy(folder / "joint.skops", test), accuracy(folder / "naive.skops", test)
    steps_text = " + ".join(str(len(s)) for s in steps)
    lines = [
        f"| {name} ({steps_text} classes) | joint refit on all training items | {joint_acc:.3f} | - | {joint_s:.1f} | - |",
        f"| {name} | refit on the last step's items only | {naive_acc:.3f} | - | {naive_s:.1f} | - |",
    ]
    for label, acc, seconds, result in rows:
        cv = f"{result.old_before:.3f} -> {result.old_after:.3f}, new {result.new_accuracy:.3f}"  # the last step's
        times = ", ".join(f"{s:.2f}" for s in seconds)
        lines.append(f"| {name} | `update`, memory {label} per class | {acc:.3f} | {times} | {fit_s:.1f} | {cv} |")
    for line in lines:
        print(line, flush=True)
    return lines


def main() -> None:
    from accuracy import trec_files
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-incremental-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    files = {}
    trec_train, trec_test = trec_files(args.data, args.work)
    sources = {
        "flowers12": ("efficientnet_lite0", "pre_logits", args.data / "flowers12/train", args.data / "flowers12/test"),
        "trec": ("minilm", "layer.5", trec_train, trec_test),
    }
    for name, (model, layer, train, test) in sources.items():
        for split, source in (("train", train), ("test", test)):
            path = files[name, split] = args.work / f"{name}-{split}.h5"
            if not path.exists():
                featurize(source, model, layer, output=path, progress=False)
    table = [
        "| data (classes per step) | model | test accuracy, all classes | each update s | first fit s "
        "| last update: old classes before (CV at fit or last update) -> after (held out), new classes (held out) |",
        "|---|---|---|---|---|---|",
    ]
    for name, steps in (("flowers12", 3), ("trec", 2)):
        with FeatureFile(files[name, "train"]) as f:
            classes = sorted(set(f.labels))
        per = len(classes) // steps
        split = [classes[k * per : (k + 1) * per] for k in range(steps)]
        layer = sources[name][1]
        table += run_set(name, files[name, "train"], files[name, "test"], layer, split, args.work)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/incremental.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs: logistic regression (C by CV at the first fit), classes in sorted order split "
        "into steps; each step's file holds only its classes. `update` rehearses the memory kept with the model "
        "(herding; each memory row weighted by the items of its class it stands for) and warm-starts logistic "
        "regression from the old model; its seconds (in process) include the held-out scoring it prints. The memory "
        "size applies from the first fit. One run."
    )
    write_section(ROOT / "benchmarks" / "results" / "16-incremental.md", "Class-incremental updates", stamp, table)
    join_results()


if __name__ == "__main__":
    main()
