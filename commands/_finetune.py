"""``xfer finetune``: a backbone tuned on labelled data, saved as a folder featurize reads."""

from __future__ import annotations

from pathlib import Path

import click

from commands._options import (
    CONTEXT_SETTINGS,
    READ_PATHS,
    RUN_PATHS,
    Location,
    force_option,
    output_option,
    paths,
    read_options,
    run_options,
)
from pipelines.finetune import (
    ADAPT_METHODS,
    ADAPTERS,
    AUGMENTATIONS,
    DEFAULT_BUDGET_S,
    REGULARIZERS,
    SCHEDULE_CHOICES,
    candidate_schedules,
)
from pipelines.finetune import finetune as tune


def parse_budget(ctx, param, value: str | None) -> float | None:
    """``--budget``: seconds, or with a unit (90s, 5m, 1h); ``none`` for no limit."""
    if value is None:
        return DEFAULT_BUDGET_S
    text = value.strip().lower()
    if text == "none":
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time: give seconds, or 90s, 5m, 1h, or none") from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r}: the budget must be positive")
    return seconds


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", "target", *READ_PATHS), outputs=("output",), other=RUN_PATHS)
@click.argument("data", metavar="DATA", type=Location(exists=True, path_type=Path))
@click.option("-m", "--model", help="Backbone to fine-tune. [default: the default model of the data's kind]")
@output_option("Folder of the tuned backbone (use it with featurize -m FOLDER).", folder=True, required=True)
@click.option(
    "--schedule",
    "schedule_name",
    type=click.Choice(SCHEDULE_CHOICES),
    default="auto",
    show_default=True,
    help="Images: auto tries gentle and deep within --budget and keeps the best on the validation split (or the "
    "frozen backbone, if neither beats the frozen probe there); gentle (photos: top 3 stages, small rates, early "
    "stopping); deep (data far from photos, such as scans: every stage, 15x the rates, the best epoch of the "
    "whole run). The options below override each.",
)
@click.option(
    "--budget",
    callback=parse_budget,
    metavar="TIME",
    help="Images: time for all the schedules tried, e.g. 300, 90s, 5m, or none. [default: 5m]",
)
@click.option(
    "--regularize",
    type=click.Choice(REGULARIZERS),
    help="Images: l2sp pulls the tuned weights toward the pretrained ones (L2-SP) instead of decaying them. "
    "[default: none]",
)
@click.option(
    "--adapter",
    type=click.Choice(ADAPTERS),
    help="lora trains low-rank adapters (peft, the tune extra) instead of the weights, merged into the saved "
    "backbone. [default: none]",
)
@click.option("--rank", type=click.IntRange(min=1), help="The LoRA adapters' rank. [default: 8]")
@click.option(
    "--adapt",
    type=click.Choice(ADAPT_METHODS),
    help="Images: dann trains a gradient-reversed domain classifier on the --target images beside the head. "
    "[default: none]",
)
@click.option(
    "--target",
    type=Location(exists=True, path_type=Path),
    help="Unlabelled images of where the model will be used, for --adapt dann.",
)
@click.option(
    "--head-epochs", type=click.IntRange(min=0), help="Images: epochs of the head alone [gentle: 2, deep: 1]."
)
@click.option("--stages", type=click.IntRange(min=0), help="Images: stages unfrozen [gentle: 3, deep: all].")
@click.option("--epochs-per-stage", type=click.IntRange(min=0), help="Images: epochs per stage [2].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Images: the head's learning rate [0.001].")
@click.option(
    "--backbone-lr",
    type=click.FloatRange(min=0, min_open=True),
    help="Images: the top stage's learning rate; each stage below --stage-decay times less [gentle: 2e-5, deep: 3e-4].",
)
@click.option(
    "--stage-decay",
    type=click.FloatRange(min=1),
    help="Images: learning rate ratio between stages [gentle: 2.6, deep: 1.3].",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    help="Images: early stopping epochs [gentle: 3; deep: none, the best epoch kept].",
)
@click.option(
    "--val-share",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Images: share of the training items held out to pick the best epoch.",
)
@click.option(
    "--augment",
    type=click.Choice(tuple(AUGMENTATIONS)),
    default="light",
    show_default=True,
    help="Images: timm's training augmentation; light: crops of 80-100% and flips; strong: ImageNet's recipe.",
)
@click.option(
    "--pairs", type=click.IntRange(min=1), default=4000, show_default=True, help="Texts: contrastive pairs sampled."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the order and the pairs.")
@force_option
@run_options
@read_options
def finetune(data: Path, model, output: Path, schedule_name, budget, regularize, adapter, rank, adapt, target,
             head_epochs, stages, epochs_per_stage, lr, backbone_lr, stage_decay, patience, val_share, augment,
             pairs, seed, force, run, read) -> None:  # fmt: skip
    """Fine-tune a backbone on labelled DATA when frozen features are not enough.

    Images: the head (started from the linear probe on cached features) trains alone, then the
    network's stages are unfrozen one at a time from the top with smaller learning rates below,
    batch norm statistics frozen, early stopping on a validation split; by default both schedules
    are tried and the best on validation kept (or the frozen backbone). Texts: SetFit-style
    contrastive tuning on sampled pairs. The folder is a backbone like any other.

    \b
    Example:
      xfer finetune photos/ -o tuned/                            # chooses; curve.png shows why
      xfer finetune scans/ --schedule deep -o tuned-scans/      # far from photos: tune every stage
      xfer finetune photos/ --adapt dann --target new-camera/ -o tuned-dann/
      xfer featurize photos/ -m tuned/ -o cache/photos-tuned.h5 && xfer fit cache/photos-tuned.h5
    """
    schedules = candidate_schedules(
        schedule_name,
        regularize=regularize,
        adapter=adapter,
        rank=rank,
        adapt=adapt,
        head_epochs=head_epochs,
        stages=stages,
        epochs_per_stage=epochs_per_stage,
        lr=lr,
        backbone_lr=backbone_lr,
        stage_decay=stage_decay,
        batch_size=run.batch_size,
        patience=patience,
        val_share=val_share,
        augment=augment,
        pairs=pairs,
        seed=seed,
    )
    report = tune(
        data, model, output, schedules, read=read, run=run, force=force, progress=run.progress, budget=budget,
        target=target,
    )  # fmt: skip
    for line in tune_summary(report):
        click.echo(line)
    click.echo(f"wrote {output} in {report.seconds:.0f} s on {report.device}; use it: xfer featurize DATA -m {output}")


def tune_summary(report) -> list[str]:
    """What ``xfer finetune`` prints: the notes, each schedule tried against the frozen probe, the choice."""
    lines = [f"note: {note}" for note in report.notes]
    if report.probe_val_accuracy is not None:
        lines.append(f"frozen probe: validation accuracy {report.probe_val_accuracy:.3f}")
    for trial in report.trials:
        best = "-" if trial["best_val_accuracy"] is None else f"{trial['best_val_accuracy']:.3f}"
        ran = f"{trial['pairs']:,} pairs" if "pairs" in trial else f"epoch {trial['best_epoch']} of {trial['epochs']}"
        lines.append(
            f"{trial['schedule']}: validation accuracy {best} ({ran}, {trial['stopped']}, {trial['seconds']:.0f} s, "
            f"{trial['trainable_parameters']:,} trainable parameters)"
        )
    if report.trials:
        lines.append(f"kept: {report.chosen}")
    return lines
