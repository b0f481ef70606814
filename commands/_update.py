"""Commands that grow a saved model: update."""

from __future__ import annotations

from pathlib import Path

import click

from commands._options import CONTEXT_SETTINGS, Location, force_option, output_option, paths, trust_option
from pipelines.fit import update_file
from pipelines.heads import MEMORY_STRATEGIES


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("new",), models=("model",), outputs=("output",))
@click.argument("model", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", metavar="NEW.h5", type=Location(exists=True, dir_okay=False, path_type=Path))
@output_option("The grown model (.skops), with its card and its rehearsal memory beside it.", required=True)
@click.option(
    "--memory",
    type=click.IntRange(min=1),
    default=None,
    help="Items kept per class for later updates. [default: as the model kept]",
)
@click.option(
    "--strategy",
    type=click.Choice(MEMORY_STRATEGIES),
    default=None,
    help="How the memory is chosen: herding (its mean closest to the class's) or random. [default: as before]",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds and of a random memory.")
@trust_option
@force_option
def update(model: Path, new: Path, output: Path, memory, strategy, seed: int, trust: bool, force: bool) -> None:
    """Add new classes and new labelled items to a saved model, without forgetting the old classes.

    The head learns the new items beside the rehearsal memory kept with the model (cached vectors
    of a few items per class): prototype and kNN heads in place, linear heads refitted from it,
    logistic regression warm-started. Prints the old classes' accuracy before and after and the new
    classes' accuracy (cross-validated over the memory and the new items).

    \b
    Examples:
      xfer update models/photos.skops cache/new-photos.h5 -o models/photos-2.skops
      xfer update models/photos.skops cache/more.h5 -o models/photos-2.skops --memory 100
    """
    result = update_file(model, new, output, force=force, memory=memory, strategy=strategy, seed=seed, trust=trust)
    for line in result.summary():
        click.echo(line)
    click.echo(f"wrote {result.output}")
