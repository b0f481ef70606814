"""Commands that score and examine: shift, audit, predict, suggest, evaluate, card."""

from __future__ import annotations

import json
from pathlib import Path

import click

from commands._options import (
    CONTEXT_SETTINGS,
    READ_PATHS,
    RUN_PATHS,
    Location,
    model_run_options,
    output_option,
    paths,
    task_scores,
)
from featurizer.storage import claim, default_outputs, write_csv
from pipelines import evaluate_to_files, predict_file
from pipelines.audit import audit_files
from pipelines.evaluate import STRATEGIES, measure_shift, suggest_file
from pipelines.models import card_text, read_card
from pipelines.report import MAP_METHODS


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("source", "target"), outputs=("png",))
@click.argument("source", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-l", "--layer", "layers", multiple=True, help="Layer(s) to compare. [default: every layer both files hold]"
)
@click.option(
    "--png",
    type=Location(dir_okay=False, path_type=Path),
    help="Both domains in two dimensions (PCA). [default: beside TARGET, TARGET.shift.png]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the measures as JSON.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subsamples and permutations.")
def shift(source: Path, target: Path, layers, png, as_json: bool, seed: int) -> None:
    """How far apart two feature files are: MMD with a permutation test, proxy A-distance, class drift.

    \b
    Examples:
      xfer shift cache/studio.h5 cache/phone_photos.h5
      xfer shift cache/train.h5 cache/new_batch.h5 --layer pre_logits --json
    """
    png = png or default_outputs("shift", target)["png"]
    claim(png, kind="picture")  # before the work
    report = measure_shift(source, target, layers or None, seed, png)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    sizes = f"{report.n_source} source and {report.n_target} target items"
    click.echo(f"layers           {', '.join(report.layers)}; {sizes}")
    click.echo(f"MMD (RBF)        {report.mmd:.4f}  (permutation p = {report.mmd_p:.3f})")
    click.echo(
        f"proxy A-distance {report.proxy_a:.3f}  (a classifier tells the domains apart "
        f"{report.domain_accuracy:.1%} of the time; 0 = not at all, 2 = always)"
    )
    if report.drift:
        worst = sorted(report.drift.items(), key=lambda kv: -kv[1])[:5]
        shown = ", ".join(f"{c} {d:.3f}" for c, d in worst)
        click.echo(f"class drift      {shown}  (cosine; between source classes: {report.class_spread:.3f})")
    click.echo(f"reading          {report.reading}")
    click.echo(f"wrote {png}")


