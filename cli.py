"""xfer: the command line of featurizer, a thin layer over the library.

Each command parses its options into the library's option objects (``FeatureOptions``,
``RunOptions``, ``ReadOptions``), calls one library function and prints the result; library
errors become one-line messages with a non-zero exit code.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
HEAD_CHOICES = ["logreg", "linear-svm", "svm", "ridge", "lda", "prototype", "knn"]


class _Group(click.Group):
    """Turns library errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        from featurizer import FeaturizerError

        try:
            return super().invoke(ctx)
        except FeaturizerError as err:
            raise click.ClickException(str(err)) from None
        except BrokenPipeError:
            raise  # the reader went away (`| head`): click ends quietly
        except OSError as err:  # a full disk, a permission, a vanished file: the cache stays readable
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            raise click.ClickException(f"{where}{err.strerror or err}") from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Finished batches are cached: run the same command again to resume.", err=True)
            sys.exit(130)


class Location(click.Path):
    """A path option or argument that may also be a URL (``s3://``, ``gs://``): URLs are passed on as
    ``Url`` text (which answers ``stem``, ``with_name``, ... as a path does), checked where they are
    read or written; local paths get click's checks."""

    def convert(self, value, param, ctx):
        from featurizer.storage import Url, is_url

        if isinstance(value, str) and is_url(value):
            return Url(value)
        return super().convert(value, param, ctx)


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="featurizer", message="%(prog)s %(version)s")
def main() -> None:
    """Transfer learning for small labelled datasets: frozen pretrained features, classical heads.

    \b
    Start with:
      xfer models                                     # what backbones are available
      xfer featurize photos/ -o cache/photos.h5       # images (ImageFolder layout gives labels)
      xfer featurize texts.csv -o cache/texts.h5      # texts (a text column, optional label column)
      xfer fit cache/photos.h5 -o models/photos.skops
      xfer evaluate models/photos.skops test_photos/  # accuracy, per-class scores, calibration
      xfer predict models/photos.skops new_photos/ -o predictions.csv
      xfer rank photos/ -m efficientnet_lite0 -m efficientnet_lite2   # which backbone and layer
      xfer shift cache/photos.h5 cache/new_photos.h5  # how far the new data is from the old
      xfer suggest models/photos.skops unlabelled/ -n 20  # what to label next
      xfer audit cache/photos.h5 cache/test.h5 --report audit.html  # duplicates, leaks, label errors
      xfer finetune photos/ -o tuned/                 # when frozen features are not enough
      xfer export cache/photos.h5 -o photos.parquet   # for pandas, Spark, vector databases
    """


