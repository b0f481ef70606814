"""Commands that learn from labels: fit, rank, fewshot."""

from __future__ import annotations

from pathlib import Path

import click

from commands._options import (
    CONTEXT_SETTINGS,
    READ_PATHS,
    RUN_PATHS,
    Location,
    force_option,
    head_layer_option,
    output_option,
    paths,
    read_options,
    run_options,
    task_scores,
)
from featurizer.storage import claim
from pipelines import few_shot_files, fit_file, plot_learning_curve
from pipelines import rank as rank_candidates
from pipelines.adapt import ADAPT_MAPS, ADAPT_METHODS
from pipelines.fit import CHANCE_LOGME, DEFAULT_PER_CLASS
from pipelines.heads import HEADS, KINDS, MEMORY_PER_CLASS, MITIGATIONS, NORMALISATIONS, SEMI_METHODS


def _print_cv_table(rows, baseline=None) -> None:
    screened = any(row.logme is not None for row in rows)
    click.echo(f"{'layers':<30} {'cv accuracy':>14}{'  LogME' if screened else ''}  best parameters")
    for row in [*rows, *([baseline] if baseline is not None else [])]:
        name = row.name if row is not baseline else f"baseline: {row.name}"
        if row.mean == row.mean:
            score = f"{row.mean:.3f} ± {row.std:.3f}"
        else:
            score = "n/a (no CV)" if row.tried else "not tried"
        logme = f"  {row.logme:>5.3f}" if row.logme is not None else "       " if screened else ""
        click.echo(f"{name:<30} {score:>14}{logme}  {row.params or ''}")


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("train", "target", "zero_shot", "unlabelled", "groups"), outputs=("output",))
@click.argument("train", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--head",
    type=click.Choice(tuple(HEADS)),
    default="logreg",
    show_default=True,
    help="Classifier on top of the features.",
)
@head_layer_option
@click.option(
    "--normalise",
    type=click.Choice(NORMALISATIONS),
    help="Feature normalisation before the head. [default: standard for linear heads and SVMs]",
)
@click.option("--baseline", is_flag=True, help="Also score the head on raw pixels / TF-IDF (no transfer).")
@output_option("Model file; a JSON sidecar is written beside it. [default: models/<train>-<head>.skops]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the cross-validation folds.")
@click.option("--C", "c", type=click.FloatRange(min=0, min_open=True), help="Fix C (logreg, SVMs): no CV.")
@click.option("--no-cv", is_flag=True, help="Fit the head with its default settings: no cross-validation.")
@click.option("--n-jobs", type=int, help="Threads for the cross-validation folds. [default: all cores above 500 items]")
@click.option(
    "--adapt",
    type=click.Choice(ADAPT_METHODS),
    help="Adapt to an unlabelled --target feature file: align the features (mean, coral, subspace), weight the "
    "training items (reweight), or auto: each scored without target labels, none kept unless one wins.",
)
@click.option(
    "--target",
    type=Location(exists=True, dir_okay=False, path_type=Path),
    help="Unlabelled feature file of the domain the model will predict on (with --adapt).",
)
@click.option(
    "--unlabelled",
    type=Location(exists=True, dir_okay=False, path_type=Path),
    help="Feature file of unlabelled items of the same spec (a pool) for a semi-supervised head.",
)
@click.option(
    "--semi",
    type=click.Choice(SEMI_METHODS),
    help="How to use --unlabelled: auto chooses by cross-validation on the labelled items and keeps the plain "
    "head unless a method beats it beyond noise. [default: auto with --unlabelled]",
)
@click.option(
    "--zero-shot",
    "zero_shot",
    type=Location(exists=True, dir_okay=False, path_type=Path),
    help="A file of class names, one a line ('name: description'): prototypes from their text embeddings, "
    "used alone, or as a prior for the labelled items (its weight chosen by CV). Text models only.",
)
@click.option(
    "--template",
    "templates",
    multiple=True,
    help="With --zero-shot: a sentence with {} for the description; repeat to average. [default: {}]",
)
@click.option(
    "--label-column",
    "label_columns",
    multiple=True,
    help="Column of the input table to learn (repeat for several tasks in one model): classes, label sets "
    "('a|b' or a JSON list) or numbers. [default: the feature file's labels]",
)
@click.option(
    "--label-kind",
    "kinds",
    multiple=True,
    metavar="COLUMN=KIND",
    help="How to read a label column: classes, multilabel or regression. [default: read from its cells]",
)
@click.option(
    "--mitigate",
    type=click.Choice(MITIGATIONS),
    help="Refit the head so that its recall per class (equalized_odds) or its share of each class "
    "(demographic_parity) is even across --groups (fairlearn's exponentiated gradient); predicting needs no groups.",
)
@click.option(
    "--groups",
    type=Location(exists=True, dir_okay=False, path_type=Path),
    help="With --mitigate: a CSV of id,group covering every labelled item of TRAIN (as evaluate --by reads).",
)
@click.option(
    "--memory",
    type=click.IntRange(min=1),
    default=MEMORY_PER_CLASS,
    show_default=True,
    help="Items per class kept beside the model (MODEL.memory.h5, cached vectors) for xfer update to rehearse.",
)
@click.option(
    "--no-calibrate",
    is_flag=True,
    help="Keep logistic regression's raw probabilities (default: temperature-scaled on out-of-fold scores).",
)
@force_option
def fit(
    train: Path,
    head: str,
    layers,
    normalise,
    baseline: bool,
    output,
    seed: int,
    c,
    no_cv,
    n_jobs,
    adapt,
    target,
    unlabelled,
    semi,
    zero_shot,
    templates,
    label_columns,
    kinds,
    mitigate,
    groups,
    memory,
    no_calibrate,
    force,
) -> None:
    """Fit a classifier on a feature file, choosing hyperparameters and layers by cross-validation.

    With several layers in the file, each and their concatenation are screened by LogME and the
    best two are cross-validated. Logistic regression's probabilities are temperature-scaled on
    out-of-fold scores.

    \b
    Examples:
      xfer fit cache/photos.h5 -o models/photos.skops      # layers chosen among the file's
      xfer fit cache/photos.h5 --head prototype --baseline
      xfer fit cache/photos.h5 --layer -1 --layer -3        # these two layers, concatenated
      xfer fit cache/news.h5 --label-column topic --label-column tags   # two tasks, one model
      xfer fit cache/loans.h5 --mitigate equalized_odds --groups groups.csv
    """
    fixed = {"C": c} if c is not None else {} if no_cv else None
    kwargs = {"normalise": normalise, "baseline": baseline, "seed": seed, "n_jobs": n_jobs, "params": fixed}
    kwargs.update(
        calibrate=not no_calibrate, progress=True, adapt=adapt, target=target, unlabelled=unlabelled, semi=semi
    )
    kwargs.update(label_columns=label_columns, kinds=_kinds(kinds), zero_shot=zero_shot, templates=templates)
    kwargs.update(mitigate=mitigate, groups=groups)
    result = fit_file(train, head, layers or None, output=output, force=force, memory=memory, **kwargs)
    if result.card.tasks:
        _print_tasks(result.card.tasks)
    else:
        _print_cv_table(result.table, result.baseline)
    for warning in result.warnings:
        click.echo(f"note: {warning}")
    if result.card.calibration:
        found = result.card.calibration
        before, after = found["out_of_fold_before"], found["out_of_fold_after"]
        if found["temperature"] == 1.0:
            click.echo(f"probabilities: calibrated already (out-of-fold ECE {before['ece']:.3f}); kept as they are")
        else:
            click.echo(
                f"probabilities: temperature {found['temperature']:.2f} fitted on out-of-fold scores; "
                f"ECE {before['ece']:.3f} -> {after['ece']:.3f}, Brier {before['brier']:.3f} -> {after['brier']:.3f}"
            )
    if result.card.tasks:
        names = ", ".join(task["name"] for task in result.card.tasks)
        click.echo(f"kept {'+'.join(result.card.spec.layers)} for every task ({names}); wrote {result.output}")
        return
    score = "no CV score" if result.card.cv_score != result.card.cv_score else f"{result.card.cv_score:.3f}"
    click.echo(f"kept {'+'.join(result.card.spec.layers)} ({score}); wrote {result.output}")


