"""Commands that turn inputs into vectors and describe them: featurize, embed, merge, info,
models, layers. They load featurizer only (never scikit-learn), so they start quickly."""

from __future__ import annotations

import json
from pathlib import Path

import click

from commands._options import (
    CONTEXT_SETTINGS,
    READ_PATHS,
    RUN_PATHS,
    Location,
    choice_option,
    engine_options,
    feature_options,
    force_option,
    output_option,
    paths,
    read_options,
    run_options,
)
from featurizer import FeatureFile
from featurizer.backbones import describe_layers
from featurizer.cache import STORE_DTYPES
from featurizer.engine import ON_ERROR, embed_options, featurize_options
from featurizer.engine import merge as merge_shards
from featurizer.spec import model_table
from featurizer.storage import claim


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("input_path", "weights", *READ_PATHS), outputs=("output",), other=RUN_PATHS)
@click.argument("input_path", metavar="INPUT", type=Location(exists=True, path_type=Path))
@output_option("Feature file to write. [default: CACHE_DIR/<input>-<model>-<digest>.h5]")
@feature_options
@run_options
@read_options
@choice_option(
    "--store-dtype",
    STORE_DTYPES,
    "How vectors are stored in the feature file (float16: half the size). Not the arithmetic: see --precision.",
)
@choice_option(
    "--on-error",
    ON_ERROR,
    "skip: record unreadable items with their reason and go on; fail: stop at the first.",
)
@click.option(
    "--augment",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also store N augmented views of each image (random resized crop and flip), for fit to train on.",
)
@force_option
def featurize(
    input_path: Path, output, features, run, read, store_dtype: str, on_error: str, augment: int, force: bool
) -> None:
    """Turn a folder of images or a file of texts into cached feature vectors.

    INPUT is a folder (class subfolders give labels), a CSV/TSV/JSONL file with a path or text
    column and an optional label column, or a text file with one text a line. Only items not yet
    in the cache are computed; an interrupted run resumes where it stopped.

    \b
    Examples:
      xfer featurize photos/ -o cache/photos.h5
      xfer featurize photos/ --layer -1 --layer -3 --pool gem
      xfer featurize questions.txt -o cache/questions.h5
    """
    write = {"store_dtype": store_dtype, "on_error": on_error, "force": force, "augment": augment}
    report = featurize_options(input_path, features, run, read, output=output, default_output=True, **write)
    click.echo(report.summary())


@click.command(context_settings=CONTEXT_SETTINGS)
def models() -> None:
    """List the built-in backbones and whether their weights are installed."""
    rows = model_table()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    click.echo(
        "\nAlso: timm/NAME (any timm model), torchvision/NAME (any torchvision classifier), "
        "hf/HUB_ID or hf/./FOLDER (BERT-family encoders); their weights download on first use."
    )


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("weights",))
@click.argument("model")
@click.option("--weights", type=Location(exists=True, path_type=Path), help="Local checkpoint or model folder.")
def layers(model: str, weights) -> None:
    """List the layers of MODEL that can be tapped, with their output shapes.

    Use the name or either index with 'xfer featurize --layer'. No weights are loaded: the shapes
    come from the architecture alone.
    """
    click.echo(f"reading the layers of {model} ...", err=True)
    rows = describe_layers(model, weights)
    click.echo(f"{'index':>5} {'-index':>6}  {'layer':<14} {'output shape':<20} pooled dim")
    for row in rows:
        mark = "  (default)" if row.default else ""
        click.echo(f"{row.index:>5} {row.index - len(rows):>6}  {row.name:<14} {row.shape:<20} {row.dim}{mark}")


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("path",))
@click.argument("path", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(path: Path, as_json: bool) -> None:
    """Describe a feature file: items, labels, layers, feature spec and versions."""
    with FeatureFile(path) as f:
        data = f.describe()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{path}: {data['items']} items, created {data['created']}")
    if data["origin"]:
        click.echo(f"input      {data['origin']}")
    spec = data["spec"]
    click.echo(f"model      {spec['model']} ({spec['modality']}), weights {spec['weights']}")
    if spec["weights_sha256"]:
        click.echo(f"           weights sha256 {spec['weights_sha256']}")
    click.echo(
        f"precision  {spec['precision']}; runtime {spec['runtime']}; preprocessing {json.dumps(spec['preprocessing'])}"
    )
    for (name, d), pool in zip(data["layers"].items(), spec["pooling"]):
        click.echo(f"layer      {name}: {d['shape'][0]} x {d['shape'][1]} {d['dtype']}, pooling {pool}")
    if data["labels"] is not None:
        click.echo(
            f"labels     {len([c for c in data['labels'] if c])} classes: "
            + ", ".join(f"{c or '(no label)'} ({n})" for c, n in data["labels"].items())
        )
    if data["columns"]:
        click.echo(f"columns    {', '.join(data['columns'])} (tasks for fit --label-column)")
    if data["errors"]:
        click.echo(f"errors     {len(data['errors'])}: " + "; ".join(f"{i}: {r}" for i, r in data["errors"][:5]))
    click.echo("versions   " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()))


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("input_path", "weights", *READ_PATHS), outputs=("output",), other=RUN_PATHS)
@click.argument("input_path", metavar="INPUT", type=Location(exists=True, path_type=Path))
@output_option("Folder for the shard files and manifest.json.", folder=True, required=True)
@feature_options
@run_options
@read_options
@engine_options
def embed(input_path, output, features, run, read, engine) -> None:
    """Batch-embed a dataset into sharded feature files with a manifest; re-running resumes.

    A shard is reused only when its file matches its checksum and holds the same spec and items;
    another --layer, --shard-size or a grown input recomputes exactly what changed. Join the
    shards with 'xfer merge OUTPUT'. Inputs and OUTPUT may be in object storage (s3://, gs://).

    \b
    Examples:
      xfer embed photos/ -o embeddings/
      xfer embed s3://bucket/photos/ -o s3://bucket/embeddings/ --format parquet
      xfer embed photos/ -o embeddings/ --engine ray --actors 2
      xfer embed photos/ -o embeddings/ --engine ray --address auto --gpus-per-actor 1 --device cuda
    """
    claim(output, folder=True, kind="embed")  # an empty folder, or one xfer wrote (a re-run resumes there)
    click.echo(embed_options(input_path, output, features, run, read, engine).summary())


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(other=("out",), outputs=("output",))
@click.argument("out", metavar="FOLDER", type=Location(exists=True, file_okay=False, path_type=Path))
@output_option("Merged feature file. [default: FOLDER/merged.h5]")
def merge(out: Path, output) -> None:
    """Join the shards of an 'xfer embed' folder into one feature file.

    The vectors are HDF5 virtual datasets over the shard files (nothing is copied), so keep the
    shards beside the merged file; it reads like any feature file, and is refused if a shard goes missing.
    """
    click.echo(f"wrote {merge_shards(out, output)}")