def paths(inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = (), models: tuple[str, ...] = (),
          other: tuple[str, ...] = ()):  # fmt: skip
    """Declare a command's path parameters to the output guard (featurizer._guard): the command
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
            from featurizer.storage import guarding, refuse_input_write

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
    from featurizer import FeatureOptions

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
            type=click.Choice(["avg", "max", "gem", "mean", "cls"]),
            help="Pooling of maps (avg, max, gem) or tokens (mean, cls, max). [default: avg / mean]",
        ),
        click.option(
            "--precision",
            type=click.Choice(["fp32", "bf16", "fp16", "int8"]),
            default="fp32",
            show_default=True,
            help="Arithmetic of the forward pass: bf16 weights (CPU or GPU), fp16 autocast (GPU), or int8 "
            "dynamic quantisation (CPU); faster, slightly different vectors, cached separately.",
        ),
        click.option(
            "--runtime",
            type=click.Choice(["auto", "torch", "onnx"]),
            default="auto",
            show_default=True,
            help="onnx: ONNX Runtime (CPU; fp32, or int8 for texts), exported to the cache folder on first use; "
            "starts in a fraction of the time and runs faster. auto: onnx on a CPU for the built-in models "
            "where it is installed, torch otherwise (GPUs, bf16/fp16, zoo models).",
        ),
    )(fn)


def _run_options(device, batch_size, workers, cache_dir, quiet=False):
    from featurizer import RunOptions

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
    from featurizer import ReadOptions

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


def _engine_options(engine, address, actors, gpus_per_actor, shard_size, shard_format):
    from featurizer.engine import EmbedOptions

    return EmbedOptions(engine, shard_size, address, actors, gpus_per_actor, shard_format)


def engine_options(fn):
    """How ``embed`` cuts and distributes the work, as ``engine: EmbedOptions``."""
    names = ("engine", "address", "actors", "gpus_per_actor", "shard_size", "shard_format")
    fn = _gathered(fn, _engine_options, names, "engine")
    return options(
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
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
            type=click.Choice(["h5", "parquet"]),
            default="h5",
            show_default=True,
            help="Each shard a feature file (h5; xfer merge joins them) or a Parquet file (the folder is one table).",
        ),
    )(fn)


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


# --- Featurizing ----------------------------------------------------------------------------


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("input_path", "weights", *READ_PATHS), outputs=("output",), other=RUN_PATHS)
@click.argument("input_path", metavar="INPUT", type=Location(exists=True, path_type=Path))
@output_option("Feature file to write. [default: CACHE_DIR/<input>-<model>-<digest>.h5]")
@feature_options
@run_options
@read_options
@choice_option(
    "--store-dtype",
    ["float32", "float16"],
    "How vectors are stored in the feature file (float16: half the size). Not the arithmetic: see --precision.",
)
@choice_option(
    "--on-error",
    ["skip", "fail"],
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
    from featurizer.engine import featurize_options

    write = {"store_dtype": store_dtype, "on_error": on_error, "force": force, "augment": augment}
    report = featurize_options(input_path, features, run, read, output=output, default_output=True, **write)
    click.echo(report.summary())


@main.command(context_settings=CONTEXT_SETTINGS)
def models() -> None:
    """List the built-in backbones and whether their weights are installed."""
    from featurizer.spec import model_table

    rows = model_table()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    click.echo(
        "\nAlso: timm/NAME (any timm model), torchvision/NAME (any torchvision classifier), "
        "hf/HUB_ID or hf/./FOLDER (BERT-family encoders); their weights download on first use."
    )


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("weights",))
@click.argument("model")
@click.option("--weights", type=Location(exists=True, path_type=Path), help="Local checkpoint or model folder.")
def layers(model: str, weights) -> None:
    """List the layers of MODEL that can be tapped, with their output shapes.

    Use the name or either index with 'xfer featurize --layer'. No weights are loaded: the shapes
    come from the architecture alone.
    """
    from featurizer.backbones import describe_layers

    click.echo(f"reading the layers of {model} ...", err=True)
    rows = describe_layers(model, weights)
    click.echo(f"{'index':>5} {'-index':>6}  {'layer':<14} {'output shape':<20} pooled dim")
    for row in rows:
        mark = "  (default)" if row.default else ""
        click.echo(f"{row.index:>5} {row.index - len(rows):>6}  {row.name:<14} {row.shape:<20} {row.dim}{mark}")


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("path",))
@click.argument("path", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(path: Path, as_json: bool) -> None:
    """Describe a feature file: items, labels, layers, feature spec and versions."""
    from featurizer import FeatureFile

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


@main.command(context_settings=CONTEXT_SETTINGS)
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
    from pipelines.evaluate import measure_shift

    png = png or target.with_name(f"{target.stem}.shift.png")
    from featurizer.storage import claim

    claim(png)  # before the work
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


CHANCE_LOGME = 0.02  # LogME gains below this are what random labels give (tests/test_rank.py)


# --- Heads ----------------------------------------------------------------------------------


map_option = click.option(
    "--map",
    "map_method",
    type=click.Choice(["auto", "umap", "tsne", "pca"]),
    default="auto",
    show_default=True,
    help="2-D map of the report: auto is UMAP when umap-learn is installed (featurizer[audit]), else PCA.",
)


@main.command(context_settings=CONTEXT_SETTINGS)
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
    from pipelines.audit import audit_files

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


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("train", "target", "zero_shot"), outputs=("output",))
@click.argument("train", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--head",
    type=click.Choice(HEAD_CHOICES),
    default="logreg",
    show_default=True,
    help="Classifier on top of the features.",
)
@head_layer_option
@click.option(
    "--normalise",
    type=click.Choice(["standard", "l2", "none"]),
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
    type=click.Choice(["mean", "coral", "subspace"]),
    help="Align the training features to an unlabelled --target feature file (unsupervised adaptation).",
)
@click.option(
    "--target",
    type=Location(exists=True, dir_okay=False, path_type=Path),
    help="Unlabelled feature file of the domain the model will predict on (with --adapt).",
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
    "--kind",
    "kinds",
    multiple=True,
    metavar="COLUMN=KIND",
    help="How to read a label column: classes, multilabel or regression. [default: read from its cells]",
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
    zero_shot,
    templates,
    label_columns,
    kinds,
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
    """
    from featurizer.storage import claim
    from pipelines import fit as fit_head
    from pipelines import save_model

    output = output or Path("models") / f"{train.stem}-{'zero-shot' if zero_shot else head}.skops"
    claim(output, what="model")  # before the work: never an input, nor a file xfer did not write
    claim(output.with_suffix(".json"), what="the model's card")
    fixed = {"C": c} if c is not None else {} if no_cv else None
    kwargs = {"normalise": normalise, "baseline": baseline, "seed": seed, "n_jobs": n_jobs, "params": fixed}
    kwargs.update(calibrate=not no_calibrate, progress=True, adapt=adapt, target=target)
    kwargs.update(label_columns=label_columns, kinds=_kinds(kinds))
    if zero_shot:
        from pipelines.fit import DEFAULT_TEMPLATES, fit_zero_shot

        if adapt or baseline or fixed is not None or label_columns:
            raise click.UsageError(
                "--zero-shot fits its own head: leave out --adapt, --baseline, --C, --no-cv and --label-column"
            )
        result = fit_zero_shot(train, zero_shot, templates or DEFAULT_TEMPLATES, layers or None, seed=seed)
        head = "zero-shot"
    else:
        result = fit_head(train, head, layers or None, **kwargs)
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
    save_model(result.model, result.card, output, force=force)
    if result.card.tasks:
        names = ", ".join(task["name"] for task in result.card.tasks)
        click.echo(f"kept {'+'.join(result.card.spec.layers)} for every task ({names}); wrote {output}")
        return
    score = "no CV score" if result.card.cv_score != result.card.cv_score else f"{result.card.cv_score:.3f}"
    click.echo(f"kept {'+'.join(result.card.spec.layers)} ({score}); wrote {output}")


