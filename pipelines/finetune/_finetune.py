"""Fine-tuning a backbone when frozen features are not enough; the result is just another backbone.

Images (timm backbones, the built-in EfficientNet-Lites among them): a new linear head starts as
the linear probe fitted on the cached features (logistic regression, its standardisation folded
into the weights), is trained alone on the frozen network for ``head_epochs``, then the network's
stages are unfrozen one at a time from the top (gradual unfreezing, as in ULMFiT), each with a
learning rate ``stage_decay`` times smaller than the stage above it (discriminative rates). The
training photos get the backbone's own augmentation (timm's training transform), batch norm
statistics stay frozen (a few hundred photos cannot estimate them), and a stratified validation
split held out from the training data picks the best epoch (early stopping). Ctrl-C keeps the
best weights so far. Each stage's learning rate ramps up over its first epoch. Two named schedules
(``SCHEDULES``): ``gentle`` for photos, ``deep`` (every stage, higher rates) for data far from them.

Texts (Hugging Face encoders, MiniLM among them): SetFit-style contrastive tuning. Pairs of
labelled texts are sampled (same class: similarity 1, different classes: 0; at most ``pairs`` of
them, never all n^2) and the encoder's mean-pooled embeddings are trained so that their cosine
similarity matches (mean squared error, as SetFit's CosineSimilarityLoss).

The output folder holds the weights (safetensors), ``featurizer-tuned.json`` (the base model, the
layers and the preprocessing, so ``xfer featurize -m FOLDER`` loads it like any backbone, its
spec carrying the new weights' hash) and ``report.json`` (data hash, schedule, validation curve,
time).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from featurizer import Extractor, FeatureOptions, FeaturizerError, ReadOptions, RunOptions
from featurizer.backbones import load_backbone, resolve
from featurizer.engine import model_for
from featurizer.inputs import image_sizes, load_image, read_inputs, text_preprocessing
from featurizer.spec import IMAGE, TEXT, TUNED_FILE
from featurizer.storage import atomic_output, check_new_output, file_sha256_memo
from pipelines.fit import cross_validate

FORMAT = "featurizer-tuned/1"

# timm's training transform at three strengths. "strong" is ImageNet training's recipe (crops down
# to 8% of the photo, colour jitter 0.4): on a few hundred items it moves the features so far that
# the head learns the augmentation more than the classes (benchmarks/finetune.py).
AUGMENTATIONS = {
    "none": None,
    "light": {"scale": (0.8, 1.0), "hflip": 0.5, "color_jitter": 0.0},
    "strong": {"scale": (0.08, 1.0), "hflip": 0.5, "color_jitter": 0.4},
}


@dataclass(frozen=True)
class Schedule:
    """How to fine-tune: the options of ``xfer finetune``, decided and checked once."""

    head_epochs: int = 2  # the head alone, on the frozen network
    stages: int = 3  # network stages unfrozen, one at a time, from the top
    epochs_per_stage: int = 2
    lr: float = 1e-3  # the head's
    backbone_lr: float = 2e-5  # the top stage's; each stage below it stage_decay times less
    stage_decay: float = 2.6  # ULMFiT's factor
    batch_size: int = 32
    patience: int | None = 3  # epochs without a better validation accuracy before stopping; None: never stop
    val_share: float = 0.2
    augment: str = "light"  # images: none, light or strong (AUGMENTATIONS)
    pairs: int = 4000  # texts: contrastive pairs sampled
    text_lr: float = 2e-5
    seed: int = 0
    warmup: bool = True  # each stage's learning rate ramps up over its first epoch

    def __post_init__(self) -> None:
        if self.patience is not None and self.patience < 1:
            raise FeaturizerError(f"--patience is at least 1 epoch, not {self.patience}")
        if min(self.head_epochs, self.stages, self.epochs_per_stage, self.pairs) < 0 or self.batch_size < 1:
            raise FeaturizerError("epochs, stages, pairs and the batch size cannot be negative")
        if not 0 < self.val_share < 1:
            raise FeaturizerError(f"--val-share is a share of the training items, in (0, 1), not {self.val_share}")
        if self.augment not in AUGMENTATIONS:
            raise FeaturizerError(f"--augment is one of {', '.join(AUGMENTATIONS)}, not {self.augment!r}")
        if min(self.lr, self.backbone_lr, self.text_lr) <= 0 or self.stage_decay < 1:
            raise FeaturizerError("learning rates must be positive and the stage decay at least 1")

    def unfrozen_per_epoch(self, available: int | None = None) -> list[int]:
        """How many network stages are trainable in each epoch: 0 for the head epochs, then 1, 2, ...
        up to ``stages`` (or the ``available`` stages of the network, if fewer)."""
        top = self.stages if available is None else min(self.stages, available)
        return [0] * self.head_epochs + [k for k in range(1, top + 1) for _ in range(self.epochs_per_stage)]

    @classmethod
    def preset(cls, name: str, **overrides) -> Schedule:
        """A named schedule (``SCHEDULES``) with the options given (not None) in place of its own."""
        if name not in SCHEDULES:
            raise FeaturizerError(f"--schedule is one of {', '.join(SCHEDULES)}, not {name!r}")
        return replace(SCHEDULES[name], **{k: v for k, v in overrides.items() if v is not None})


# gentle: photos near ImageNet's; the top three stages at small rates, early stopping.
# deep: data far from photos (scans, digits, documents), where `fit --baseline` finds raw pixels
# beating the features: every stage, rates 15x higher and falling slowly down the network, the
# whole schedule run (the validation accuracy dips each time a stage thaws) and its best epoch
# kept. Measured on the digits in benchmarks/finetune.py.
SCHEDULES = {
    "gentle": Schedule(),
    "deep": Schedule(head_epochs=1, stages=99, epochs_per_stage=2, backbone_lr=3e-4, stage_decay=1.3, patience=None),
}


@dataclass
class TuneReport:
    """What ``report.json`` records."""

    base: str
    modality: str
    output: str
    items: int
    data_sha256: str
    schedule: dict
    classes: list[str] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)  # per epoch: stages unfrozen, loss, validation accuracy, s
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    seconds: float = 0.0
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False


# --- Shared -----------------------------------------------------------------------------------


def data_sha256(ids: Sequence[str], labels: Sequence[str], sources: Sequence[str], files: bool) -> str:
    """SHA-256 of the training data: each item's id, label and content (a file's bytes, or the text)."""

    h = hashlib.sha256()
    for i, label, source in zip(ids, labels, sources):
        content = file_sha256_memo(source) if files else hashlib.sha256(source.encode("utf-8", "replace")).hexdigest()
        h.update(json.dumps([i, label, content]).encode())
    return h.hexdigest()


def training_device(run: RunOptions):
    """The torch device to train on: ``--device``, or with ``auto`` a GPU when there is one."""
    import torch

    return torch.device(run.device if run.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))


def seed_everything(seed: int) -> None:
    """Seed every generator training draws from: torch's, and Python's (timm's random crops use it)."""
    import random

    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def labelled_inputs(data, modality: str, read: ReadOptions | None):

    inputs = read_inputs(data, modality, read)
    if inputs.labels is None:
        raise FeaturizerError(f"{data} has no labels: fine-tuning needs class folders or a label column")
    keep = [i for i, label in enumerate(inputs.labels) if label != ""]
    inputs = inputs.take(keep)
    if len(set(inputs.labels)) < 2:
        raise FeaturizerError(f"{data} has fewer than two classes: nothing to learn")
    return inputs


def validation_split(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train rows, validation rows, notes): stratified; with a class of one example no split is
    possible, so all rows train and there is no early stopping (the notes say so)."""
    from sklearn.model_selection import train_test_split

    counts = np.unique(y, return_counts=True)[1]
    rows = np.arange(len(y))
    if counts.min() < 2:
        return (
            rows,
            rows[:0],
            [
                "a class has a single example, so no validation split is possible: trained the whole schedule "
                "without early stopping"
            ],
        )
    n_val = max(int(round(share * len(y))), len(counts))
    if len(y) - n_val < len(counts):
        return rows, rows[:0], ["too few examples for a validation split: trained without early stopping"]
    train, val = train_test_split(rows, test_size=n_val, stratify=y, random_state=seed)
    return np.sort(train), np.sort(val), []


# --- Images -----------------------------------------------------------------------------------


def stage_groups(model) -> list[list[str]]:
    """The network's stages as lists of parameter names, top (nearest the output) first, from timm's
    own grouping (``group_matcher``, used for layer-wise learning rates); the classifier is left out.
    A model without that grouping is refused: which parameters form a stage is not guessed."""
    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        raise FeaturizerError(
            f"{type(model).__name__} has no stages this tool knows (fine-tuning reads timm's group_matcher); "
            "use a timm model (timm/NAME or a built-in EfficientNet-Lite)"
        )
    from timm.models import group_parameters

    classifier = {f"{model.default_cfg.get('classifier', 'classifier')}.{p}" for p in ("weight", "bias")}
    groups = group_parameters(model, matcher(coarse=True))
    stages = [[n for n in names if n not in classifier] for _, names in sorted(groups.items(), reverse=True)]
    return [s for s in stages if s]


def freeze_all_but(model, stages: list[list[str]], unfrozen: int) -> list[str]:
    """Make the top ``unfrozen`` stages trainable and the rest frozen; the trainable names."""
    trainable = {n for stage in stages[:unfrozen] for n in stage}
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    return sorted(trainable)


def batch_norms_frozen(model) -> None:
    """Training mode everywhere except batch norms, whose running statistics stay as pretrained."""
    import torch

    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def probe_head(X: np.ndarray, y: np.ndarray, classes: list[str], seed: int):
    """A torch ``Linear`` equal to the linear probe on the cached features: logistic regression
    (C by cross-validation) on features centred and divided by one overall scale, folded into the
    weights. One scale, not one per feature as ``xfer fit`` uses: dividing by a feature's own tiny
    spread would multiply its weight by thousands, and augmented images move such features far
    more than the cached ones did, so the head would start out saturated."""
    import torch

    mean = X.mean(axis=0)
    scale = float((X - mean).std()) or 1.0
    clf = cross_validate((X - mean) / scale, y, "logreg", normalise="none", seed=seed).model.named_steps["clf"]
    order = [list(clf.classes_).index(c) for c in classes]
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: scikit-learn keeps one row; softmax over (-z/2, z/2) is the same model
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = coef[order] / scale
    bias = intercept[order] - weight @ mean
    head = torch.nn.Linear(X.shape[1], len(classes))
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return head


class _Photos:
    """A torch dataset of (image tensor, class index) through a transform."""

    def __init__(self, paths: list[str], targets: np.ndarray, transform):
        self.paths, self.targets, self.transform = paths, targets, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):

        return self.transform(load_image(self.paths[i])), int(self.targets[i])


def _transforms(prep: dict, augment: str = "light"):
    """timm's training transform (the backbone's own augmentation, at strength ``augment``) and its
    evaluation transform (also used for training with ``none``)."""
    from timm.data import create_transform

    short, crop = image_sizes(prep)
    common = {"input_size": tuple(prep["input_size"]), "mean": tuple(prep["mean"]), "std": tuple(prep["std"])}
    interpolation = prep.get("interpolation", "bicubic")
    evaluate = create_transform(**common, is_training=False, interpolation=interpolation, crop_pct=crop / short)
    if AUGMENTATIONS[augment] is None:
        return evaluate, evaluate
    train = create_transform(**common, is_training=True, interpolation=interpolation, **AUGMENTATIONS[augment])
    return train, evaluate


def train_epochs(
    step: Callable[[int, int], float],
    validate: Callable[[], float] | None,
    plan: list[int],
    snapshot: Callable[[], object],
    restore: Callable[[object], None],
    patience: int | None,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[list[dict], int | None, bool]:
    """The schedule's loop, apart from any network: ``step(epoch, unfrozen)`` trains one epoch and
    returns its loss; ``validate()`` scores the model (None: no validation split). The best epoch's
    snapshot is restored at the end, also after Ctrl-C. Returns (curve, best epoch, interrupted)."""
    curve, best, best_state, waited = [], (None, -1.0), None, 0
    interrupted = False
    try:
        for epoch, unfrozen in enumerate(plan):
            started = time.perf_counter()
            loss = step(epoch, unfrozen)
            accuracy = validate() if validate is not None else None
            row = {"epoch": epoch + 1, "stages_unfrozen": unfrozen, "loss": loss, "val_accuracy": accuracy}
            row["seconds"] = round(time.perf_counter() - started, 2)
            curve.append(row)
            if on_epoch:
                on_epoch(row)
            if accuracy is None:
                best, best_state = (epoch + 1, -1.0), snapshot()  # no validation: the last epoch
                continue
            if accuracy > best[1]:
                best, best_state, waited = (epoch + 1, accuracy), snapshot(), 0
            else:
                waited += 1
                if patience is not None and waited >= patience:
                    break
    except KeyboardInterrupt:
        interrupted = True
    if best_state is not None:
        restore(best_state)
    return curve, best[0], interrupted


def finetune_images(
    data,
    model: str,
    out: str | os.PathLike,
    schedule: Schedule | None = None,
    *,
    read: ReadOptions | None = None,
    run: RunOptions | None = None,
    force: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> TuneReport:
    """Fine-tune the image backbone ``model`` on the labelled images ``data``; write it to ``out``."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    schedule = schedule or Schedule()
    run = run or RunOptions()
    resolved = resolve(FeatureOptions(model=model, layers=("pre_logits",), runtime="torch"), IMAGE, "cpu")
    config, weights = resolved.config, resolved.weights
    tuned_again = [weights.location] if weights.kind in ("file", "folder") else []  # its weights: an input
    out = check_new_output(out, force, folder=True, inputs=[data, *tuned_again], kind="backbone")
    if config.library != "timm":
        raise FeaturizerError(
            f"{model} has no stages this tool knows (fine-tuning reads timm's stage grouping); "
            "use a timm model (timm/NAME or a built-in EfficientNet-Lite)"
        )
    inputs = labelled_inputs(data, IMAGE, read)
    classes = sorted(set(inputs.labels))
    y = np.asarray(inputs.labels)
    targets = np.array([classes.index(c) for c in y])
    train_rows, val_rows, notes = validation_split(y, schedule.val_share, schedule.seed)
    started = time.perf_counter()
    # the linear probe on cached features is the head's start (the training split's features only)
    extractor = Extractor.from_options(FeatureOptions(model=model, layers=("pre_logits",)), run, IMAGE)
    probe_inputs = inputs.take(train_rows)
    keys, _ = extractor.keys(probe_inputs)
    try:
        extractor.ensure(probe_inputs, keys, "fail")
        X = extractor.vectors("pre_logits", keys)
    finally:
        extractor.compact()
    seed_everything(schedule.seed)
    head = probe_head(X, y[train_rows], classes, schedule.seed)
    network = load_backbone(config, weights).model  # unfolded batch norms, fp32, CPU
    device = training_device(run)
    network.to(device)
    head.to(device)
    stages = stage_groups(network)[: max(schedule.stages, 1)]
    train_tf, eval_tf = _transforms(config.preprocessing, schedule.augment)
    paths = inputs.sources
    generator = torch.Generator().manual_seed(schedule.seed)
    batch = schedule.batch_size * (2 if device.type == "cuda" else 1)
    loader = torch.utils.data.DataLoader(
        _Photos([paths[r] for r in train_rows], targets[train_rows], train_tf),
        batch_size=batch,
        shuffle=True,
        generator=generator,
    )
    val_loader = torch.utils.data.DataLoader(
        _Photos([paths[r] for r in val_rows], targets[val_rows], eval_tf), batch_size=batch
    )
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None

    def features(x):
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            return network.forward_head(network.forward_features(x), pre_logits=True)

    # one optimizer for the whole run, a group per stage: a stage's parameters get gradients (and
    # Adam moments) from the epoch it is unfrozen, while the head's moments carry on undisturbed
    # (a fresh optimizer at each stage restarted the head with steps of its full learning rate)
    named = dict(network.named_parameters())
    groups = [{"params": list(head.parameters()), "lr": schedule.lr}]
    for depth, stage in enumerate(stages):
        groups.append({"params": [named[n] for n in stage], "lr": schedule.backbone_lr / schedule.stage_decay**depth})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)

    base_lrs = [g["lr"] for g in optimizer.param_groups]
    warmed = {0}  # param groups past their warm-up: the head's needs none

    def step(epoch: int, unfrozen: int) -> float:
        freeze_all_but(network, stages, unfrozen)
        batch_norms_frozen(network)
        head.train()
        # a stage's first epoch ramps its learning rate up from zero: Adam's first steps move every
        # weight by about the full rate, whatever its gradient, which knocks a pretrained stage off
        # course (the training loss jumped on unfreezing before this)
        warming = [g for g in range(1, unfrozen + 1) if g not in warmed and schedule.warmup]
        warmed.update(range(unfrozen + 1))
        total, seen = 0.0, 0
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1} ({unfrozen} stages)", unit="batch", leave=False, disable=not progress
        )
        for n, (x, t) in enumerate(bar):
            for g in warming:
                optimizer.param_groups[g]["lr"] = base_lrs[g] * (n + 1) / len(loader)
            x, t = x.to(device), t.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(head(features(x).float()), t)
            optimizer.zero_grad(set_to_none=True)  # frozen stages keep no gradient, so Adam leaves them be
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            total, seen = total + float(loss.detach()) * len(t), seen + len(t)
            bar.set_postfix(loss=f"{total / seen:.3f}")
        return round(total / max(seen, 1), 4)

    def validate() -> float:
        network.eval()
        head.eval()
        right = 0
        with torch.inference_mode():
            for x, t in val_loader:
                right += int((head(features(x.to(device)).float()).argmax(1).cpu() == t).sum())
        return round(right / len(val_rows), 4)

    def snapshot():
        return copy.deepcopy(network.state_dict()), copy.deepcopy(head.state_dict())

    def restore(state) -> None:
        network.load_state_dict(state[0])
        head.load_state_dict(state[1])

    def show(row: dict) -> None:
        if progress:
            acc = "" if row["val_accuracy"] is None else f", validation accuracy {row['val_accuracy']:.3f}"
            print(f"epoch {row['epoch']}: {row['stages_unfrozen']} stages unfrozen, loss {row['loss']:.3f}{acc}")
        if on_epoch:
            on_epoch(row)

    plan = schedule.unfrozen_per_epoch(len(stages))
    curve, best, interrupted = train_epochs(
        step, validate if len(val_rows) else None, plan, snapshot, restore, schedule.patience, show
    )
    with atomic_output(out, kind="backbone") as tmp:
        tmp.mkdir()
        network.to("cpu")
        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, tmp / "model.safetensors")
        save_file({"weight": head.weight.detach().cpu(), "bias": head.bias.detach().cpu()}, tmp / "head.safetensors")
        base_config = resolve(FeatureOptions(model=model, runtime="torch"), IMAGE, "cpu").config
        info = {
            "format": FORMAT,
            "base": config.name,
            "modality": IMAGE,
            "weights": "model.safetensors",
            "preprocessing": config.preprocessing,
            "layers": [[layer.name, layer.dim] for layer in base_config.layers],
            "classes": classes,
            "head": "head.safetensors",
        }
        (tmp / TUNED_FILE).write_text(json.dumps(info, indent=2))
        accuracies = [r["val_accuracy"] for r in curve if r["val_accuracy"] is not None]
        result = TuneReport(
            base=config.name,
            modality=IMAGE,
            output=str(out.resolve()),
            items=len(inputs),
            data_sha256=data_sha256(inputs.ids, inputs.labels, inputs.sources, files=True),
            schedule=asdict(schedule),
            classes=classes,
            curve=curve,
            best_epoch=best,
            best_val_accuracy=max(accuracies) if accuracies else None,
            seconds=round(time.perf_counter() - started, 1),
            device=str(device),
            notes=notes + (["interrupted (Ctrl-C): the best weights so far were kept"] if interrupted else []),
            interrupted=interrupted,
        )
        (tmp / "report.json").write_text(json.dumps(asdict(result), indent=2))
    return result


