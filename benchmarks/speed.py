"""Speed of `xfer featurize` against what users would otherwise run, measured side by side in one run.

    python benchmarks/speed.py [--sections images,text,cache,scale] [--repeat 3] [--data ../shared/datasets]
    python benchmarks/speed.py --sections gpu    # on a machine with an NVIDIA GPU
    python benchmarks/speed.py --sections storage    # local disk against a local S3 server; the index

Every comparison times whole commands (interpreter start, model load, decoding, forward passes,
writing) as subprocesses on the same machine, taking turns for ``--repeat`` rounds, and prints
the ratios of the medians. Each
mode also reports the linear-probe accuracy of its vectors, so no speed is bought with accuracy.
Results go to BENCHMARKS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from featurizer import FeatureFile
from featurizer.backbones import read_checkpoint, rename_by_order
from featurizer.spec import get_config, resolve_weights

ROOT = Path(__file__).resolve().parents[1]
XFER = [sys.executable, str(ROOT / "cli.py")]
PLAIN = [sys.executable, str(ROOT / "benchmarks" / "plain_loops.py")]


def run(cmd: list, env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def featurize(src, out: Path, cache: Path, *args) -> tuple[float, float]:
    """Time one featurize command with no cached vectors (an exported ONNX graph is kept, as for a user)."""
    if cache.exists():
        for entry in cache.iterdir():
            if entry.name != "onnx":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return run([*XFER, "featurize", src, "-o", out, "--cache-dir", cache, "-q", "--force", *args])


def read_h5(path: Path, layer: str) -> tuple[np.ndarray, list]:

    with FeatureFile(path) as f:
        return f.read(layer), f.labels


def probe(train: np.ndarray, y_train, test: np.ndarray, y_test, normalise: bool) -> float:
    """Logistic regression, C=1, the reference protocol of ../shared/datasets/README.md."""
    from sklearn.linear_model import LogisticRegression

    if normalise:
        train = train / np.linalg.norm(train, axis=1, keepdims=True)
        test = test / np.linalg.norm(test, axis=1, keepdims=True)
    return float(LogisticRegression(C=1.0, max_iter=3000).fit(train, y_train).score(test, y_test))


def folder_labels(folder: Path) -> list[str]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [p.parent.name for p in files]


def interleaved(commands: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Seconds of each command over ``repeat`` rounds, taking the commands in turn each round.

    Taking turns spreads slow spells of a shared machine over every command instead of one.
    """
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            seconds[name].append(command())
    return seconds


def timing(runs: list[float]) -> str:
    """Median seconds, with the range when there were several runs."""
    median = statistics.median(runs)
    return f"{median:.1f}" if len(runs) == 1 else f"{median:.1f} ({min(runs):.1f}–{max(runs):.1f})"


def uses_onnx(args: list[str]) -> bool:
    """Whether ``xfer featurize ARGS`` runs on ONNX Runtime on this machine (``--runtime auto``, the default,
    takes it on a CPU at fp32, and at int8 for texts)."""
    if "--runtime" in args:
        return args[args.index("--runtime") + 1] == "onnx"
    return not any(a in ("bf16", "fp16") or a.startswith("cuda") for a in args)


def exporting_runs(src: Path, cache: Path, modes: list[list[str]]) -> list[str]:
    """Run each ONNX mode once on ``src`` into a fresh ``cache``, so its graph is exported before any timing.

    The export happens once per model and machine: its time is reported apart, as "`ARGS` N s".
    """
    shutil.rmtree(cache, ignore_errors=True)
    return [
        f"`{' '.join(args) or '(defaults)'}` {featurize(src, cache.parent / 'export.h5', cache, *args)[0]:.1f} s"
        for args in modes
        if uses_onnx(args)
    ]


def timm_checkpoint(work: Path) -> Path:
    """EfficientNet-Lite0's installed ImageNet weights as a timm state dict, for the plain loop to load
    as a timm user would (the weight package names its keys its own way; featurizer maps them)."""
    import timm
    import torch

    out = work / "tf_efficientnet_lite0.pth"
    model = timm.create_model("tf_efficientnet_lite0")
    path = resolve_weights(get_config("efficientnet_lite0")).location
    model.load_state_dict(rename_by_order(read_checkpoint(path), model.state_dict(), path), strict=False)
    torch.save(model.state_dict(), out)
    return out