map_option = click.option(
    "--map",
    "map_method",
    type=click.Choice(MAP_METHODS),
    default="auto",
    show_default=True,
    help="2-D map of the report: auto is UMAP when umap-learn is installed (featurizer[audit]), else PCA.",
)


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("train", "test"), outputs=("output", "report"))
@click.argument("train", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("test", required=False, type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-l", "--layer", "layers", multiple=True, help="Layer to compare items on; repeat. [default: every layer]"
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    help="Cosine similarity from which two items count as near-duplicates (or a test item as leaked). "
    "[default: read from the data: 3/4 of the way from items' usual similarity to their nearest neighbour "
    "up to 1, within 0.90-0.995]",
)
@output_option("Folder of the CSVs, one per finding. [default: <train>-audit/ beside it]", folder=True)
@click.option("--report", type=Location(dir_okay=False, path_type=Path), help="Write an HTML report here too.")
@map_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds and of the map.")
def audit(train: Path, test, layers, threshold, output, report, map_method: str, seed: int) -> None:
    """Audit a feature file: near-duplicates, leaks into TEST, likely label errors, outliers, classes.

    Writes one CSV per finding (ids, sources, scores) and, with --report, one self-contained HTML
    page: a map of the embeddings with the findings ringed, and a gallery of each.

    \b
    Examples:
      xfer audit cache/photos.h5 cache/photos_test.h5 --report audit.html
      xfer audit cache/questions.h5 --threshold 0.98
    """
    found, written = audit_files(
        train,
        test,
        out=output,
        report=report,
        layer=layers or None,
        threshold=threshold,
        map_method=map_method,
        seed=seed,
    )
    for name, count in found.summary().items():
        click.echo(f"{name:<30} {'not searched' if count == -1 else count}")
    for note in found.notes:
        click.echo(f"note: {note}")
    for e in (found.label_issues or [])[:5]:
        click.echo(f"  label? {found.ids[e['row']][:50]:<50} {e['given']} -> {e['suggested']} ({e['quality']:.2f})")
    how = "given" if threshold is not None else "read from the data"
    click.echo(f"threshold {found.threshold:.3f} (cosine, {how}); wrote " + ", ".join(str(p) for p in written))


def print_groups(by_group: dict, overall: float) -> None:
    click.echo(f"{'group':<20} {'n':>6} {'accuracy':>9} {'macro-F1':>9}")
    for name, row in sorted(by_group["groups"].items(), key=lambda kv: kv[1]["accuracy"]):
        click.echo(f"{name[:20]:<20} {row['count']:>6} {row['accuracy']:>9.3f} {row['macro_f1']:>9.3f}")
    click.echo(
        f"worst group {by_group['worst_group']!r}: accuracy {by_group['worst_group_accuracy']:.3f} "
        f"(overall {overall:.3f}); largest gaps: accuracy {by_group['accuracy_gap']:.3f}, "
        f"macro-F1 {by_group['macro_f1_gap']:.3f}"
    )


def print_mitigation(found: dict) -> None:
    click.echo(
        f"{found['constraint']} gap across these groups: {found['gap_before']:.3f} unmitigated -> "
        f"{found['gap_after']:.3f} mitigated; accuracy {found['accuracy_before']:.3f} -> {found['accuracy_after']:.3f} "
        f"(cost {found['accuracy_cost']:+.3f})"
    )


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", *READ_PATHS), models=("model_path",), outputs=("output",), other=RUN_PATHS)
@click.argument("model_path", metavar="MODEL", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", metavar="INPUT", type=Location(exists=True, path_type=Path))
@output_option("CSV of id, predicted label and class probabilities. [default: <input>-predictions.csv]")
@model_run_options
def predict(model_path: Path, data: Path, output, tta: int, trust: bool, run, read) -> None:
    """Predict labels for raw images or texts (or a matching feature file) with a saved model.

    Inputs are featurized with exactly the model's feature spec (model, weights, layers, pooling,
    precision, runtime), through the cache.
    """
    output = output or default_outputs("predict", data)["output"]
    claim(output, kind="table")  # before the work
    counts = predict_file(model_path, data, output, trust=trust, run=run, read=read, tta=tta)
    tasks = read_card(model_path).tasks
    if tasks:  # one column per task
        kinds = ", ".join(f"{task['name']} ({task['kind']})" for task in tasks)
        click.echo(f"{next(iter(counts.values()))} predictions written to {output}: {kinds}")
        return
    click.echo(
        f"{sum(counts.values())} predictions written to {output}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", *READ_PATHS), models=("model_path",), outputs=("output",), other=RUN_PATHS)
@click.argument("model_path", metavar="MODEL", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", metavar="UNLABELLED", type=Location(exists=True, path_type=Path))
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="Items to suggest.")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="hybrid",
    show_default=True,
    help="margin/entropy: where the model hesitates; kcenter: spread over the embeddings, away from the "
    "training items; hybrid: uncertain items spread out.",
)
@output_option("CSV of the items to label, best first. [default: <input>-suggestions.csv]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --strategy random.")
@model_run_options
def suggest(model_path: Path, data: Path, count: int, strategy: str, output, seed: int, tta, trust, run, read) -> None:
    """Which items to label next: writes a CSV of rank, id, source, predicted label and scores.

    Label them (a label column, or move the files into class folders), featurize and fit again.

    \b
    Example:
      xfer suggest models/photos.skops unlabelled_photos/ -n 20
    """
    if tta:
        raise click.UsageError("--tta is for predict and evaluate")
    output = output or default_outputs("suggest", data)["output"]
    claim(output, kind="table")  # before the work
    header, rows = suggest_file(model_path, data, count, strategy, trust=trust, run=run, read=read, seed=seed)
    write_csv(output, header, rows)
    for row in rows[:10]:
        click.echo(f"{row[0]:>4}  {str(row[1])[:50]:<50} predicted {row[3]} ({row[4]})")
    click.echo(f"{len(rows)} suggestions ({strategy}) written to {output}")


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", *READ_PATHS), models=("model_path",), outputs=("output", "png", "report_html"), other=RUN_PATHS)
@click.argument("model_path", metavar="MODEL", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", metavar="TEST", type=Location(exists=True, path_type=Path))
@output_option("JSON report. [default: beside the model, MODEL.eval-<test>.json]")
@click.option(
    "--png",
    type=Location(dir_okay=False, path_type=Path),
    help="Confusion-matrix picture. [default: beside the model, MODEL.confusion-<test>.png]",
)
@click.option(
    "--by",
    help="Report per group: a column of the input table, or a CSV of id,group (for folders and feature files).",
)
@click.option(
    "--report", "report_html", type=Location(dir_okay=False, path_type=Path), help="Write an HTML report here too."
)
@map_option
@model_run_options
def evaluate(
    model_path: Path, data: Path, output, png, by, report_html, map_method: str, tta: int, trust: bool, run, read
) -> None:
    """Score a saved model on a labelled feature file or labelled raw inputs.

    Prints accuracy, macro-F1 and per-class precision and recall; writes a JSON report (naming the
    model, the test data and the feature spec), a row-normalised confusion-matrix PNG, a reliability
    diagram (are the probabilities honest? expected calibration error and Brier score), precision-
    recall curves per class, every item's prediction with its path or text, and the misclassified
    items (CSVs beside the model); with --report, one self-contained HTML page of it all.
    """
    options = {"trust": trust, "run": run, "read": read, "tta": tta, "by": by, "map_method": map_method}
    report, files = evaluate_to_files(model_path, data, output=output, png=png, html=report_html, **options)
    output = files["output"]
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if "tasks" in report:
        for name, scores in report["tasks"].items():
            click.echo(f"{name[:20]:<20} {scores['kind']:<11} n={scores['n']:<6} {task_scores(scores)}")
        click.echo(f"wrote {output}")
        return
    click.echo(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  (n={report['n']})")
    if report.get("without_adaptation") is not None:
        click.echo(
            f"without adaptation: accuracy {report['without_adaptation']:.4f} "
            "(the same head fitted on the training features as they are)"
        )
    click.echo(f"{'class':<20} {'precision':>9} {'recall':>7} {'support':>8}")
    for name, row in report["per_class"].items():
        click.echo(f"{name:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} {int(row['support']):>8}")
    if "by_group" in report:
        print_groups(report["by_group"], report["accuracy"])
        if "mitigation" in report:
            print_mitigation(report["mitigation"])
        click.echo(f"wrote {files['groups']}")
    if "calibration" in report:
        found = report["calibration"]
        click.echo(f"calibration: expected calibration error {found['ece']:.3f}, Brier score {found['brier']:.3f}")
    written = [output, files["png"], *([files["reliability"]] if "calibration" in report else [])]
    written += [files["pr"], files["predictions"]]
    written += [
        files["errors"],
        *([files["html"]] if files["html"] else []),
        *([files["card"]] if files["card"] else []),
    ]
    click.echo("wrote " + ", ".join(map(str, written)))


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("model_path",))
@click.argument("model_path", metavar="MODEL", type=Location(exists=True, path_type=Path))
def card(model_path: Path) -> None:
    """Print a saved model's card in Markdown, or a fine-tuned backbone folder's.

    Rendered fresh from the model's JSON card (models saved before cards existed too): task and
    labels with counts, the feature spec, data digests, the head chosen and why (each candidate's
    cross-validation), calibration, every evaluation so far (per group with --by), known limits.
    fit writes it beside the model as MODEL.md, and evaluate adds its results to it.

    \b
    Example:
      xfer card models/photos.skops
      xfer card tuned/photos/
    """
    click.echo(card_text(model_path), nl=False)
