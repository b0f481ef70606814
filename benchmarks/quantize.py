"""Quantised vectors: file size, index build and query times, and recall at 10 against the float index.

Two sets of 384-d vectors: every real text in ../shared/datasets (SST-2 train, dev and test, AG News,
TREC train and test; 1,000 of them held out as queries) through minilm's layer.5, and 100,000
synthetic ones clustered around 100 centres (as benchmarks/index.py draws them; 1,000 more as
queries). Each is indexed as float (exact inner product), int8 (FAISS 8-bit scalar quantiser) and
binary (a bit above each dimension's median, Hamming search, the RESCORE x 10 nearest rescored
with the float query against their int8 codes on disk; and without rescoring, for comparison), and searched through ``pipelines.index.search`` with a feature file of
the queries. Recall at 10: the share of the float index's 10 neighbours that the quantised one returns.

    python benchmarks/quantize.py [--data ../shared/datasets]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
from index import vectors as clustered

from featurizer import FeatureFile, FeatureFileWriter, featurize
from featurizer.backbones import FeatureOptions, resolve_spec
from pipelines.index import RESCORE, build_index, search

ROOT = Path(__file__).resolve().parents[1]
QUERIES = 1000


def real_texts(data: Path) -> list[str]:
    texts = []
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        with open(data / "sst2" / name, newline="") as f:
            texts += [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    texts += [line.rsplit("\t", 1)[0] for line in (data / "agnews/test.tsv").read_text().splitlines() if line.strip()]
    for name in ("train_5500.label", "TREC_10.label"):
        with open(data / "trec" / name, encoding="latin-1") as f:
            texts += [line.rstrip("\n").split(" ", 1)[1] for line in f]
    return list(dict.fromkeys(t for t in texts if t.strip()))  # each text once


def write_vectors(path: Path, X: np.ndarray, ids: list[str]) -> Path:
    spec = resolve_spec(FeatureOptions("minilm", ("layer.5",)))
    with FeatureFileWriter(path, spec, ids) as w:
        w.write_layer("layer.5", 0, X.astype(np.float32))
    return path


def measure(items: Path, queries: Path, work: Path) -> list[tuple[str, int, int, float, float, float]]:
    """(index, searched bytes, folder bytes, build s, query s, recall at 10) for each kind of index."""
    rows, reference = [], None
    for name, method, rescore in (
        ("float (flat)", None, None),
        ("int8", "int8", None),
        (f"binary, rescored x{RESCORE}", "binary", RESCORE),
        ("binary, Hamming only (no rescoring)", "binary", 1),
    ):
        folder = work / f"idx-{name.split()[0].strip(',')}-{rescore}"
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        build_index(items, folder, "layer.5", quantization=method)
        build = time.perf_counter() - started
        started = time.perf_counter()
        found = search(folder, [queries], k=10, rescore=rescore)
        query = time.perf_counter() - started
        pairs = {(q, item) for q, _, item, _, _ in found}
        reference = reference or pairs
        searched = (folder / "index.faiss").stat().st_size
        on_disk = sum(p.stat().st_size for p in folder.iterdir() if p.name in ("index.faiss", "rescore.npy"))
        rows.append((name, searched, on_disk, build, query, len(pairs & reference) / len(reference)))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-quantize"))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FEATURIZER_ONNX_DIR", str(work / "onnx"))

    texts = real_texts(args.data)
    order = np.random.default_rng(0).permutation(len(texts))
    table = work / "texts.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([["text"], *([texts[i]] for i in order)])
    started = time.perf_counter()
    every = work / "texts.h5"
    if not every.exists():
        featurize(table, "minilm", "layer.5", output=every, cache_dir=work / "cache", progress=False)
    print(f"featurized {len(texts)} texts in {time.perf_counter() - started:.0f} s", flush=True)
    with FeatureFile(every) as f:
        X, ids = f.read("layer.5"), f.ids
    real = (
        write_vectors(work / "real-items.h5", X[QUERIES:], ids[QUERIES:]),
        write_vectors(work / "real-queries.h5", X[:QUERIES], ids[:QUERIES]),
    )
    Y = clustered(100_000 + QUERIES)
    names = [f"v{i}" for i in range(len(Y))]
    synthetic = (
        write_vectors(work / "syn-items.h5", Y[QUERIES:], names[QUERIES:]),
        write_vectors(work / "syn-queries.h5", Y[:QUERIES], names[:QUERIES]),
    )
    lines = []
    for label, (items, queries) in (
        (f"real texts, minilm layer.5 ({len(X) - QUERIES:,})", real),
        ("clustered synthetic (100,000)", synthetic),
    ):
        rows = measure(items, queries, work)
        base = rows[0][1]
        for name, size, on_disk, build, query, recall in rows:
            lines.append(
                f"| {label} | {name} | {size / 2**20:.1f} | **{base / size:.1f}x** | {on_disk / 2**20:.1f} | "
                f"{build:.2f} | {query:.2f} | **{recall:.3f}** |"
            )
    table_md = [
        "| vectors (items) | index | searched index MiB | smaller | on disk MiB (with rescoring codes) | build s | "
        "1,000 queries s | recall at 10 |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
    ]
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/quantize.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs: `xfer index --quantize` through the library (build_index, then search with a "
        "feature file of 1,000 held-out queries, loading included); recall at 10 against the float flat index."
    )
    text = "## Quantised vectors\n\n" + stamp + "\n\n" + "\n".join(table_md) + "\n"
    (ROOT / "benchmarks/results/19-quantize.md").write_text(text)
    print(text)
    from speed import join_results

    join_results()


if __name__ == "__main__":
    main()
