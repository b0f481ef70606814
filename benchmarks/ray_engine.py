"""Throughput of `xfer embed`: local engine against the Ray engine with 1 and 2 actors, same data.

    python benchmarks/ray_engine.py [--n 600] [--work /tmp/featurizer-ray-bench] [--s3]

With --s3 the images are also read from moto's S3 server on this machine (the Ray engine through
Ray Data's read_binary_files), after the runs from local disk.

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
from speed import ROOT, XFER, join_results, local_s3, run, synthetic_images


def runs(source, where: str, args) -> list[str]:
    """The three commands on one source, one after another; rows of the results table."""
    rows, base = [], None
    for label, extra in (
        ("local engine", []),
        ("ray, 1 actor", ["--engine", "ray", "--actors", "1"]),
        ("ray, 2 actors", ["--engine", "ray", "--actors", "2"]),
    ):
        out, cache = args.work / "out", args.work / "cache"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        seconds, _ = run([*XFER, "embed", source, "-o", out, "--cache-dir", cache, "--shard-size", "100", "-q", *extra])
        base = base or seconds
        rows.append(f"| {where} | {label} | {seconds:.1f} | {args.n / seconds:.1f} | {seconds / base:.2f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-ray-bench"))
    parser.add_argument("--s3", action="store_true", help="also read the images from a local S3 server")
    args = parser.parse_args()
    folder = synthetic_images(args.work / f"images_{args.n}", args.n, size=96)
    rows = runs(folder, "local disk", args)
    if args.s3:
        with local_s3(folder) as (url, _):
            rows += runs(url, "S3 (moto, localhost)", args)
    text = (
        f"## Ray engine\n\nMeasured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/ray_engine.py --n {args.n}"
        f"{' --s3' if args.s3 else ''}` on {platform.machine()}, {os.cpu_count()} CPUs: {args.n} synthetic 96 px JPEGs, "
        "efficientnet_lite0 (ONNX Runtime), shards of 100, a fresh cache and output folder for each command.\n\n"
        "| source | engine | seconds | images/s | time vs local engine |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    (ROOT / "benchmarks" / "results" / "5-ray.md").write_text(text)
    join_results()


if __name__ == "__main__":
    main()