def image_section(
    name: str, train: Path, test: Path, work: Path, modes: list[list[str]], repeat: int, device: str = "cpu"
) -> tuple[list[str], list[str]]:
    """Table rows of the plain loop and each mode on one dataset, and notes on the first (exporting) runs.

    The plain loop runs on ``device``; the modes say their own ``--device`` where it is not the default.
    """
    notes = [f"{note} ({len(folder_labels(test))} images)" for note in exporting_runs(test, work / "cache", modes)]
    weights = timm_checkpoint(work)
    commands = {"plain": lambda: run([*PLAIN, "images", train, work / "plain_train.npy", weights, device])[0]}
    for i, args in enumerate(modes):
        commands[f"mode{i}"] = lambda i=i, args=args: featurize(train, work / f"train{i}.h5", work / "cache", *args)[0]
    seconds = interleaved(commands, repeat)
    plain_t = statistics.median(seconds["plain"])
    run([*PLAIN, "images", test, work / "plain_test.npy", weights, device])
    acc = probe(
        np.load(work / "plain_train.npy"),
        folder_labels(train),
        np.load(work / "plain_test.npy"),
        folder_labels(test),
        normalise=False,
    )
    n = len(folder_labels(train))
    rows = [
        f"| {name} | plain loop (PIL + timm transform, batch 64, fp32, {device}) | {timing(seconds['plain'])} | "
        f"{n / plain_t:.1f} | 1.00 | {acc:.3f} |"
    ]
    for i, args in enumerate(modes):
        featurize(test, work / f"test{i}.h5", work / "cache", *args)
        X, y = read_h5(work / f"train{i}.h5", "pre_logits")
        Xt, yt = read_h5(work / f"test{i}.h5", "pre_logits")
        t = statistics.median(seconds[f"mode{i}"])
        label = "xfer featurize " + (" ".join(args) or "(defaults)")
        rows.append(
            f"| {name} | {label} | {timing(seconds[f'mode{i}'])} | {len(X) / t:.1f} | **{plain_t / t:.2f}** | "
            f"{probe(X, y, Xt, yt, False):.3f} |"
        )
    print("\n".join(rows), flush=True)
    return rows, notes


def write_texts(texts: list[str], labels: list[str], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels))
    return path


def trec(src: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with open(src, encoding="latin-1") as f:
        for line in f:
            label, text = line.rstrip("\n").split(" ", 1)
            texts.append(text)
            labels.append(label.split(":")[0])
    return texts, labels


def text_section(data: Path, work: Path, modes: list[list[str]], repeat: int, device: str = "cpu") -> list[str]:
    tr_texts, tr_labels = trec(data / "trec/train_5500.label")
    te_texts, te_labels = trec(data / "trec/TREC_10.label")
    with open(data / "sst2/dev.tsv", newline="") as f:
        sst = [(r["sentence"], r["label"]) for r in csv.DictReader(f, delimiter="\t")]
    sets = {
        "TREC train (5,452 questions)": write_texts(tr_texts, tr_labels, work / "trec_train.csv"),
        "SST-2 dev.tsv (6,735 sentences)": write_texts(
            [s for s, _ in sst], [label for _, label in sst], work / "sst2.csv"
        ),
    }
    trec_test = write_texts(te_texts, te_labels, work / "trec_test.csv")
    notes = exporting_runs(trec_test, work / "cache", [["-m", "minilm", *args] for args in modes])
    rows = []
    for name, path in sets.items():
        commands = {"st": lambda path=path: run([*PLAIN, "st", path, work / "st.npy", device])[0]}
        for i, args in enumerate(modes):
            commands[f"mode{i}"] = lambda i=i, args=args, path=path: featurize(
                path, work / f"t{i}.h5", work / "cache", "-m", "minilm", "-b", "64", *args
            )[0]
        seconds = interleaved(commands, repeat)
        st_t = statistics.median(seconds["st"])
        reference = np.load(work / "st.npy")
        extra = ""
        if "TREC" in name:
            run([*PLAIN, "st", trec_test, work / "st_test.npy", device])
            extra = f"{probe(reference, tr_labels, np.load(work / 'st_test.npy'), te_labels, True):.3f}"
        rows.append(
            f"| {name} | sentence-transformers encode (batch 64, fp32, {device}) | {timing(seconds['st'])} | "
            f"{len(reference) / st_t:.0f} | 1.00 | 1.000000 | {extra} |"
        )
        for i, args in enumerate(modes):
            X, _ = read_h5(work / f"t{i}.h5", "layer.5")
            cos = (X * reference).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(reference, axis=1)
            acc = ""
            if "TREC" in name:
                featurize(trec_test, work / "tt.h5", work / "cache_test", "-m", "minilm", *args)
                Xt, yt = read_h5(work / "tt.h5", "layer.5")
                acc = f"{probe(X, tr_labels, Xt, yt, True):.3f}"
            t = statistics.median(seconds[f"mode{i}"])
            label = "xfer featurize -m minilm " + (" ".join(args) or "(defaults)")
            rows.append(
                f"| {name} | {label} | {timing(seconds[f'mode{i}'])} | {len(X) / t:.0f} | **{st_t / t:.2f}** | "
                f"{cos.min():.6f} | {acc} |"
            )
        print("\n".join(rows[-len(modes) - 1 :]), flush=True)
    if notes:
        rows += [
            "",
            "First runs, which export the ONNX graph (once per model, precision and cache folder; "
            "TREC test, 500 questions): " + "; ".join(notes) + ".",
        ]
    return rows


def synthetic_images(folder: Path, n: int, size: int = 224) -> Path:
    """``n`` distinct JPEGs: smooth random colour fields, each different."""
    from PIL import Image

    rng = np.random.default_rng(n)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i:06d}.jpg", quality=90)
    return folder