def _kinds(given: tuple[str, ...]) -> dict[str, str]:
    """``--kind COLUMN=KIND`` pairs as a dict, checked once."""
    from pipelines.heads import KINDS

    kinds = {}
    for item in given:
        column, sep, kind = item.rpartition("=")
        if not sep or not column or kind not in KINDS:
            raise click.BadParameter(
                f"{item!r}: write COLUMN=KIND, KIND one of {', '.join(KINDS)}", param_hint="--kind"
            )
        kinds[column] = kind
    return kinds


def _task_scores(scores: dict) -> str:
    shown = {k: v for k, v in scores.items() if not k.endswith("_std") and k not in ("kind", "n", "per_class_f1")}
    return ", ".join(f"{k.replace('_', '-')} {v:.3f}" for k, v in shown.items())


def _print_tasks(tasks: list[dict]) -> None:
    click.echo(f"{'task':<20} {'kind':<11} {'n':>6}  cross-validated")
    for task in tasks:
        params = {k: v for k, v in task["params"].items() if k != "thresholds"}
        click.echo(
            f"{task['name'][:20]:<20} {task['kind']:<11} {task['n']:>6}  {_task_scores(task['scores'])}  {params}"
        )


tta_option = click.option(
    "--tta",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Test-time augmentation: average each image's probabilities with those of N augmented views.",
)


def _picture_beside(png: Path, kind: str) -> Path:
    """Another picture named after the confusion matrix's: MODEL.<kind>-<test>.png (or PNG.<kind>.png)."""
    other = png.with_name(png.name.replace(".confusion-", f".{kind}-", 1))
    return other if other != png else png.with_name(f"{png.stem}.{kind}.png")


