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
spec carrying the new weights' hash), ``report.json`` (data hash, schedule, validation curve,
time) and ``card.md``, the same for people (``xfer card FOLDER``).
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
from typing import NamedTuple

import numpy as np

from featurizer import Extractor, FeatureOptions, FeaturizerError, InputError, ReadOptions, RunOptions
from featurizer.backbones import load_backbone, resolve
from featurizer.engine import model_for
from featurizer.inputs import image_sizes, load_image, read_inputs, text_preprocessing
from featurizer.spec import IMAGE, TEXT, TUNED_FILE
from featurizer.storage import atomic_output, check_new_output, file_sha256_memo
from pipelines.finetune._dann import DANN_WEIGHT, domain_classifier, domain_loss, reversal_weight
from pipelines.finetune._l2sp import L2SP_ALPHA, REGULARIZERS, StartingPoint
from pipelines.finetune._lora import (
    ADAPTERS,
    LORA_RANK,
    add_image_lora,
    add_text_lora,
    merge_lora,
    trainable_parameters,
)
from pipelines.fit import cross_validate, raw_pixels
from pipelines.models import TUNED_CARD, render_tuned_card
from pipelines.report import pyplot, save_png

FORMAT = "featurizer-tuned/1"
ADAPT_METHODS = ("none", "dann")

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
    name: str = "gentle"  # the preset it came from
    regularize: str = "none"  # none (weight decay) or l2sp (toward the pretrained weights, _l2sp)
    l2sp_alpha: float = L2SP_ALPHA
    adapter: str = "none"  # none (the stages' own weights) or lora (low-rank adapters, merged, _lora)
    rank: int = LORA_RANK
    adapt: str = "none"  # none or dann (a gradient-reversed domain classifier on target images, _dann)
    dann_weight: float = DANN_WEIGHT

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
        if self.regularize not in REGULARIZERS:
            raise FeaturizerError(f"--regularize is one of {', '.join(REGULARIZERS)}, not {self.regularize!r}")
        if self.adapter not in ADAPTERS:
            raise FeaturizerError(f"--adapter is one of {', '.join(ADAPTERS)}, not {self.adapter!r}")
        if self.adapt not in ADAPT_METHODS:
            raise FeaturizerError(f"--adapt is one of {', '.join(ADAPT_METHODS)}, not {self.adapt!r}")
        if self.rank < 1 or self.l2sp_alpha < 0 or self.dann_weight < 0:
            raise FeaturizerError("--rank is at least 1; the L2-SP and DANN weights cannot be negative")

    def unfrozen_per_epoch(self, available: int | None = None) -> list[int]:
        """How many network stages are trainable in each epoch: 0 for the head epochs, then 1, 2, ...
        up to ``stages`` (or the ``available`` stages of the network, if fewer)."""
        top = self.stages if available is None else min(self.stages, available)
        return [0] * self.head_epochs + [k for k in range(1, top + 1) for _ in range(self.epochs_per_stage)]

    @classmethod
    def preset(cls, name: str, **overrides) -> Schedule:
        """A named schedule (``SCHEDULES``) with the options given (not None) in place of its own."""
        if name not in SCHEDULES:
            raise FeaturizerError(f"--schedule is one of {', '.join(SCHEDULE_CHOICES)}, not {name!r}")
        return replace(SCHEDULES[name], name=name, **{k: v for k, v in overrides.items() if v is not None})


def candidate_schedules(name: str = "auto", **overrides) -> list[Schedule]:
    """The schedules ``--schedule NAME`` tries: ``auto``, every named one (chosen by validation
    accuracy); else the one named. ``overrides`` (not None) apply to each."""
    if name == "auto":
        return [Schedule.preset(n, **overrides) for n in SCHEDULES]
    return [Schedule.preset(name, **overrides)]