def _kinds(given: tuple[str, ...]) -> dict[str, str]:
    """``--label-kind COLUMN=KIND`` pairs as a dict, checked once."""
    kinds = {}
    for item in given:
        column, sep, kind = item.rpartition("=")
        if not sep or not column or kind not in KINDS:
            raise click.BadParameter(
                f"{item!r}: write COLUMN=KIND, KIND one of {', '.join(KINDS)}", param_hint="--label-kind"
            )
        kinds[column] = kind
    return kinds


def _print_tasks(tasks: list[dict]) -> None:
    click.echo(f"{'task':<20} {'kind':<11} {'n':>6}  cross-validated")
    for task in tasks:
        params = {k: v for k, v in task["params"].items() if k != "thresholds"}
        click.echo(
            f"{task['name'][:20]:<20} {task['kind']:<11} {task['n']:>6}  {task_scores(task['scores'])}  {params}"
        )


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", *READ_PATHS), other=RUN_PATHS)
@click.argument("data", metavar="INPUT", type=Location(exists=True, path_type=Path))
@click.option("-m", "--model", "models", multiple=True, help="Backbone to score; repeat. [default: the default model]")
@click.option(
    "-l",
    "--layer",
    "layers",
    multiple=True,
    help="Layer name or depth index for every model; repeat. [default: each model's last three distinct layers]",
)
@click.option(
    "--per-class",
    type=click.IntRange(min=2),
    default=DEFAULT_PER_CLASS,
    show_default=True,
    help="Labelled items sampled per class.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
@run_options
@read_options
def rank(data: Path, models, layers, per_class: int, seed: int, run, read) -> None:
    """Rank backbones and layers for a labelled input before featurizing all of it.

    Featurizes a sample (through the cache) with each model and scores each layer, and each model's
    layers side by side, by LogME evidence (0 is chance, more is better) and leave-one-out
    nearest-centroid accuracy. Recommends the best LogME.

    \b
    Examples:
      xfer rank photos/ -m efficientnet_lite0 -m efficientnet_lite2
      xfer rank questions.csv -m minilm -l -1 -l -3 -l -5
    """
    ranking = rank_candidates(data, models, layers or None, per_class=per_class, seed=seed, run=run, read=read)
    if ranking.skipped:
        click.echo(f"warning: {len(ranking.skipped)} sampled items could not be featurized and were left out", err=True)
    click.echo(
        f"{ranking.items} labelled items, {ranking.classes} classes (up to {per_class} each); "
        f"chance {ranking.chance:.3f}"
    )
    click.echo(f"{'candidate':<44} {'dims':>6} {'LogME':>8} {'LOO centroid':>13} {'seconds':>8}")
    for row in ranking.rows:
        click.echo(f"{row.name:<44} {row.dims:>6} {row.logme:>8.3f} {row.nearest_centroid:>13.3f} {row.seconds:>8.1f}")
    best = ranking.recommended
    if best.logme <= CHANCE_LOGME:
        click.echo("no candidate explains the labels better than chance (LogME <= 0.02): check the labels")
        return
    flags = " ".join(f"-l {name}" for name in best.layers)
    click.echo(f"recommended: {best.name} (xfer featurize {data} -m {best.model} {flags})")


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("train", "test"), outputs=("png",))
@click.argument("train", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("test", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option("--shots", default="1,2,4,8,16", show_default=True, help="Labelled examples per class, comma-separated.")
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True, help="Seeded draws per N.")
@click.option(
    "--head",
    "heads",
    multiple=True,
    type=click.Choice(tuple(HEADS)),
    help="Head(s) to compare; repeat. [default: logreg and prototype]",
)
@head_layer_option
@click.option(
    "--max-iter", type=click.IntRange(min=1), help="Iterations of logistic regression [default: 100, as MTEB]."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first draw; run i uses seed + i.")
@click.option(
    "--png",
    type=Location(dir_okay=False, path_type=Path),
    default=Path("fewshot.png"),
    show_default=True,
    help="Learning-curve picture.",
)
@click.option(
    "--adapt",
    type=click.Choice(ADAPT_MAPS),
    help="Also each head on training features aligned to TEST's (unsupervised), side by side.",
)
@click.option(
    "--semi",
    type=click.Choice([m for m in SEMI_METHODS if m != "none"]),
    help="Also each head with the training items not drawn as its unlabelled pool (semi-supervised), side by side.",
)
def fewshot(
    train: Path, test: Path, shots: str, runs: int, heads, layers, max_iter, seed: int, png: Path, adapt, semi
) -> None:
    """Few-shot protocol: N labelled examples per class, fit, score on all of TEST, over seeded runs.

    TRAIN and TEST must hold the same kind of features (model, weights, layer, pooling, precision).

    \b
    MTEB's classification protocol:
      xfer fewshot train.h5 test.h5 --head logreg --max-iter 100 --shots 8 --runs 10
    """
    try:
        counts = [int(n) for n in shots.split(",") if n.strip()]
    except ValueError:
        raise click.BadParameter("give numbers separated by commas, e.g. 1,2,4,8", param_hint="--shots") from None
    claim(png, kind="picture")  # before the work
    protocol = {"shots": counts, "runs": runs, "heads": heads or ("logreg", "prototype"), "max_iter": max_iter}
    protocol["semi"] = semi
    rows, chosen, warnings = few_shot_files(
        train, test, layers or None, adapt=adapt, seed=seed, progress=True, **protocol
    )
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    ran = [n for n in dict.fromkeys(counts) if any(r.shots == n for r in rows)]  # only what ran is shown
    width = max([18, *(len(r.head) + 2 for r in rows)])
    click.echo(f"{'head':<{width}}" + "".join(f"{f'N={n}':>16}" for n in ran))
    for head in dict.fromkeys(r.head for r in rows):
        mine = {r.shots: r for r in rows if r.head == head}
        cells = (f"{mine[n].mean:>9.3f} ± {mine[n].std:.3f}" if n in mine else f"{'skipped':>16}" for n in ran)
        click.echo(f"{head:<{width}}" + "".join(cells))
    plot_learning_curve(rows, png, title=f"{train.stem}: {'+'.join(chosen)}, {runs} runs")
    click.echo(f"wrote {png}")
