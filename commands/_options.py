"""What every command shares: the output guard's declaration, option groups gathered into the
library's option objects, and the flags that mean one thing in every command.

Choice lists come from the library's tables (``PRECISIONS``, ``RUNTIMES``, ...), so a new choice
is added in one place. Only featurizer is imported here: commands that never fit a head do not
load scikit-learn.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from featurizer import FeatureOptions, ReadOptions, RunOptions
from featurizer.cache import QUANTIZATIONS
from featurizer.engine import ENGINES, SHARD_FORMATS, EmbedOptions
from featurizer.spec import POOLINGS, PRECISIONS, RUNTIMES
from featurizer.storage import Url, guarding, is_url, refuse_input_write

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Location(click.Path):
    """A path option or argument that may also be a URL (``s3://``, ``gs://``): URLs are passed on as
    ``Url`` text (which answers ``stem``, ``with_name``, ... as a path does), checked where they are
    read or written; local paths get click's checks."""

    def convert(self, value, param, ctx):

        if isinstance(value, str) and is_url(value):
            return Url(value)
        return super().convert(value, param, ctx)


def paths(inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = (), models: tuple[str, ...] = (),
          other: tuple[str, ...] = ()):  # fmt: skip
    """Declare a command's path parameters to the output guard (featurizer.storage): the command
    runs inside one guard holding its ``inputs`` (``models`` with their cards), and each output given
    is refused before any work when it is, holds or lies inside an input. ``other`` names path
    parameters that are neither (the cache folder). tests/test_guard.py fails on a path parameter
    a command does not declare here."""

    def flat(values):
        for value in values:
            yield from (value if isinstance(value, (tuple, list)) else [value])

    def apply(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):

            given = list(flat(kwargs.get(name) for name in inputs))
            for model in flat(kwargs.get(name) for name in models):
                if model is not None:
                    given += [model, model.with_suffix(".json")]
            with guarding(*given):
                for output in flat(kwargs.get(name) for name in outputs):
                    if output is not None:
                        refuse_input_write(output, inside=True)
                return fn(*args, **kwargs)

        wrapper.guarded_paths = {"inputs": inputs, "outputs": outputs, "models": models, "other": other}
        return wrapper

    return apply


READ_PATHS = ("labels",)  # read_options' path parameters: inputs
RUN_PATHS = ("cache_dir",)  # run_options': the cache, neither input nor output


def options(*decorators):
    """Several click options as one decorator, listed in --help in the order given."""

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def _gathered(fn, make, names: tuple[str, ...], into: str):
    """Wrap ``fn`` so that the click parameters ``names`` arrive as one object ``into=make(**those)``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        kwargs[into] = make(**{name: kwargs.pop(name) for name in names})
        return fn(*args, **kwargs)

    return wrapper


def _feature_options(model, weights, layers, pool, precision, runtime):

    return FeatureOptions(model, tuple(layers) or None, pool, weights, precision, runtime)


def feature_options(fn):
    """What decides the vectors, as ``features: FeatureOptions``."""
    fn = _gathered(fn, _feature_options, ("model", "weights", "layers", "pool", "precision", "runtime"), "features")
    return options(
        click.option(
            "-m",
            "--model",
            help="Backbone: a name from 'xfer models', timm/NAME, torchvision/NAME, hf/ID. "
            "[default: efficientnet_lite0 for images, minilm for texts]",
        ),
        click.option(
            "--weights",
            type=Location(exists=True, path_type=Path),
            help="Local checkpoint (.pth/.safetensors, loaded without running code) or model folder.",
        ),
        click.option(
            "-l",
            "--layer",
            "layers",
            multiple=True,
            help="Layer name or depth index (-1 is the last); repeat for several, all from one pass. "
            "[default: pre-logits for images, last layer for texts; featurize also stores the two distinct layers "
            "before it, for fit to choose from]",
        ),
        click.option(
            "--pool",
            type=click.Choice(POOLINGS),
            help="Pooling of maps (avg, max, gem) or tokens (mean, cls, max). [default: avg / mean]",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default="fp32",
            show_default=True,
            help="Arithmetic of the forward pass: bf16 weights (CPU or GPU), fp16 autocast (GPU), or int8 "
            "dynamic quantisation (CPU); faster, slightly different vectors, cached separately.",
        ),
        click.option(
            "--runtime",
            type=click.Choice(("auto", *RUNTIMES)),
            default="auto",
            show_default=True,
            help="onnx: ONNX Runtime (CPU; fp32, or int8 for texts), exported to the cache folder on first use; "
            "starts in a fraction of the time and runs faster. auto: onnx on a CPU for the built-in models "
            "where it is installed, torch otherwise (GPUs, bf16/fp16, zoo models).",
        ),
    )(fn)


def _run_options(device, batch_size, workers, cache_dir, quiet=False):

    return RunOptions(device, batch_size, workers, cache_dir, not quiet)


def run_options(fn):
    """How vectors are computed (never part of the spec), as ``run: RunOptions``."""
    fn = _gathered(fn, _run_options, ("device", "batch_size", "workers", "cache_dir", "quiet"), "run")
    return options(
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        click.option(
            "-b",
            "--batch-size",
            type=click.IntRange(min=1),
            help="Items per batch. [default: 256 on GPU; on CPU 32 images, 64 texts]",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            help="Image decoding processes (0: decode in the main process). [default: min(4, CPUs)]",
        ),
        click.option(
            "--cache-dir",
            type=Location(file_okay=False, path_type=Path),
            envvar="FEATURIZER_CACHE",
            show_envvar=True,
            help="Embedding cache folder shared by all commands [default: ./cache].",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    )(fn)


def _read_options(column, label_column, extensions, encoding, sep, header, labels):

    return ReadOptions(column, label_column, tuple(extensions) or None, encoding, sep, header, labels)


def read_options(fn):
    """How an input path is read into items, as ``read: ReadOptions``."""
    names = ("column", "label_column", "extensions", "encoding", "sep", "header", "labels")
    fn = _gathered(fn, _read_options, names, "read")
    return options(
        click.option(
            "--column",
            help="Table column holding image paths or texts: a name or a 0-based position. [default: guessed]",
        ),
        click.option(
            "--label-column", help="Table column holding labels: a name or a 0-based position. [default: guessed]"
        ),
        click.option("--ext", "extensions", multiple=True, help="File extensions to read from a folder (repeatable)."),
        click.option("--encoding", default="utf-8", show_default=True, help="Encoding of text, CSV and JSONL files."),
        click.option(
            "--sep", help="Field separator of a table (\\t for tab). [default: tab for .tsv, comma otherwise]"
        ),
        click.option(
            "--header/--no-header",
            default=None,
            help="Whether a table's first row names its columns. [default: detected from the names]",
        ),
        click.option(
            "--labels",
            type=Location(exists=True, dir_okay=False),
            help="A CSV of id,label whose labels replace the input's (e.g. xfer suggest's CSV, labelled).",
        ),
    )(fn)


def _engine_options(engine, address, actors, gpus_per_actor, shard_size, shard_format, quantize):

    return EmbedOptions(engine, shard_size, address, actors, gpus_per_actor, shard_format, quantize)


def engine_options(fn):
    """How ``embed`` cuts and distributes the work, as ``engine: EmbedOptions``."""
    names = ("engine", "address", "actors", "gpus_per_actor", "shard_size", "shard_format", "quantize")
    fn = _gathered(fn, _engine_options, names, "engine")
    return options(
        click.option(
            "--engine",
            type=click.Choice(ENGINES),
            default="local",
            show_default=True,
            help="local: this process; ray: an actor pool on a Ray cluster.",
        ),
        click.option(
            "--address", help="Ray cluster address (e.g. ray://head:10001 or auto). [default: start a local Ray]"
        ),
        click.option("--actors", type=click.IntRange(min=1), default=1, show_default=True, help="Ray actors."),
        click.option(
            "--gpus-per-actor",
            type=click.FloatRange(min=0),
            default=0,
            show_default=True,
            help="GPUs each Ray actor asks for (1: a GPU each); needed for --device cuda, as Ray hides GPUs otherwise.",
        ),
        click.option(
            "--shard-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Items per shard."
        ),
        click.option(
            "--format",
            "shard_format",
            type=click.Choice(SHARD_FORMATS),
            default="h5",
            show_default=True,
            help="Each shard a feature file (h5; xfer merge joins them) or a Parquet file (the folder is one table).",
        ),
        quantize_option("Parquet shards: int8 codes (4x smaller, ranges per shard) or sign bits (32x)."),
    )(fn)


def quantize_option(help: str):
    """``--quantize int8|binary``: the one flag for storing vectors quantised (float32 without it)."""
    return click.option("--quantize", type=click.Choice(QUANTIZATIONS), default=None, help=help)


def choice_option(flag: str, choices: list[str], help: str):
    """A flag taking one of ``choices``, the first being the default."""
    return click.option(flag, type=click.Choice(choices), default=choices[0], show_default=True, help=help)


def output_option(help: str, folder: bool = False, required: bool = False):
    """``-o/--output``: the same flag in every command; a file unless ``folder``."""
    kind = Location(file_okay=not folder, dir_okay=folder, path_type=Path)
    return click.option("-o", "--output", type=kind, required=required, help=help)


force_option = click.option(
    "--force",
    is_flag=True,
    help="Replace an output xfer wrote earlier (from other inputs); never an input, nor anything xfer did not write.",
)
trust_option = click.option(
    "--trust",
    is_flag=True,
    help="Load a model that changed since it was saved, holds unknown types, or is an old joblib pickle "
    "(pickles run code when loaded): only for files you made yourself.",
)
head_layer_option = click.option(
    "-l",
    "--layer",
    "layers",
    multiple=True,
    help="Layer of the feature file (name or index, -1 is the last); repeat to concatenate; "
    "'auto' screens each and their concatenation by LogME and cross-validates the best two. "
    "[default: auto for fit, the file's first layer for fewshot]",
)


tta_option = click.option(
    "--tta",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Test-time augmentation: average each image's probabilities with those of N augmented views.",
)


def model_run_options(fn):
    """Run options for commands that featurize raw inputs with a saved model's spec."""
    return options(tta_option, trust_option, run_options, read_options)(fn)


def task_scores(scores: dict) -> str:
    shown = {k: v for k, v in scores.items() if not k.endswith("_std") and k not in ("kind", "n", "per_class_f1")}
    return ", ".join(f"{k.replace('_', '-')} {v:.3f}" for k, v in shown.items())