# gentle: photos near ImageNet's; the top three stages at small rates, early stopping.
# deep: data far from photos (scans, digits, documents), where `fit --baseline` finds raw pixels
# beating the features: every stage, rates 15x higher and falling slowly down the network, the
# whole schedule run (the validation accuracy dips each time a stage thaws) and its best epoch
# kept. Measured on the digits in benchmarks/finetune.py.
SCHEDULES = {
    "gentle": Schedule(),
    "deep": Schedule(
        head_epochs=1, stages=99, epochs_per_stage=2, backbone_lr=3e-4, stage_decay=1.3, patience=None, name="deep"
    ),
}
SCHEDULE_CHOICES = ("auto", *SCHEDULES)  # auto, the default: each named schedule, the best on validation kept
DEFAULT_BUDGET_S = 300.0  # seconds for all the schedules auto tries (--budget)
# LoRA's adapters start at zero (B = 0) and need larger rates than the weights they adapt: with
# --adapter lora the stages' and the text encoder's rates are 10x (peft's examples use 1e-4 to 1e-3)
LORA_LR_FACTOR = 10


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
    chosen: str = ""  # the schedule kept, or "frozen" when none beat the frozen probe on validation
    probe_val_accuracy: float | None = None
    trials: list[dict] = field(default_factory=list)  # each schedule tried (Trial.summary)
    trainable_parameters: int = 0
    budget_s: float | None = None


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


def as_schedules(schedule: Schedule | Sequence[Schedule] | None) -> list[Schedule]:
    """The schedules to try: the one given, those given, or (None) ``--schedule auto``'s."""
    if schedule is None:
        return candidate_schedules("auto")
    return [schedule] if isinstance(schedule, Schedule) else list(schedule)


def adaptation_target(schedule: Schedule, target, modality: str, read: ReadOptions | None) -> list[str]:
    """The unlabelled target's sources for ``adapt='dann'`` (else none); one line when it is missing,
    empty, or given without ``--adapt dann``."""
    if schedule.adapt != "dann":
        if target is not None:
            raise FeaturizerError(
                "--target is the unlabelled data of --adapt dann: give --adapt dann too, or no --target"
            )
        return []
    what = "images" if modality == IMAGE else "texts"
    if target is None:
        raise FeaturizerError(
            f"--adapt dann learns features that hide the domain: give the unlabelled {what} with --target"
        )
    try:
        sources = list(read_inputs(target, modality, read).sources)
    except InputError as e:
        raise InputError(f"--target must hold unlabelled {what}, like the training data: {e}") from None
    if not sources:
        raise FeaturizerError(f"{target} holds no {what} to adapt to")
    return sources


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


class Trained(NamedTuple):
    """What ``train_epochs`` ran: the curve, the best epoch (1-based) and why it stopped."""

    curve: list[dict]
    best: int | None
    stopped: str  # done, early stopping, budget or interrupted

    @property
    def interrupted(self) -> bool:
        return self.stopped == "interrupted"


def train_epochs(
    step: Callable[[int, int], float],
    validate: Callable[[], float] | None,
    plan: list[int],
    snapshot: Callable[[], object],
    restore: Callable[[object], None],
    patience: int | None,
    on_epoch: Callable[[dict], None] | None = None,
    deadline: float | None = None,
    first_epoch_s: float | None = None,
) -> Trained:
    """The schedule's loop, apart from any network: ``step(epoch, unfrozen)`` trains one epoch and
    returns its loss; ``validate()`` scores the model (None: no validation split). An epoch that
    would end past ``deadline`` (``time.perf_counter()``, judged by the last epoch's time, or for
    the first by ``first_epoch_s``) is not started. The best epoch's snapshot is restored at the
    end, also after Ctrl-C."""
    curve, best, best_state, waited = [], (None, -1.0), None, 0
    stopped = "done"
    try:
        for epoch, unfrozen in enumerate(plan):
            started = time.perf_counter()
            expected = curve[-1]["seconds"] if curve else first_epoch_s
            if deadline is not None and expected is not None and started + expected > deadline:
                stopped = "budget"
                break
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
                    stopped = "early stopping"
                    break
    except KeyboardInterrupt:
        stopped = "interrupted"
    if best_state is not None:
        restore(best_state)
    return Trained(curve, best[0], stopped)


@dataclass
class ImageData:
    """What every trial of an image fine-tuning shares: the data, split and transformed, and the probe."""

    config: object
    weights: object
    classes: list[str]
    targets: np.ndarray
    paths: list[str]
    train_rows: np.ndarray
    val_rows: np.ndarray
    probe: dict  # the linear probe's weight and bias (CPU tensors): every trial's head starts there
    device: object
    train_tf: object
    eval_tf: object
    target_paths: list[str] = field(default_factory=list)