# --- Texts ------------------------------------------------------------------------------------


def sample_pairs(y: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of item rows (half same-class, half different-class where possible) and their
    targets (1 same, 0 different), drawn at random with replacement: never all n^2 pairs, and never
    more than ``n``."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    classes = np.unique(y)
    members = {c: np.flatnonzero(y == c) for c in classes}
    pairable = [c for c in classes if len(members[c]) >= 2]
    pairs, same = np.zeros((n, 2), dtype=np.int64), np.zeros(n, dtype=np.float32)
    for k in range(n):
        if k % 2 == 0 and pairable:
            c = pairable[rng.integers(len(pairable))]
            pairs[k] = rng.choice(members[c], size=2, replace=False)
            same[k] = 1.0
        else:
            a, b = rng.choice(len(classes), size=2, replace=False)
            pairs[k] = (
                members[classes[a]][rng.integers(len(members[classes[a]]))],
                members[classes[b]][rng.integers(len(members[classes[b]]))],
            )
    return pairs, same


def finetune_texts(
    data,
    model: str,
    out: str | os.PathLike,
    schedule: Schedule | None = None,
    *,
    read: ReadOptions | None = None,
    run: RunOptions | None = None,
    force: bool = False,
    progress: bool = True,
) -> TuneReport:
    """SetFit-style contrastive tuning of the text encoder ``model`` on the labelled texts ``data``."""
    import torch
    from tqdm.auto import tqdm

    schedule = schedule or Schedule()
    run = run or RunOptions()
    resolved = resolve(FeatureOptions(model=model, runtime="torch"), TEXT, "cpu")
    config, weights = resolved.config, resolved.weights
    tuned_again = [weights.location] if weights.kind in ("file", "folder") else []  # its weights: an input
    out = check_new_output(out, force, folder=True, inputs=[data, *tuned_again], kind="backbone")
    if config.library != "hf" or weights.kind != "folder" or config.image_text:
        raise FeaturizerError(
            f"{model}: contrastive tuning needs a local Hugging Face text encoder (minilm, or hf/./FOLDER)"
        )
    inputs = labelled_inputs(data, TEXT, read)
    texts, y = inputs.sources, np.asarray(inputs.labels)
    started = time.perf_counter()
    import transformers

    transformers.logging.set_verbosity_error()
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights.location)
    seed_everything(schedule.seed)
    encoder = transformers.AutoModel.from_pretrained(weights.location)
    device = training_device(run)
    encoder.to(device).train()
    pairs, same = sample_pairs(y, schedule.pairs, schedule.seed)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=schedule.text_lr)
    max_length = config.preprocessing["max_length"]

    def embed(batch: list[str]):
        tokens = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
        states = encoder(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1)

    order = np.random.default_rng(schedule.seed).permutation(len(pairs))
    size = 16 * (2 if device.type == "cuda" else 1)
    total, seen, interrupted = 0.0, 0, False
    bar = tqdm(range(0, len(order), size), desc="pairs", unit="batch", disable=not progress, leave=False)
    try:
        for start in bar:
            rows = order[start : start + size]
            u = embed([texts[i] for i in pairs[rows, 0]])
            v = embed([texts[i] for i in pairs[rows, 1]])
            target = torch.as_tensor(same[rows], device=device)
            loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(u, v), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss.detach()) * len(rows), seen + len(rows)
            bar.set_postfix(loss=f"{total / seen:.4f}")
    except KeyboardInterrupt:
        interrupted = True  # the weights as they are: contrastive tuning has no validation to pick an epoch
    with atomic_output(out, kind="backbone") as tmp:
        encoder.to("cpu").eval()
        encoder.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name in ("sentence_bert_config.json", "modules.json", "config_sentence_transformers.json"):
            if (Path(weights.location) / name).is_file():
                shutil.copy(Path(weights.location) / name, tmp / name)
        layers = [[layer.name, layer.dim] for layer in config.layers]
        info = {
            "format": FORMAT,
            "base": config.name,
            "modality": TEXT,
            "weights": "model.safetensors",
            "preprocessing": text_preprocessing(tmp),
            "layers": layers,
            "classes": sorted(set(inputs.labels)),
        }
        (tmp / TUNED_FILE).write_text(json.dumps(info, indent=2))
        result = TuneReport(
            base=config.name,
            modality=TEXT,
            output=str(out.resolve()),
            items=len(inputs),
            data_sha256=data_sha256(inputs.ids, inputs.labels, texts, files=False),
            schedule=asdict(schedule),
            classes=info["classes"],
            curve=[{"pairs": int(seen), "loss": round(total / max(seen, 1), 5)}],
            seconds=round(time.perf_counter() - started, 1),
            device=str(device),
            notes=["interrupted (Ctrl-C): the weights as they were were kept"] if interrupted else [],
            interrupted=interrupted,
        )
        (tmp / "report.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def finetune(data, model: str | None, out, schedule: Schedule | None = None, **options) -> TuneReport:
    """``xfer finetune``: images or texts, by the model (or, for the default model, by the data)."""

    model, modality = model_for(data, model)
    if modality == TEXT:
        return finetune_texts(data, model, out, schedule, **{k: v for k, v in options.items() if k != "on_epoch"})
    return finetune_images(data, model, out, schedule, **options)
