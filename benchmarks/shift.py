"""Shifted targets built by a script, the shift measures on each, and whether adaptation helps.

flowers12's test photos are corrupted in the manner of ImageNet-C (grayscale, Gaussian blur,
darkening, JPEG compression), each at three strengths, into a work folder. For each target:
the shift measures of ``xfer shift`` against the training features, the test accuracy of the
default head fitted on the training photos, and that of heads fitted with ``--adapt mean``,
``coral``, ``subspace`` and ``reweight`` towards the (unlabelled) corrupted photos, and with
``--adapt auto`` (chosen without target labels; the method it kept in brackets). One layer (pre_logits)
throughout, so that the comparison is about adaptation, not layer choice.

    python benchmarks/shift.py [--data ../shared/datasets] [--work /tmp/featurizer-shift-bench]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from pathlib import Path

from featurizer import FeatureFile, featurize
from pipelines import evaluate, fit, read_xy
from pipelines.evaluate import measure_shift

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

CORRUPTIONS = {  # name -> strengths, mildest first
    "grayscale": [0.33, 0.66, 1.0],  # share of the colour removed
    "blur": [1.0, 2.0, 4.0],  # Gaussian radius in pixels (images are 224 px)
    "dark": [0.7, 0.45, 0.25],  # brightness factor
    "jpeg": [30, 10, 4],  # JPEG quality
}


def corrupt(image, name: str, strength):
    from PIL import Image, ImageEnhance, ImageFilter

    if name == "grayscale":
        return ImageEnhance.Color(image).enhance(1 - strength)
    if name == "blur":
        return image.filter(ImageFilter.GaussianBlur(strength))
    if name == "dark":
        return ImageEnhance.Brightness(image).enhance(strength)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=strength)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def write_corrupted(src: Path, dst: Path, name: str, strength) -> Path:
    from PIL import Image

    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    for path in sorted(src.rglob("*.jpg")):
        out = tmp / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        corrupt(Image.open(path).convert("RGB"), name, strength).save(out, quality=95)
    tmp.rename(dst)
    return dst


def main() -> None:
    from speed import join_results, write_section

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurizer-shift-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache"
    train = args.work / "train.h5"
    featurize(args.data / "flowers12/train", None, "pre_logits", output=train, cache_dir=cache, progress=False)
    plain = fit(train, "logreg")
    rows = [
        "| target | strength | MMD | MMD p | proxy A-distance | no adaptation | mean | coral | subspace | reweight "
        "| auto (kept) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    targets = [("clean", None)] + [(name, s) for name, strengths in CORRUPTIONS.items() for s in strengths]
    for name, strength in targets:
        folder = args.data / "flowers12/test"
        if strength is not None:
            folder = write_corrupted(folder, args.work / f"{name}-{strength}", name, strength)
        target = args.work / f"{name}-{strength}.h5"
        featurize(folder, None, "pre_logits", output=target, cache_dir=cache, progress=False)
        report = measure_shift(train, target)
        with FeatureFile(target) as f:
            X, y = read_xy(f, ("pre_logits",))
        cells = [f"{evaluate(plain.model, X, y)['accuracy']:.3f}"]
        for method in ("mean", "coral", "subspace", "reweight"):
            adapted = fit(train, "logreg", adapt=method, target=target)
            cells.append(f"{evaluate(adapted.model, X, y)['accuracy']:.3f}")
        best = max(cells[1:])
        cells = [f"**{c}**" if c == best and float(c) > float(cells[0]) else c for c in cells]
        auto = fit(train, "logreg", adapt="auto", target=target)
        cells.append(f"{evaluate(auto.model, X, y)['accuracy']:.3f} ({auto.card.adaptation['method']})")
        rows.append(
            f"| {name} | {strength if strength is not None else '-'} | {report.mmd:.4f} | {report.mmd_p:.3f} | "
            f"{report.proxy_a:.2f} | {' | '.join(cells)} |"
        )
        print(rows[-1], flush=True)
    stamp = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/shift.py` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs: efficientnet_lite0 pre_logits (ONNX Runtime), logistic regression (C by CV) "
        "fitted on flowers12 train, tested on flowers12 test corrupted by a script (ImageNet-C-like). Shift "
        "measures against the training features; adaptation is transductive (the unlabelled corrupted test "
        "photos are the target). Bold: the best fixed adaptation where it beats no adaptation. auto: chosen by "
        "circular validation on the training labels only (pipelines.adapt.choose_adaptation)."
    )
    write_section(ROOT / "benchmarks" / "results" / "9-shift.md", "Domain shift", stamp, rows)
    join_results()


if __name__ == "__main__":
    main()