@dataclass
class Trial:
    """One schedule tried: its validation curve, best epoch and, for the winner, the weights to save."""

    schedule: Schedule
    curve: list[dict]
    best_epoch: int | None
    best_val_accuracy: float | None
    trainable_parameters: int
    seconds: float
    stopped: str  # "done", "early stopping", "budget" or "interrupted"
    state: tuple | None = None  # (network state dict with any LoRA merged, head state dict), on the CPU
    first_epoch_s: float | None = None  # the first epoch's time, estimated before it (with a budget)

    def summary(self) -> dict:
        return {
            "schedule": self.schedule.name,
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch,
            "epochs": len(self.curve),
            "trainable_parameters": self.trainable_parameters,
            "seconds": self.seconds,
            "stopped": self.stopped,
        }


def _loader(paths, targets, transform, batch: int, shuffle: bool, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        _Photos(paths, targets, transform), batch_size=batch, shuffle=shuffle, generator=generator
    )


def tune_once(
    setup: ImageData, schedule: Schedule, deadline: float | None, show: Callable[[dict], None], progress: bool
):
    """Train one schedule from the pretrained weights and the probe head; keep its best validation epoch.

    Gradual unfreezing with discriminative rates (or, with ``adapter='lora'``, the same over the
    stages' LoRA adapters, base weights frozen), L2-SP toward the start instead of weight decay for
    the backbone with ``regularize='l2sp'``, and a gradient-reversed domain classifier on the target
    images with ``adapt='dann'``. Stops early on patience, at ``deadline`` (the budget) and on Ctrl-C."""
    import torch
    from tqdm.auto import tqdm

    started = time.perf_counter()
    seed_everything(schedule.seed)
    device = setup.device
    network = load_backbone(setup.config, setup.weights).model.to(device)
    head = torch.nn.Linear(setup.probe["weight"].shape[1], len(setup.classes))
    head.load_state_dict(setup.probe)
    head.to(device)
    stages = stage_groups(network)[: max(schedule.stages, 1)]
    if schedule.adapter == "lora":
        stages = add_image_lora(network, stages, schedule.rank)
        network.to(device)
    anchor = StartingPoint(network, schedule.l2sp_alpha) if schedule.regularize == "l2sp" else None
    batch = schedule.batch_size * (2 if device.type == "cuda" else 1)
    paths, targets = setup.paths, setup.targets
    loader = _loader(
        [paths[r] for r in setup.train_rows], targets[setup.train_rows], setup.train_tf, batch, True, schedule.seed
    )
    val_loader = _loader([paths[r] for r in setup.val_rows], targets[setup.val_rows], setup.eval_tf, batch, False, 0)
    domain = target_batches = None
    if schedule.adapt == "dann":
        domain = domain_classifier(head.in_features).to(device)
        target_loader = _loader(
            setup.target_paths, np.zeros(len(setup.target_paths), int), setup.train_tf, batch, True, schedule.seed + 1
        )

        def cycle():
            while True:
                yield from target_loader

        target_batches = cycle()
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None

    def features(x):
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            return network.forward_head(network.forward_features(x), pre_logits=True)

    # one optimizer for the whole run, a group per stage: a stage's parameters get gradients (and
    # Adam moments) from the epoch it is unfrozen, while the head's moments carry on undisturbed
    # (a fresh optimizer at each stage restarted the head with steps of its full learning rate).
    # With L2-SP the backbone's pull is toward its start, so its groups have no decay toward zero.
    named = dict(network.named_parameters())
    decay = 0.0 if anchor is not None else 0.01
    groups = [{"params": list(head.parameters()), "lr": schedule.lr, "weight_decay": 0.01}]
    for depth, stage in enumerate(stages):
        rate = (
            schedule.backbone_lr / schedule.stage_decay**depth * (LORA_LR_FACTOR if schedule.adapter == "lora" else 1)
        )
        groups.append({"params": [named[n] for n in stage], "lr": rate, "weight_decay": decay})
    if domain is not None:
        groups.append({"params": list(domain.parameters()), "lr": schedule.lr, "weight_decay": 0.01})
    optimizer = torch.optim.AdamW(groups)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    warmed = {0}  # param groups past their warm-up: the head's needs none
    plan = schedule.unfrozen_per_epoch(len(stages))

    def step(epoch: int, unfrozen: int) -> float:
        freeze_all_but(network, stages, unfrozen)  # under LoRA the stages are adapters: base weights never train
        batch_norms_frozen(network)
        head.train()
        # a stage's first epoch ramps its learning rate up from zero: Adam's first steps move every
        # weight by about the full rate, whatever its gradient, which knocks a pretrained stage off
        # course (the training loss jumped on unfreezing before this)
        warming = [g for g in range(1, unfrozen + 1) if g not in warmed and schedule.warmup]
        warmed.update(range(unfrozen + 1))
        total, seen = 0.0, 0
        bar = tqdm(loader, desc=f"{schedule.name} epoch {epoch + 1} ({unfrozen} stages)", unit="batch", leave=False,
                   disable=not progress)  # fmt: skip
        for n, (x, t) in enumerate(bar):
            for g in warming:
                optimizer.param_groups[g]["lr"] = base_lrs[g] * (n + 1) / len(loader)
            x, t = x.to(device), t.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                source = features(x).float()
                loss = torch.nn.functional.cross_entropy(head(source), t)
                if domain is not None:
                    weight = reversal_weight((epoch + n / len(loader)) / len(plan), schedule.dann_weight)
                    loss = loss + domain_loss(
                        domain, source, features(next(target_batches)[0].to(device)).float(), weight
                    )
                if anchor is not None:
                    loss = loss + anchor.penalty()
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
        return round(right / len(setup.val_rows), 4)

    def snapshot():
        return copy.deepcopy(network.state_dict()), copy.deepcopy(head.state_dict())

    def restore(state) -> None:
        network.load_state_dict(state[0])
        head.load_state_dict(state[1])

    def first_epoch_estimate() -> float:
        """One batch's forward pass timed, times the batches of an epoch and its validation (three
        times over when the first epoch trains a stage: backward costs about twice the forward).
        The batch is read unshuffled, without augmentation, and torch's random state is restored
        after (a DataLoader draws a seed from it): the run trains exactly as it would without it."""
        rows = setup.train_rows[:batch]
        with torch.random.fork_rng(devices=[]):
            x = next(iter(_loader([paths[r] for r in rows], targets[rows], setup.eval_tf, batch, False, 0)))[0]
        network.eval()
        started = time.perf_counter()
        with torch.inference_mode():
            features(x.to(device))
        passes = (len(loader) + len(val_loader)) * (3 if plan and plan[0] else 1) * (2 if domain is not None else 1)
        return (time.perf_counter() - started) * passes

    estimate = first_epoch_estimate() if deadline is not None and plan else None
    freeze_all_but(network, stages, max(plan, default=0))
    trainable = trainable_parameters(network, head) + (trainable_parameters(domain) if domain is not None else 0)
    run = train_epochs(
        step, validate if len(setup.val_rows) else None, plan, snapshot, restore, schedule.patience, show, deadline,
        estimate,
    )  # fmt: skip
    if schedule.adapter == "lora":
        merge_lora(network)
    network.to("cpu")
    state = ({k: v.detach().clone().contiguous() for k, v in network.state_dict().items()},
             {k: v.detach().cpu().clone() for k, v in head.state_dict().items()})  # fmt: skip
    accuracies = [r["val_accuracy"] for r in run.curve if r["val_accuracy"] is not None]
    return Trial(
        schedule=schedule,
        curve=run.curve,
        best_epoch=run.best,
        best_val_accuracy=max(accuracies) if accuracies else None,
        trainable_parameters=trainable,
        seconds=round(time.perf_counter() - started, 1),
        stopped=run.stopped,
        state=state,
        first_epoch_s=estimate,
    )