def synthetic_texts(path: Path, n: int) -> Path:
    rng = np.random.default_rng(n)
    words = [
        "the",
        "a",
        "model",
        "image",
        "text",
        "cache",
        "layer",
        "vector",
        "fast",
        "slow",
        "small",
        "large",
        "cat",
        "dog",
        "tree",
        "river",
        "city",
        "night",
    ]
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"item {i} " + " ".join(rng.choice(words, size=int(rng.integers(4, 20)))) + "\n")
    return path


def cache_section(work: Path, n: int, args: list[str]) -> list[str]:
    folder = synthetic_images(work / f"cache_images_{n}", n)
    exporting_runs(synthetic_images(work / "cache_export", 10), work / "cache", [args])
    cold, _ = featurize(folder, work / "c.h5", work / "cache", *args)
    warm, _ = run([*XFER, "featurize", folder, "-o", work / "c.h5", "--cache-dir", work / "cache", "-q", *args])
    row = f"| {n:,} synthetic 224 px JPEGs, efficientnet_lite0 {' '.join(args)} | {cold:.1f} | {warm:.2f} | **{cold / warm:.0f}** |"
    print(row, flush=True)
    return [row]


@contextmanager
def local_s3(folder: Path, prefix: str = "images") -> Iterator[tuple[str, float]]:
    """moto's S3 server on a free local port, ``folder`` uploaded to ``s3://bench/PREFIX``: (URL,
    upload seconds). Its credentials and endpoint are in the environment, for the commands run."""
    import logging
    import socket

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_EC2_METADATA_DISABLED="true",
    )
    try:
        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        started = time.perf_counter()
        fs.put(str(folder), f"bench/{prefix}", recursive=True)
        yield f"s3://bench/{prefix}", time.perf_counter() - started
    finally:
        server.stop()


def storage_section(work: Path, repeat: int, n: int = 1000) -> list[str]:
    """``xfer featurize`` of the same ``n`` JPEGs from local disk and from moto's S3 server (in this
    process, on this machine), each with a cold cache, taking turns; then each again with the cache
    warm (every object is still read, to key it by content)."""
    folder = synthetic_images(work / f"storage_images_{n}", n)
    with local_s3(folder) as (url, upload):
        cache = work / "cache_storage"
        exporting_runs(synthetic_images(work / "storage_export", 10), cache, [[]])
        sources = {"local disk": folder, "S3 (moto server, localhost)": url}
        cold = interleaved(
            {k: lambda src=v: featurize(src, work / "st.h5", cache)[0] for k, v in sources.items()}, repeat
        )
        rows = []
        base = statistics.median(cold["local disk"])
        for name, src in sources.items():
            warm, _ = run([*XFER, "featurize", src, "-o", work / "st.h5", "--cache-dir", cache, "-q", "--force"])
            median = statistics.median(cold[name])
            rows.append(f"| {name} | {timing(cold[name])} | {n / median:.0f} | {median / base:.2f} | {warm:.1f} |")
            print(rows[-1], flush=True)
    return [
        *rows,
        "",
        f"Uploading the {n:,} JPEGs ({folder_size(folder) / 2**20:.1f} MiB) to the server: {upload:.1f} s.",
    ]


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


