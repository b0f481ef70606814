"""Index build and query times, exact (flat) against HNSW, and HNSW's recall at 10.

Vectors: 384-d, unit length, drawn around 100 random centres (clustered, as embeddings are),
10,000 and 100,000 of them; 1,000 queries from the same distribution. Recall at 10: the share of
the exact 10 nearest neighbours that HNSW returns.

    python benchmarks/index.py
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.index import HNSW_EF_SEARCH, HNSW_M

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))


def vectors(n: int, d: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, d))
    X = centres[rng.integers(100, size=n)] + 0.6 * rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    from speed import join_results

    write_index_section()
    join_results()


def write_index_section() -> None:
    """Flat and HNSW at 10k and 100k vectors into benchmarks/results/14-index.md (also run by
    ``speed.py --sections storage``)."""
    import faiss
    from speed import write_section

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    rows = [
        "| items | index | build s | 1,000 queries s | recall at 10 |",
        "|---|---|---|---|---|",
    ]
    for n in (10_000, 100_000):
        X, Q = vectors(n), vectors(1000, seed=1)
        results = {}
        for kind in ("flat", "hnsw"):
            started = time.perf_counter()
            if kind == "flat":
                index = faiss.IndexFlatIP(X.shape[1])
            else:
                index = faiss.IndexHNSWFlat(X.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efSearch = HNSW_EF_SEARCH
            index.add(X)
            build = time.perf_counter() - started
            started = time.perf_counter()
            _, found = index.search(Q, 10)
            query = time.perf_counter() - started
            results[kind] = found
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, results["flat"])])
            rows.append(f"| {n:,} | {kind} | {build:.2f} | {query:.3f} | {recall:.3f} |")
            print(rows[-1], flush=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/index.py` (also run by `speed.py --sections storage`) on {platform.machine()}, "
        f"{os.cpu_count()} CPUs: FAISS inner product on 384-d unit vectors clustered around 100 centres; HNSW with "
        f"M={HNSW_M}, efSearch={HNSW_EF_SEARCH}; recall at 10 against the exact (flat) search."
    )
    write_section(ROOT / "benchmarks" / "results" / "14-index.md", "Index", stamp, rows)


if __name__ == "__main__":
    main()