def schedule_order(setup: ImageData, probe_val: float | None, schedules: list[Schedule]) -> list[Schedule]:
    """The schedules to try, the likelier winner first: ``deep`` first when raw pixels score at least
    as well as the frozen features on the validation split (data far from photos, where the deep
    schedule is for), else the given order; so a budget that runs out cuts the less likely one."""
    if len(schedules) < 2 or probe_val is None or not len(setup.val_rows):
        return schedules
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pixels = raw_pixels(setup.paths)
    y = setup.targets
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        pixels[setup.train_rows], y[setup.train_rows]
    )
    pixel_val = float((model.predict(pixels[setup.val_rows]) == y[setup.val_rows]).mean())
    far = pixel_val >= probe_val
    return sorted(schedules, key=lambda s: (s.name != "deep") if far else 0)


def probe_accuracy(setup: ImageData, X_val: np.ndarray) -> float | None:
    """The frozen probe's accuracy on the validation split's cached features (None: no split)."""
    if not len(setup.val_rows):
        return None
    scores = X_val @ setup.probe["weight"].numpy().T + setup.probe["bias"].numpy()
    return round(float((scores.argmax(1) == setup.targets[setup.val_rows]).mean()), 4)


def plot_trials(trials: list[Trial], probe_val: float | None, path: Path) -> None:
    """Validation accuracy per epoch of each schedule tried, the frozen probe's as a dashed line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for trial in trials:
        points = [(r["epoch"], r["val_accuracy"]) for r in trial.curve if r["val_accuracy"] is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=f"{trial.schedule.name} (best {trial.best_val_accuracy:.3f})")
    if probe_val is not None:
        ax.axhline(probe_val, linestyle="--", color="grey", label=f"frozen probe {probe_val:.3f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def finetune_images(
    data,
    model: str,
    out: str | os.PathLike,
    schedule: Schedule | Sequence[Schedule] | None = None,
    *,
    read: ReadOptions | None = None,
    run: RunOptions | None = None,
    force: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    budget: float | None = DEFAULT_BUDGET_S,
    target=None,
) -> TuneReport:
    """Fine-tune the image backbone ``model`` on the labelled images ``data``; write it to ``out``.

    ``schedule``: one, or several to choose from by validation accuracy (default: every named
    schedule, ``candidate_schedules('auto')``), all within ``budget`` seconds. The frozen backbone
    is kept when no schedule beats the frozen probe on validation. ``target``: unlabelled images for
    ``adapt='dann'``."""
    from safetensors.torch import save_file

    schedules = as_schedules(schedule)
    run = run or RunOptions()
    resolved = resolve(FeatureOptions(model=model, layers=("pre_logits",), runtime="torch"), IMAGE, "cpu")
    config, weights = resolved.config, resolved.weights
    tuned_again = [weights.location] if weights.kind in ("file", "folder") else []  # its weights: an input
    given = [data, *tuned_again, *([target] if target is not None else [])]
    out = check_new_output(out, force, folder=True, inputs=given, kind="backbone")
    if config.library != "timm":
        raise FeaturizerError(
            f"{model} has no stages this tool knows (fine-tuning reads timm's stage grouping); "
            "use a timm model (timm/NAME or a built-in EfficientNet-Lite)"
        )
    target_paths = adaptation_target(schedules[0], target, IMAGE, read)
    inputs = labelled_inputs(data, IMAGE, read)
    classes = sorted(set(inputs.labels))
    y = np.asarray(inputs.labels)
    train_rows, val_rows, notes = validation_split(y, schedules[0].val_share, schedules[0].seed)
    started = time.perf_counter()
    deadline = None if budget is None else started + budget
    # the linear probe on cached features is the head's start (the training split's features only)
    extractor = Extractor.from_options(FeatureOptions(model=model, layers=("pre_logits",)), run, IMAGE)
    keys, _ = extractor.keys(inputs)
    try:
        extractor.ensure(inputs, keys, "fail")
        X = extractor.vectors("pre_logits", keys)
    finally:
        extractor.compact()
    seed_everything(schedules[0].seed)
    head = probe_head(X[train_rows], y[train_rows], classes, schedules[0].seed)
    train_tf, eval_tf = _transforms(config.preprocessing, schedules[0].augment)
    setup = ImageData(
        config=config,
        weights=weights,
        classes=classes,
        targets=np.array([classes.index(c) for c in y]),
        paths=list(inputs.sources),
        train_rows=train_rows,
        val_rows=val_rows,
        probe={k: v.detach().clone() for k, v in head.state_dict().items()},
        device=training_device(run),
        train_tf=train_tf,
        eval_tf=eval_tf,
        target_paths=target_paths,
    )
    probe_val = probe_accuracy(setup, X[val_rows])
    order = schedule_order(setup, probe_val, schedules)

    def show(row: dict) -> None:
        if progress:
            acc = "" if row["val_accuracy"] is None else f", validation accuracy {row['val_accuracy']:.3f}"
            print(f"{row['schedule']} epoch {row['epoch']}: {row['stages_unfrozen']} stages unfrozen, "
                  f"loss {row['loss']:.3f}{acc}")  # fmt: skip
        if on_epoch:
            on_epoch(row)

    trials = []
    for candidate in order:
        if trials and deadline is not None and time.perf_counter() >= deadline:
            notes.append(f"the budget ({budget:.0f} s) ran out before the {candidate.name} schedule could be tried")
            continue
        trial = tune_once(
            setup, candidate, deadline, lambda row, name=candidate.name: show({"schedule": name, **row}), progress
        )
        if not trial.curve and trial.stopped == "budget":
            if not trials:
                raise FeaturizerError(
                    f"--budget {budget:g}s is too small for one epoch here (about {trial.first_epoch_s:.1f} s for "
                    f"{len(setup.train_rows)} images): give a larger --budget, or --budget none"
                )
            notes.append(f"the budget ({budget:.0f} s) ran out before the {candidate.name} schedule could be tried")
            continue
        trials.append(trial)
        if trial.stopped == "interrupted":
            notes.append(f"interrupted (Ctrl-C) during {candidate.name}: the best weights so far were kept")
            break
        if trial.stopped == "budget":
            notes.append(f"the budget ({budget:.0f} s) ended {candidate.name} after {len(trial.curve)} epochs")
    best = max(trials, key=lambda t: -1.0 if t.best_val_accuracy is None else t.best_val_accuracy)
    behind = probe_val is not None and best.best_val_accuracy is not None and best.best_val_accuracy <= probe_val
    kept_frozen = behind and keep_frozen(
        len(schedules) > 1, "backbone", f"{best.best_val_accuracy:.3f} against {probe_val:.3f}", notes
    )
    if kept_frozen:
        network_state = load_backbone(config, weights).model.state_dict()
        head_state = setup.probe
    else:
        network_state, head_state = best.state
    with atomic_output(out, kind="backbone") as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in network_state.items()}, tmp / "model.safetensors")
        save_file({"weight": head_state["weight"], "bias": head_state["bias"]}, tmp / "head.safetensors")
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
        if any(t.curve and t.best_val_accuracy is not None for t in trials):
            plot_trials(trials, probe_val, tmp / "curve.png")
        result = TuneReport(
            base=config.name,
            modality=IMAGE,
            output=str(out.resolve()),
            items=len(inputs),
            data_sha256=data_sha256(inputs.ids, inputs.labels, inputs.sources, files=True),
            schedule=asdict(best.schedule),
            classes=classes,
            curve=best.curve,
            best_epoch=None if kept_frozen else best.best_epoch,
            best_val_accuracy=best.best_val_accuracy,
            seconds=round(time.perf_counter() - started, 1),
            device=str(setup.device),
            notes=notes,
            interrupted=any(t.stopped == "interrupted" for t in trials),
            chosen="frozen" if kept_frozen else best.schedule.name,
            probe_val_accuracy=probe_val,
            trials=[t.summary() for t in trials],
            trainable_parameters=best.trainable_parameters,
            budget_s=budget,
        )
        (tmp / "report.json").write_text(json.dumps(asdict(result), indent=2))
        (tmp / TUNED_CARD).write_text(render_tuned_card(asdict(result)), encoding="utf-8")
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


def text_probe_scores(
    Z: np.ndarray, y: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray
) -> tuple[float, float]:
    """(accuracy, log-loss) on the validation rows of logistic regression on standardised embeddings,
    fitted on the training rows: the same probe for the frozen and the tuned encoder, so the two
    compare fairly. An encoder whose training diverged (embeddings not finite) scores (0, inf)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not np.isfinite(Z).all():
        return 0.0, float("inf")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Z[train_rows], y[train_rows])
    accuracy = round(float((model.predict(Z[val_rows]) == y[val_rows]).mean()), 4)
    return accuracy, float(log_loss(y[val_rows], model.predict_proba(Z[val_rows]), labels=model.classes_))


