"""Does ``xfer rank`` order candidates as cross-validation does, and how much sooner does it answer?

For each shared set: every candidate (each model's last three distinct layers, and their
concatenation) is cross-validated on the whole training set as ``fit --layer auto`` did before
issue 15 (all candidates, logistic regression, C by CV); ``xfer rank``'s flow scores the same
candidates on a sample of 30 items per class, and LogME is also computed on the whole training
set. Prints Kendall's tau of each order against the CV order, whether the top candidate agrees,
the test accuracy of each one's pick, and the times.

    python benchmarks/rank_agreement.py [--data ../shared/datasets] [--sets hymenoptera,flowers12,trec]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from featurizer import FeatureFile, RunOptions, featurize
from featurizer.backbones import last_distinct_layers
from pipelines import evaluate, rank, read_xy
from pipelines.fit import cross_validate
from pipelines.heads import logme

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from accuracy import trec_files  # noqa: E402 - the one TREC-to-CSV conversion


def main() -> None:
    from scipy.stats import kendalltau
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-rank-bench"))
    parser.add_argument("--sets", default="hymenoptera,flowers12,trec")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    d = args.data
    sets = {
        "hymenoptera": (["efficientnet_lite0", "efficientnet_lite2"], d / "hymenoptera/train", d / "hymenoptera/val"),
        "flowers12": (["efficientnet_lite0", "efficientnet_lite2"], d / "flowers12/train", d / "flowers12/test"),
        "trec": (
            ["minilm"],
            *trec_files(d, args.work),
        ),
    }
    import shutil
    import tempfile

    cache = Path(tempfile.mkdtemp(dir=args.work))  # empty: featurizing is timed as a first run would be
    rows = [
        "| data | candidates | featurize all + CV of all (s) | rank, 30/class (s) | tau: rank vs CV | tau: LogME on all vs CV "
        "| CV's pick, test | rank's pick, test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.sets.split(","):
        models, train, test = sets[name]
        layers = {m: last_distinct_layers(m) for m in models}
        files = {}
        started = time.perf_counter()
        for m in models:
            for split, src in (("train", train), ("test", test)):
                files[m, split] = args.work / f"{name}-{m}-{split}.h5"
                if split == "train":
                    featurize(src, m, list(layers[m]), output=files[m, split], cache_dir=cache, progress=False)
        featurize_seconds = time.perf_counter() - started
        for m in models:
            featurize(test, m, list(layers[m]), output=files[m, "test"], cache_dir=cache, progress=False)
        candidates = [(m, (layer,)) for m in models for layer in layers[m]] + [(m, layers[m]) for m in models]
        cv, full, data = {}, {}, {}
        started = time.perf_counter()
        for m, group in candidates:
            with FeatureFile(files[m, "train"]) as f:
                X, y = read_xy(f, group)
            data[m, group] = X, y
            cv[m, group] = cross_validate(X, y, "logreg")
        cv_seconds = featurize_seconds + time.perf_counter() - started
        for key, (X, y) in data.items():
            full[key] = logme(X, y)
        started = time.perf_counter()
        fresh = Path(tempfile.mkdtemp(dir=args.work))  # rank featurizes its sample from nothing
        ranking = rank(train, models, None, run=RunOptions(cache_dir=fresh, progress=False))
        rank_seconds = time.perf_counter() - started
        sample = {(r.model, r.layers): r.logme for r in ranking.rows}
        keys = [k for k in candidates if k in sample]  # rank's default candidates: the last three layers
        order = {k: cv[k].mean for k in keys}
        tau_rank = kendalltau([order[k] for k in keys], [sample[k] for k in keys]).statistic
        tau_full = kendalltau([cv[k].mean for k in candidates], [full[k] for k in candidates]).statistic

        def test_accuracy(key, files=files, cv=cv) -> str:
            m, group = key
            with FeatureFile(files[m, "test"]) as f:
                X, y = read_xy(f, group)
            acc = evaluate(cv[key].model, X, y)["accuracy"]
            return f"{m}:{'+'.join(group)} {acc:.3f}"

        best_cv = max(candidates, key=lambda k: cv[k].mean)
        best_rank = (ranking.recommended.model, ranking.recommended.layers)
        rows.append(
            f"| {name} | {len(candidates)} | {cv_seconds:.1f} | {rank_seconds:.1f} | {tau_rank:.2f} ({len(keys)}) "
            f"| {tau_full:.2f} ({len(candidates)}) | {test_accuracy(best_cv)} | {test_accuracy(best_rank)} |"
        )
        print(rows[-1], flush=True)
        for key in candidates:
            shown = f"{sample[key]:.3f}" if key in sample else "-"
            print(f"   {key[0]}:{'+'.join(key[1])}  CV {cv[key].mean:.3f}  LogME all {full[key]:.3f}  sample {shown}")
        shutil.rmtree(fresh)
    shutil.rmtree(cache)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/rank_agreement.py` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs. CV: logistic regression, C by stratified CV with the "
        "one-standard-error rule, on the whole training set, for every candidate (a model's last three distinct "
        "layers and their concatenation: `xfer rank`'s default candidates). rank: `xfer rank`'s flow on 30 items per class. Both start from an empty cache: the first column includes featurizing the whole training set. Kendall's tau against the CV "
        "order (candidates in brackets); test accuracy of each one's first choice."
    )
    write_section(ROOT / "benchmarks" / "results" / "7-rank.md", "Rank", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