IMAGE_SCALE = ["--runtime", "onnx"]  # exported once before the timed runs


def scale_section(work: Path, sizes: list[int]) -> list[str]:
    rows = []
    for n in sizes:
        texts = synthetic_texts(work / f"scale_{n}.txt", n)
        t, mem = featurize(texts, work / "s.h5", work / "cache_scale", "-m", "minilm", "--precision", "int8")
        rows.append(f"| texts, minilm int8 | {n:,} | {t:.1f} | {n / t:.0f} | {mem:.0f} |")
        print(rows[-1], flush=True)
    exporting_runs(synthetic_images(work / "scale_export", 10, size=96), work / "cache_scale", [IMAGE_SCALE])
    for n in sizes:
        folder = synthetic_images(work / f"scale_images_{n}", n, size=96)
        t, mem = featurize(folder, work / "s.h5", work / "cache_scale", *IMAGE_SCALE)
        rows.append(f"| 96 px JPEGs, efficientnet_lite0 onnx fp32 | {n:,} | {t:.1f} | {n / t:.0f} | {mem:.0f} |")
        print(rows[-1], flush=True)
    return rows


GPU_PRECISIONS = [[], ["--precision", "bf16"], ["--precision", "fp16"]]


def gpu_name() -> str | None:
    """The first CUDA GPU's name, or None on a machine without one."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def gpu_throughput(work: Path, n_images: int, n_texts: int, modes: list[list[str]]) -> list[str]:
    """Images/s and texts/s of whole `xfer featurize` commands in each mode, at the default (GPU) batches."""
    sources = [
        (
            synthetic_images(work / f"gpu_images_{n_images}", n_images),
            n_images,
            "synthetic 224 px JPEGs",
            ["-m", "efficientnet_lite0"],
        ),
        (synthetic_texts(work / f"gpu_texts_{n_texts}.txt", n_texts), n_texts, "synthetic texts", ["-m", "minilm"]),
    ]
    rows = []
    for src, n, what, model in sources:
        for args in modes:
            t, mem = featurize(src, work / "g.h5", work / "cache_gpu", *model, *args)
            rows.append(f"| {n:,} {what}, {' '.join(model + args)} | {t:.1f} | {n / t:.0f} | {mem:.0f} |")
            print(rows[-1], flush=True)
    return rows


def gpu_section(data: Path, work: Path, repeat: int, items: list[int], device: str = "cuda") -> list[str]:
    """The image and text comparisons on a GPU (plain loop and sentence-transformers there too), then throughput."""
    modes = [["--device", device, *precision] for precision in GPU_PRECISIONS]
    rows = ["| data | command | seconds | items/s | speed-up | LR accuracy |", "|---|---|---|---|---|---|"]
    for name, train, test in (
        ("hymenoptera train (244 JPEGs ~500x375)", "hymenoptera/train", "hymenoptera/val"),
        ("flowers12 train (720 JPEGs 224x224)", "flowers12/train", "flowers12/test"),
    ):
        rows += image_section(name, data / train, data / test, work, modes, repeat, device)[0]
    rows += ["", "| data | command | seconds | texts/s | speed-up | min cosine to ST | TREC LR accuracy |"]
    rows += ["|---|---|---|---|---|---|---|", *text_section(data, work, modes, repeat, device)]
    rows += ["", "| throughput | seconds | items/s | peak RSS MiB |", "|---|---|---|---|"]
    return rows + gpu_throughput(work, *items, modes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-bench"))
    parser.add_argument("--sections", default="images,text,cache,scale")
    parser.add_argument("--scale", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each image and text command (median)")
    parser.add_argument("--gpu-items", default="10000,100000", help="images,texts of the GPU throughput rows")
    parser.add_argument("--gpu-device", default="cuda", help=argparse.SUPPRESS)  # "cpu" checks the section's code
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/speed.py --sections {{}}"
        f"{' --scale ' + args.scale if 'scale' in sections else ''}"
        f"{' --gpu-items ' + args.gpu_items if 'gpu' in sections else ''} --repeat {args.repeat}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}."
    )
    if "images" in sections:
        modes = [[], ["--runtime", "torch"], ["--precision", "bf16"]]
        rows, notes = [], []
        for name, train, test in (
            ("hymenoptera train (244 JPEGs ~500x375; decode-bound)", "hymenoptera/train", "hymenoptera/val"),
            ("flowers12 train (720 JPEGs 224x224; compute-bound)", "flowers12/train", "flowers12/test"),
        ):
            set_rows, set_notes = image_section(
                name, args.data / train, args.data / test, args.work, modes, args.repeat
            )
            rows += set_rows
            notes += [f"{name.split()[0]}: {note}" for note in set_notes]
        if notes:
            rows += [
                "",
                "First runs, which export the ONNX graph (once per model and cache folder): " + "; ".join(notes),
            ]
        write_section(
            results / "1-images.md",
            "Images",
            stamp.format("images"),
            ["| data | command | seconds | images/s | speed-up | LR accuracy |", "|---|---|---|---|---|---|", *rows],
        )
    if "text" in sections:
        text_modes = [[], ["--precision", "int8"], ["--runtime", "torch"], ["--precision", "bf16"]]
        text_modes.append(["--runtime", "torch", "--precision", "int8"])
        rows = text_section(args.data, args.work, text_modes, args.repeat)
        write_section(
            results / "2-text.md",
            "Texts",
            stamp.format("text"),
            [
                "| data | command | seconds | texts/s | speed-up | min cosine to ST | TREC LR accuracy |",
                "|---|---|---|---|---|---|---|",
                *rows,
            ],
        )
    if "cache" in sections:
        rows = cache_section(args.work, 10_000, ["--runtime", "onnx"])
        write_section(
            results / "3-cache.md",
            "Cache",
            stamp.format("cache"),
            ["| items | first run s | cached re-run s | ratio |", "|---|---|---|---|", *rows],
        )
    if "scale" in sections:
        rows = scale_section(args.work, [int(n) for n in args.scale.split(",")])
        write_section(
            results / "4-scale.md",
            "Scale",
            stamp.format("scale"),
            ["| items | n | seconds | items/s | peak RSS MiB |", "|---|---|---|---|---|", *rows],
        )
    if "storage" in sections:
        from index import write_index_section

        rows = storage_section(args.work, args.repeat)
        write_section(
            results / "15-storage.md",
            "Object storage",
            stamp.format("storage")
            + " The same 1,000 synthetic 224 px JPEGs featurized (efficientnet_lite0, ONNX Runtime) from a local "
            "folder and from moto's S3 server on this machine, cold cache; 'cached re-run' keeps the cache warm. "
            "Index build and query times are in the Index section, measured in the same run.",
            [
                "| source | cold cache s | images/s | time vs local | cached re-run s |",
                "|---|---|---|---|---|",
                *rows,
            ],
        )
        write_index_section()
    if "gpu" in sections:
        name = gpu_name() if args.gpu_device == "cuda" else "(code check on the CPU)"
        if name is None:
            print("gpu: PyTorch sees no CUDA GPU on this machine; section skipped", flush=True)
        else:
            items = [int(n) for n in args.gpu_items.split(",")]
            rows = gpu_section(args.data, args.work, args.repeat, items, args.gpu_device)
            write_section(results / "5-gpu.md", "GPU", f"{stamp.format('gpu')} GPU: {name}.", rows)
    join_results()


def join_results() -> None:
    """BENCHMARKS.md from the section files in benchmarks/results/."""
    intro = (
        "# Benchmarks\n\nWhole commands are timed as subprocesses in one run per section; image and text commands "
        "take turns for several rounds and report the median (range in brackets); "
        "speed-ups are medians against the first row of each block. Sections are kept in benchmarks/results/ and "
        "joined here; each names the command that measured it.\n"
    )

    def number(path: Path) -> tuple:  # 2b after 2, 10 after 9
        head = path.stem.split("-")[0]
        digits = "".join(c for c in head if c.isdigit())
        return (int(digits or 0), head)

    sections = sorted((ROOT / "benchmarks" / "results").glob("*.md"), key=number)
    parts = [intro] + [p.read_text() for p in sections]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))
    print((ROOT / "BENCHMARKS.md").read_text())


def write_section(path: Path, title: str, stamp: str, table: list[str]) -> None:
    path.write_text(f"## {title}\n\n{stamp}\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