def keep_frozen(chosen_automatically: bool, network: str, scores: str, notes: list[str]) -> bool:
    """Tuning did not beat the frozen probe: whether to keep the pretrained network, noting why. Under
    ``--schedule auto`` it is kept; a schedule asked for by name is kept as asked, with the note."""
    said = (
        f"kept the pretrained {network}"
        if chosen_automatically
        else "kept as asked (--schedule auto would keep the frozen one)"
    )
    notes.append(f"fine-tuning did not beat the frozen probe on validation ({scores}): {said}")
    return chosen_automatically


def beats(tuned: tuple[float, float], frozen: tuple[float, float]) -> bool:
    """Whether the tuned encoder beats the frozen one on validation: higher accuracy, or the same
    accuracy and a lower log-loss (a few dozen validation texts tie on accuracy often; the
    log-loss still tells which probe is surer of the right answers)."""
    return tuned[0] > frozen[0] or (tuned[0] == frozen[0] and tuned[1] < frozen[1])


def finetune_texts(
    data,
    model: str,
    out: str | os.PathLike,
    schedule: Schedule | Sequence[Schedule] | None = None,
    *,
    read: ReadOptions | None = None,
    run: RunOptions | None = None,
    force: bool = False,
    progress: bool = True,
    budget: float | None = DEFAULT_BUDGET_S,
    target=None,
) -> TuneReport:
    """SetFit-style contrastive tuning of the text encoder ``model`` on the labelled texts ``data``
    (the encoder's own weights, or with ``adapter='lora'`` LoRA adapters merged into them at the end;
    ``regularize='l2sp'`` pulls the weights toward the start; ``adapt='dann'`` adds a gradient-reversed
    domain classifier between the pairs' texts and the unlabelled ``target`` texts).

    Pairs come from a stratified training split only; the same probe (logistic regression) scores
    the frozen and the tuned encoder on the validation split. Given several schedules (the default,
    ``--schedule auto``), the frozen encoder is kept when tuning does not beat it; texts have one
    training recipe, so of several schedules the first's options are used. Training stops at
    ``budget`` seconds (a batch that would end past it is not started) and on Ctrl-C."""
    import torch
    from tqdm.auto import tqdm

    schedules = as_schedules(schedule)
    schedule = schedules[0]
    run = run or RunOptions()
    resolved = resolve(FeatureOptions(model=model, runtime="torch"), TEXT, "cpu")
    config, weights = resolved.config, resolved.weights
    tuned_again = [weights.location] if weights.kind in ("file", "folder") else []  # its weights: an input
    given = [data, *tuned_again, *([target] if target is not None else [])]
    out = check_new_output(out, force, folder=True, inputs=given, kind="backbone")
    if config.library != "hf" or weights.kind != "folder" or config.image_text:
        raise FeaturizerError(
            f"{model}: contrastive tuning needs a local Hugging Face text encoder (minilm, or hf/./FOLDER)"
        )
    target_texts = adaptation_target(schedule, target, TEXT, read)
    inputs = labelled_inputs(data, TEXT, read)
    texts, y = inputs.sources, np.asarray(inputs.labels)
    train_rows, val_rows, notes = validation_split(y, schedule.val_share, schedule.seed)
    started = time.perf_counter()
    deadline = None if budget is None else started + budget
    import transformers

    transformers.logging.set_verbosity_error()
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights.location)
    seed_everything(schedule.seed)
    encoder = transformers.AutoModel.from_pretrained(weights.location)
    tuned = add_text_lora(encoder, schedule.rank) if schedule.adapter == "lora" else encoder
    device = training_device(run)
    tuned.to(device)
    trainable = trainable_parameters(tuned)
    max_length = config.preprocessing["max_length"]

    def embed(batch: list[str]):
        tokens = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
        states = tuned(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1)

    def embed_all() -> np.ndarray:
        tuned.eval()
        with torch.inference_mode():
            parts = [embed(list(texts[i : i + 64])).float().cpu().numpy() for i in range(0, len(texts), 64)]
        tuned.train()
        return np.concatenate(parts)

    validated = len(val_rows) > 0
    frozen_scores = text_probe_scores(embed_all(), y, train_rows, val_rows) if validated else None
    probe_val = frozen_scores[0] if validated else None
    tuned.train()
    local_pairs, same = sample_pairs(y[train_rows], schedule.pairs, schedule.seed)
    pairs = train_rows[local_pairs]  # rows of the whole data, from the training split only
    rate = schedule.text_lr * (LORA_LR_FACTOR if schedule.adapter == "lora" else 1)
    anchor = StartingPoint(tuned, schedule.l2sp_alpha) if schedule.regularize == "l2sp" else None
    groups = [{"params": [p for p in tuned.parameters() if p.requires_grad], "lr": rate}]
    domain = None
    if target_texts:
        domain = domain_classifier(encoder.config.hidden_size).to(device)
        groups.append({"params": list(domain.parameters()), "lr": schedule.lr})
        trainable += trainable_parameters(domain)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0 if anchor is not None else 0.01)
    target_order = np.random.default_rng(schedule.seed + 1).permutation(max(len(target_texts), 1))
    order = np.random.default_rng(schedule.seed).permutation(len(pairs))
    size = 16 * (2 if device.type == "cuda" else 1)
    total, seen, stopped, last_s = 0.0, 0, "done", 0.0
    bar = tqdm(range(0, len(order), size), desc="pairs", unit="batch", disable=not progress, leave=False)
    try:
        for start in bar:
            begun = time.perf_counter()
            if deadline is not None and begun + last_s > deadline:
                stopped = "budget"
                break
            rows = order[start : start + size]
            u = embed([texts[i] for i in pairs[rows, 0]])
            v = embed([texts[i] for i in pairs[rows, 1]])
            similar = torch.as_tensor(same[rows], device=device)
            loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(u, v), similar)
            if domain is not None:
                picked = [target_texts[target_order[(start + k) % len(target_order)]] for k in range(len(rows))]
                weight = reversal_weight(start / max(len(order), 1), schedule.dann_weight)
                loss = loss + domain_loss(domain, u, embed(picked), weight)
            if anchor is not None:
                loss = loss + anchor.penalty()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss.detach()) * len(rows), seen + len(rows)
            last_s = time.perf_counter() - begun
            bar.set_postfix(loss=f"{total / seen:.4f}")
    except KeyboardInterrupt:
        stopped = "interrupted"
    if seen == 0 and stopped == "budget":
        raise FeaturizerError(
            f"--budget {budget:g}s ran out before the first batch of pairs (embedding the {len(texts)} texts for "
            "the frozen probe took it): give a larger --budget, or --budget none"
        )
    if stopped == "budget":
        notes.append(f"the budget ({budget:.0f} s) ended tuning after {seen} of {len(pairs)} pairs")
    if stopped == "interrupted":
        notes.append(f"interrupted (Ctrl-C) after {seen} of {len(pairs)} pairs: the weights as they were were kept")
    if schedule.adapter == "lora":
        tuned = encoder = tuned.merge_and_unload()  # the adapters added into the weights: a plain encoder again
    tuned_scores = text_probe_scores(embed_all(), y, train_rows, val_rows) if validated else None
    tuned_val = tuned_scores[0] if validated else None
    behind = validated and not beats(tuned_scores, frozen_scores)
    kept_frozen = behind and keep_frozen(
        len(schedules) > 1,
        "encoder",
        f"accuracy {tuned_val:.3f} against {probe_val:.3f}, "
        f"log-loss {tuned_scores[1]:.3f} against {frozen_scores[1]:.3f}",
        notes,
    )
    if kept_frozen:
        encoder = transformers.AutoModel.from_pretrained(weights.location)
    name = "contrastive" + (" (lora)" if schedule.adapter == "lora" else "")
    with atomic_output(out, kind="backbone") as tmp:
        encoder.to("cpu").eval()
        encoder.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for file in ("sentence_bert_config.json", "modules.json", "config_sentence_transformers.json"):
            if (Path(weights.location) / file).is_file():
                shutil.copy(Path(weights.location) / file, tmp / file)
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
        seconds = round(time.perf_counter() - started, 1)
        result = TuneReport(
            base=config.name,
            modality=TEXT,
            output=str(out.resolve()),
            items=len(inputs),
            data_sha256=data_sha256(inputs.ids, inputs.labels, texts, files=False),
            schedule=asdict(schedule),
            classes=info["classes"],
            curve=[{"pairs": int(seen), "loss": round(total / max(seen, 1), 5), "val_accuracy": tuned_val}],
            best_val_accuracy=tuned_val,
            seconds=seconds,
            device=str(device),
            notes=notes,
            interrupted=stopped == "interrupted",
            chosen="frozen" if kept_frozen else name,
            probe_val_accuracy=probe_val,
            trials=[
                {
                    "schedule": name,
                    "best_val_accuracy": tuned_val,
                    "pairs": int(seen),
                    "trainable_parameters": trainable,
                    "seconds": seconds,
                    "stopped": stopped,
                }
            ],
            trainable_parameters=trainable,
            budget_s=budget,
        )
        (tmp / "report.json").write_text(json.dumps(asdict(result), indent=2))
        (tmp / TUNED_CARD).write_text(render_tuned_card(asdict(result)), encoding="utf-8")
    return result


def finetune(
    data, model: str | None, out, schedule: Schedule | Sequence[Schedule] | None = None, **options
) -> TuneReport:
    """``xfer finetune``: images or texts, by the model (or, for the default model, by the data)."""

    model, modality = model_for(data, model)
    if modality == TEXT:
        dropped = {"on_epoch"}
        return finetune_texts(data, model, out, schedule, **{k: v for k, v in options.items() if k not in dropped})
    return finetune_images(data, model, out, schedule, **options)
