"""Zero-shot from class descriptions, and the descriptions as a prior for a few labels.

TREC (train pool, TREC_10 test) and AG News (test.tsv halved, seed 0), MiniLM's last layer. The
class descriptions are in benchmarks/classes/, written once from the datasets' documentation and
not tuned on any test set; one template, "{}". Reports zero-shot accuracy (no labels), and for
1, 2 and 8 labelled examples per class (10 seeded draws each, ``xfer fewshot``'s sampler):
logistic regression (MTEB's protocol), plain prototypes, and prototypes with the class text as a
prior (weight by CV where each class has two examples or more; 4 at one example).

    python benchmarks/zeroshot.py [--data ../shared/datasets]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from featurizer import FeatureFile, featurize
from pipelines import read_xy
from pipelines.fit import class_text_vectors, few_shot_head, read_class_texts, sample_few_shot, zero_shot_head

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

SHOTS, RUNS = (1, 2, 8), 10


def main() -> None:
    import warnings

    from accuracy import trec_files
    from active import agnews_halves
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-zeroshot-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sets = {
        "TREC": (*trec_files(args.data, args.work), ROOT / "benchmarks/classes/trec.txt"),
        "AG News": (*agnews_halves(args.data, args.work), ROOT / "benchmarks/classes/agnews.txt"),
    }
    columns = " | ".join(f"{n}-shot" for n in SHOTS)
    rows = [f"| data | head | zero-shot | {columns} |", "|---|---|---|" + "---|" * len(SHOTS)]
    for name, (pool_src, test_src, class_file) in sets.items():
        arrays, spec = [], None
        for split, src in (("pool", pool_src), ("test", test_src)):
            out = args.work / f"{name.replace(' ', '')}-{split}.h5"
            featurize(src, "minilm", "-1", output=out, cache_dir=args.work / "cache", progress=False)
            with FeatureFile(out) as f:
                arrays += list(read_xy(f, tuple(f.layers)))
                spec = f.spec
        X, y, X_test, y_test = arrays
        classes, descriptions = read_class_texts(class_file)
        vectors = class_text_vectors(spec, descriptions)
        alone = zero_shot_head(vectors, classes)[0]
        zero = float((alone.predict(X_test) == y_test).mean())
        results: dict[str, list[str]] = {"logreg": [], "prototype": [], "prototype + class text": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for n in SHOTS:
                scores: dict[str, list[float]] = {head: [] for head in results}
                for run in range(RUNS):
                    idx = sample_few_shot(y, n, run)
                    for head in ("logreg", "prototype"):
                        model = clone(few_shot_head(head, 100 if head == "logreg" else None)).fit(X[idx], y[idx])
                        scores[head].append(float(model.score(X_test, y_test)))
                    prior = zero_shot_head(vectors, classes, X[idx], y[idx], run)[0]
                    scores["prototype + class text"].append(float((prior.predict(X_test) == y_test).mean()))
                for head, values in scores.items():
                    results[head].append(f"{np.mean(values):.3f} ± {np.std(values):.3f}")
        for head, cells in results.items():
            first = f"{zero:.3f}" if head == "prototype + class text" else ""
            rows.append(f"| {name} | {head} | {first} | {' | '.join(cells)} |")
            print(rows[-1], flush=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/zeroshot.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs: MiniLM last layer; class descriptions in benchmarks/classes/ (written once, "
        f"not tuned on the test sets); mean ± std over {RUNS} seeded draws of N examples per class. The "
        "zero-shot column is the class text alone (no labels)."
    )
    write_section(ROOT / "benchmarks" / "results" / "11-zeroshot.md", "Zero-shot", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
