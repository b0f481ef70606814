"""xfer: the command line of featurizer, a thin layer over the library.

Each command (in ``commands/``) parses its options into the library's option objects
(``FeatureOptions``, ``RunOptions``, ``ReadOptions``), calls one library function and prints the
result; here library errors become one-line messages with a non-zero exit code.
"""

from __future__ import annotations

import sys

import click

from commands import COMMANDS, CONTEXT_SETTINGS, load_command, short_help
from featurizer.base import FeaturizerError, catching_interrupts, interrupted


class _Group(click.Group):
    """Loads each command from ``commands`` when it runs, and turns library errors into one-line
    messages instead of tracebacks."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands, without loading them: ``xfer --help`` starts at once."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))  # as click's own listing
        with formatter.section("Commands"):
            formatter.write_dl([(name, short_help(name, limit)) for name in names])

    def invoke(self, ctx: click.Context):
        try:
            with catching_interrupts():
                result = super().invoke(ctx)
                if interrupted():  # a Ctrl-C that landed where Python swallows it (a weakref callback)
                    raise KeyboardInterrupt
            return result
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


if __name__ == "__main__":
    main()
