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
from pipelines.finetune import AUGMENTATIONS, SCHEDULES, Schedule
from pipelines.finetune import finetune as tune


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", *READ_PATHS), outputs=("output",), other=RUN_PATHS)
@click.argument("data", metavar="DATA", type=Location(exists=True, path_type=Path))
@click.option("-m", "--model", help="Backbone to fine-tune. [default: the default model of the data's kind]")
@output_option("Folder of the tuned backbone (use it with featurize -m FOLDER).", folder=True, required=True)
@click.option(
    "--schedule",
    "schedule_name",
    type=click.Choice(tuple(SCHEDULES)),
    default="gentle",
    show_default=True,
    help="Images: gentle (photos: top 3 stages, small rates, early stopping) or deep (data far from photos, "
    "such as scans: every stage, 15x the rates, the best epoch of the whole run). The options below override it.",
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
def finetune(data: Path, model, output: Path, schedule_name, head_epochs, stages, epochs_per_stage, lr, backbone_lr,
             stage_decay, patience, val_share, augment, pairs, seed, force, run, read) -> None:  # fmt: skip
    """Fine-tune a backbone on labelled DATA when frozen features are not enough.

    Images: the head (started from the linear probe on cached features) trains alone, then the
    network's stages are unfrozen one at a time from the top with smaller learning rates below,
    batch norm statistics frozen, early stopping on a validation split. Texts: SetFit-style
    contrastive tuning on sampled pairs. The folder is a backbone like any other.

    \b
    Example:
      xfer finetune photos/ -m efficientnet_lite0 -o tuned/
      xfer finetune scans/ --schedule deep -o tuned-scans/      # far from photos: tune every stage
      xfer featurize photos/ -m tuned/ -o cache/photos-tuned.h5 && xfer fit cache/photos-tuned.h5
    """
    schedule = Schedule.preset(
        schedule_name,
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
    report = tune(data, model, output, schedule, read=read, run=run, force=force, progress=run.progress)
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.best_val_accuracy is not None:
        click.echo(
            f"best epoch {report.best_epoch} of {len(report.curve)}: validation accuracy {report.best_val_accuracy:.3f}"
        )
    click.echo(f"wrote {output} in {report.seconds:.0f} s on {report.device}; use it: xfer featurize DATA -m {output}")
