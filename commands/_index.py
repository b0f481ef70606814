"""Commands that take vectors elsewhere: export (Parquet, NumPy), index and search (FAISS)."""

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
    quantize_option,
    read_options,
    run_options,
)
from featurizer.storage import default_outputs
from pipelines.index import EXPORT_FORMATS, INDEX_KINDS, build_index
from pipelines.index import export as write
from pipelines.index import search as nearest


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("features", "calibration"), outputs=("output",))
@click.argument("features", metavar="FEATURES", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default="parquet",
    show_default=True,
    help="parquet: one row per item, a list column per layer, the spec in the metadata; npy: a folder; "
    "h5: a quantised feature file, which fit, evaluate and index read as they read float ones.",
)
@quantize_option("Store int8 codes with per-dimension ranges (4x smaller) or bits above each median (32x).")
@click.option(
    "--calibration",
    type=Location(exists=True, dir_okay=False, path_type=Path),
    help="A quantised feature file whose ranges to reuse (the training set's, for its test set). [default: its own]",
)
@click.option(
    "-o",
    "--output",
    type=Location(path_type=Path),
    help="Parquet file, NumPy folder or feature file. [default: FEATURES with .parquet, FEATURES-npy/, "
    "or FEATURES-quantized.h5]",
)
@force_option
def export(features: Path, fmt: str, output, force: bool, quantize, calibration) -> None:
    """Write a feature file as Parquet or NumPy, for pandas, polars, Spark or a vector database.

    \b
    Examples:
      xfer export cache/photos.h5 --format parquet -o photos.parquet
      xfer export cache/train.h5 --format h5 --quantize int8 -o cache/train-int8.h5
      xfer export cache/test.h5 --format h5 --quantize int8 --calibration cache/train-int8.h5 -o cache/test-int8.h5
    """
    output = output or default_outputs("export", features, fmt)["output"]
    written = write(features, output, fmt, force=force, quantization=quantize, calibration=calibration)
    click.echo(f"wrote {written}")


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("features",), outputs=("output",))
@click.argument("features", metavar="FEATURES", type=Location(exists=True, dir_okay=False, path_type=Path))
@output_option("Index folder.", folder=True, required=True)
@click.option("-l", "--layer", help="Layer to index. [default: the file's first]")
@click.option(
    "--kind",
    type=click.Choice(INDEX_KINDS),
    default="auto",
    show_default=True,
    help="flat: exact; hnsw: approximate, for very large files; auto: flat up to 1,000,000 items.",
)
@quantize_option("int8: 8-bit codes (4x smaller); binary: sign bits searched by Hamming distance, rescored (32x).")
@force_option
def index(features: Path, output: Path, layer, kind: str, quantize, force: bool) -> None:
    """Build a similarity index (FAISS, cosine) of a feature file's vectors, for xfer search."""
    meta = build_index(features, output, layer, kind, force=force, quantization=quantize)
    codes = f", {meta['quantization']}" if meta["quantization"] else ""
    click.echo(f"indexed {meta['items']} items ({meta['layer']}, {meta['dim']}-d, {meta['kind']}{codes}) in {output}")


@click.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("index_dir", "queries", *READ_PATHS), other=RUN_PATHS)
@click.argument("index_dir", metavar="INDEX", type=Location(exists=True, file_okay=False, path_type=Path))
@click.argument("queries", metavar="QUERY...", nargs=-1, type=Location(exists=True, path_type=Path))
@click.option("--text", "texts", multiple=True, help="A text to search for (text indexes); repeat.")
@click.option("-k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours per query.")
@run_options
@read_options
def search(index_dir: Path, queries, texts, k: int, run, read) -> None:
    """The nearest indexed items of images, texts, tables or feature files, made with the index's spec.

    \b
    Examples:
      xfer search index/ query.jpg
      xfer search index/ --text "Who invented the telephone ?"
    """
    for query, rank, item, source, score in nearest(index_dir, queries, texts, k, run, read):
        click.echo(f"{str(query)[:40]:<40} {rank:>3}  {score:.4f}  {item}  {str(source)[:60]}")