def _print_groups(by_group: dict, overall: float) -> None:
    click.echo(f"{'group':<20} {'n':>6} {'accuracy':>9} {'macro-F1':>9}")
    for name, row in sorted(by_group["groups"].items(), key=lambda kv: kv[1]["accuracy"]):
        click.echo(f"{name[:20]:<20} {row['count']:>6} {row['accuracy']:>9.3f} {row['macro_f1']:>9.3f}")
    click.echo(
        f"worst group {by_group['worst_group']!r}: accuracy {by_group['worst_group_accuracy']:.3f} "
        f"(overall {overall:.3f}); largest gaps: accuracy {by_group['accuracy_gap']:.3f}, "
        f"macro-F1 {by_group['macro_f1_gap']:.3f}"
    )


def _model_run_options(fn):
    """Run options for commands that featurize raw inputs with a saved model's spec."""
    return options(tta_option, trust_option, run_options, read_options)(fn)


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", *READ_PATHS), models=("model_path",), outputs=("output",), other=RUN_PATHS)
@click.argument("model_path", metavar="MODEL", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", metavar="INPUT", type=Location(exists=True, path_type=Path))
@output_option("CSV of id, predicted label and class probabilities. [default: <input>-predictions.csv]")
@_model_run_options
def predict(model_path: Path, data: Path, output, tta: int, trust: bool, run, read) -> None:
    """Predict labels for raw images or texts (or a matching feature file) with a saved model.

    Inputs are featurized with exactly the model's feature spec (model, weights, layers, pooling,
    precision, runtime), through the cache.
    """
    from pipelines import predict_file
    from pipelines.models import read_card

    output = output or Path(f"{data.stem or data.resolve().name}-predictions.csv")
    from featurizer.storage import claim

    claim(output)  # before the work
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


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", *READ_PATHS), models=("model_path",), outputs=("output",), other=RUN_PATHS)
@click.argument("model_path", metavar="MODEL", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", metavar="UNLABELLED", type=Location(exists=True, path_type=Path))
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="Items to suggest.")
@click.option(
    "--strategy",
    type=click.Choice(["hybrid", "margin", "entropy", "kcenter", "random"]),
    default="hybrid",
    show_default=True,
    help="margin/entropy: where the model hesitates; kcenter: spread over the embeddings, away from the "
    "training items; hybrid: uncertain items spread out.",
)
@output_option("CSV of the items to label, best first. [default: <input>-suggestions.csv]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --strategy random.")
@_model_run_options
def suggest(model_path: Path, data: Path, count: int, strategy: str, output, seed: int, tta, trust, run, read) -> None:
    """Which items to label next: writes a CSV of rank, id, source, predicted label and scores.

    Label them (a label column, or move the files into class folders), featurize and fit again.

    \b
    Example:
      xfer suggest models/photos.skops unlabelled_photos/ -n 20
    """
    from featurizer.storage import write_csv
    from pipelines.evaluate import suggest_file

    if tta:
        raise click.UsageError("--tta is for predict and evaluate")
    output = output or Path(f"{data.stem or data.resolve().name}-suggestions.csv")
    from featurizer.storage import claim

    claim(output)  # before the work
    header, rows = suggest_file(model_path, data, count, strategy, trust=trust, run=run, read=read, seed=seed)
    write_csv(output, header, rows)
    for row in rows[:10]:
        click.echo(f"{row[0]:>4}  {str(row[1])[:50]:<50} predicted {row[3]} ({row[4]})")
    click.echo(f"{len(rows)} suggestions ({strategy}) written to {output}")


@main.command(context_settings=CONTEXT_SETTINGS)
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
@_model_run_options
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
    from pipelines import evaluate_file

    test = data.stem or data.resolve().name
    output = output or model_path.with_name(f"{model_path.stem}.eval-{test}.json")
    png = png or model_path.with_name(f"{model_path.stem}.confusion-{test}.png")
    reliability = _picture_beside(png, "reliability")
    groups_png = _picture_beside(png, "groups") if by else None
    files = {
        "predictions": model_path.with_name(f"{model_path.stem}.predictions-{test}.csv"),
        "errors": model_path.with_name(f"{model_path.stem}.errors-{test}.csv"),
        "pr": _picture_beside(png, "pr"),
        "html": report_html,
        "map": map_method,
    }
    from featurizer.storage import claim

    for written in (output, png, reliability, groups_png, *[files[k] for k in ("predictions", "errors", "pr", "html")]):
        if written is not None:
            claim(written)  # before the work: never an input, nor a file xfer did not write
    options = {"trust": trust, "run": run, "read": read, "tta": tta, "by": by, "groups_png": groups_png}
    report = evaluate_file(model_path, data, output, png, reliability, **options, files=files)
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if "tasks" in report:
        for name, scores in report["tasks"].items():
            click.echo(f"{name[:20]:<20} {scores['kind']:<11} n={scores['n']:<6} {_task_scores(scores)}")
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
        _print_groups(report["by_group"], report["accuracy"])
        click.echo(f"wrote {groups_png}")
    if "calibration" in report:
        found = report["calibration"]
        click.echo(f"calibration: expected calibration error {found['ece']:.3f}, Brier score {found['brier']:.3f}")
    written = [output, png, *([reliability] if "calibration" in report else []), files["pr"], files["predictions"]]
    written += [files["errors"], *([files["html"]] if files["html"] else [])]
    click.echo("wrote " + ", ".join(map(str, written)))


@main.command(context_settings=CONTEXT_SETTINGS)
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
    "--per-class", type=click.IntRange(min=2), default=30, show_default=True, help="Labelled items sampled per class."
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
    from featurizer.engine import input_modality
    from featurizer.spec import default_model
    from pipelines import rank as rank_candidates

    models = list(models) or [default_model(input_modality(data, None))]
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


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("train", "test"), outputs=("png",))
@click.argument("train", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.argument("test", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option("--shots", default="1,2,4,8,16", show_default=True, help="Labelled examples per class, comma-separated.")
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True, help="Seeded draws per N.")
@click.option(
    "--head",
    "heads",
    multiple=True,
    type=click.Choice(HEAD_CHOICES),
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
    type=click.Choice(["mean", "coral", "subspace"]),
    help="Also each head on training features aligned to TEST's (unsupervised), side by side.",
)
def fewshot(
    train: Path, test: Path, shots: str, runs: int, heads, layers, max_iter, seed: int, png: Path, adapt
) -> None:
    """Few-shot protocol: N labelled examples per class, fit, score on all of TEST, over seeded runs.

    TRAIN and TEST must hold the same kind of features (model, weights, layer, pooling, precision).

    \b
    MTEB's classification protocol:
      xfer fewshot train.h5 test.h5 --head logreg --max-iter 100 --shots 8 --runs 10
    """
    from pipelines import few_shot_files, plot_learning_curve

    try:
        counts = [int(n) for n in shots.split(",") if n.strip()]
    except ValueError:
        raise click.BadParameter("give numbers separated by commas, e.g. 1,2,4,8", param_hint="--shots") from None
    from featurizer.storage import claim

    claim(png)  # before the work
    protocol = {"shots": counts, "runs": runs, "heads": heads or ("logreg", "prototype"), "max_iter": max_iter}
    rows, chosen, warnings = few_shot_files(
        train, test, layers or None, adapt=adapt, seed=seed, progress=True, **protocol
    )
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    ran = [n for n in dict.fromkeys(counts) if any(r.shots == n for r in rows)]  # only what ran is shown
    click.echo(f"{'head':<18}" + "".join(f"{f'N={n}':>16}" for n in ran))
    for head in dict.fromkeys(r.head for r in rows):
        mine = {r.shots: r for r in rows if r.head == head}
        cells = (f"{mine[n].mean:>9.3f} ± {mine[n].std:.3f}" if n in mine else f"{'skipped':>16}" for n in ran)
        click.echo(f"{head:<18}" + "".join(cells))
    plot_learning_curve(rows, png, title=f"{train.stem}: {'+'.join(chosen)}, {runs} runs")
    click.echo(f"wrote {png}")


# --- Batch embedding --------------------------------------------------------------------------


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("data", *READ_PATHS), outputs=("output",), other=RUN_PATHS)
@click.argument("data", metavar="DATA", type=Location(exists=True, path_type=Path))
@click.option("-m", "--model", help="Backbone to fine-tune. [default: the default model of the data's kind]")
@output_option("Folder of the tuned backbone (use it with featurize -m FOLDER).", folder=True, required=True)
@click.option(
    "--schedule",
    "schedule_name",
    type=click.Choice(["gentle", "deep"]),
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
    type=click.Choice(["none", "light", "strong"]),
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
    from pipelines.finetune import Schedule
    from pipelines.finetune import finetune as tune

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


@main.command(context_settings=CONTEXT_SETTINGS)
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
    from featurizer.engine import embed_options
    from featurizer.storage import claim

    claim(output, folder=True)  # an empty folder, or one xfer wrote (a re-run resumes there)
    click.echo(embed_options(input_path, output, features, run, read, engine).summary())


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("features",), outputs=("output",))
@click.argument("features", metavar="FEATURES", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "npy"]),
    default="parquet",
    show_default=True,
    help="parquet: one row per item, a list column per layer, the spec in the metadata; npy: a folder.",
)
@click.option(
    "-o",
    "--output",
    type=Location(path_type=Path),
    help="Parquet file or NumPy folder. [default: FEATURES with .parquet, or FEATURES-npy/]",
)
@force_option
def export(features: Path, fmt: str, output, force: bool) -> None:
    """Write a feature file as Parquet or NumPy, for pandas, polars, Spark or a vector database.

    \b
    Example:
      xfer export cache/photos.h5 --format parquet -o photos.parquet
    """
    from pipelines.index import export as write

    output = output or (
        features.with_suffix(".parquet") if fmt == "parquet" else features.with_name(f"{features.stem}-npy")
    )
    click.echo(f"wrote {write(features, output, fmt, force=force)}")


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(inputs=("features",), outputs=("output",))
@click.argument("features", metavar="FEATURES", type=Location(exists=True, dir_okay=False, path_type=Path))
@output_option("Index folder.", folder=True, required=True)
@click.option("-l", "--layer", help="Layer to index. [default: the file's first]")
@click.option(
    "--kind",
    type=click.Choice(["auto", "flat", "hnsw"]),
    default="auto",
    show_default=True,
    help="flat: exact; hnsw: approximate, for very large files; auto: flat up to 1,000,000 items.",
)
@force_option
def index(features: Path, output: Path, layer, kind: str, force: bool) -> None:
    """Build a similarity index (FAISS, cosine) of a feature file's vectors, for xfer search."""
    from pipelines.index import build_index

    meta = build_index(features, output, layer, kind, force=force)
    click.echo(f"indexed {meta['items']} items ({meta['layer']}, {meta['dim']}-d, {meta['kind']}) in {output}")


@main.command(context_settings=CONTEXT_SETTINGS)
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
    from pipelines.index import search as nearest

    for query, rank, item, source, score in nearest(index_dir, queries, texts, k, run, read):
        click.echo(f"{str(query)[:40]:<40} {rank:>3}  {score:.4f}  {item}  {str(source)[:60]}")


@main.command(context_settings=CONTEXT_SETTINGS)
@paths(other=("out",), outputs=("output",))
@click.argument("out", metavar="FOLDER", type=Location(exists=True, file_okay=False, path_type=Path))
@output_option("Merged feature file. [default: FOLDER/merged.h5]")
def merge(out: Path, output) -> None:
    """Join the shards of an 'xfer embed' folder into one feature file.

    The vectors are HDF5 virtual datasets over the shard files (nothing is copied), so keep the
    shards beside the merged file; it reads like any feature file, and is refused if a shard goes missing.
    """
    from featurizer.engine import merge as merge_shards

    click.echo(f"wrote {merge_shards(out, output)}")


if __name__ == "__main__":
    main()
