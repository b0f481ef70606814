"""Throughput of `xfer embed`: local engine against the Ray engine with 1 and 2 workers, same data.

    python benchmarks/ray_engine.py [--n 600] [--work /tmp/featurizer-ray-bench]

Whole commands timed one after another in one run, each with a fresh cache and output folder.
Writes benchmarks/results/5-ray.md and rejoins BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import ROOT, XFER, join_results, run, synthetic_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-ray-bench"))
    args = parser.parse_args()
    folder = synthetic_images(args.work / f"images_{args.n}", args.n, size=96)
    rows = []
    base = None
    for label, extra in (
        ("local engine", []),
        ("ray, 1 actor", ["--engine", "ray", "--actors", "1"]),
        ("ray, 2 actors", ["--engine", "ray", "--actors", "2"]),
    ):
        out, cache = args.work / "out", args.work / "cache"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        seconds, _ = run([*XFER, "embed", folder, "-o", out, "--cache-dir", cache, "--shard-size", "100", "-q", *extra])
        base = base or seconds
        rows.append(f"| {label} | {seconds:.1f} | {args.n / seconds:.1f} | {seconds / base:.2f} |")
        print(rows[-1], flush=True)
    text = (
        f"## Ray engine\n\nMeasured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/ray_engine.py --n {args.n}` "
        f"on {platform.machine()}, {os.cpu_count()} CPUs: {args.n} synthetic 96 px JPEGs, efficientnet_lite0 fp32, "
        "shards of 100.\n\n| engine | seconds | images/s | time vs local |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    (ROOT / "benchmarks" / "results" / "5-ray.md").write_text(text)
    join_results()


if __name__ == "__main__":
    main()
