"""The xfer commands, driven as a user would: one-line errors, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from commands import all_commands
from featurizer import FeatureFile

ROOT = Path(__file__).resolve().parent.parent


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("command", sorted(all_commands()))
def test_every_command_has_help(command):
    out = run(command, "--help").output
    assert len(all_commands()[command].help or "") > 20 and "Usage" in out


def test_featurize_then_info(photo_dir, tmp_path):
    out = tmp_path / "f.h5"
    first = run("featurize", photo_dir, "-o", out, "--cache-dir", tmp_path / "c", "-l", "-1", "-l", "-3", "-q")
    assert "12 of 12 items featurized" in first.output and "12 computed" in first.output
    again = run("featurize", photo_dir, "-o", out, "--cache-dir", tmp_path / "c", "-l", "-1", "-l", "-3", "-q")
    assert "0 computed, 12 from cache" in again.output
    with FeatureFile(out) as f:
        assert f.layers == ["pre_logits", "blocks.6"]
    info = json.loads(run("info", out, "--json").output)
    assert info["items"] == 12 and info["labels"] == {"china": 6, "flower": 6}
    assert info["layers"]["blocks.6"]["shape"] == [12, 320]
    assert "blocks.6: 12 x 320 float32, pooling avg" in run("info", out).output


def test_text_file_picks_the_text_model_and_default_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.txt").write_text("What is the capital of France ?\nWho wrote Hamlet ?\n")
    result = run("featurize", "q.txt", "-q")
    assert "with minilm [layer.5, layer.4, layer.3]" in result.output  # the default layer and two before it
    import os

    (written,) = Path(os.environ["FEATURIZER_CACHE"]).glob("q-minilm-*.h5")
    assert f"wrote {written}" in result.output
    with FeatureFile(written) as f:
        assert f.shape("layer.5") == (2, 384) and f.ids == ["0", "1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "no_such_model"], "unknown model 'no_such_model'"),
        (["-l", "nope"], "unknown layer 'nope'"),
        (["-l", "42"], "layer index 42 out of range"),
        (["--pool", "cls"], "pooling 'cls' does not apply to image models"),
        (["--device", "cuda:7" if not __import__("torch").cuda.is_available() else "tpu"], "device"),
    ],
)
def test_mistakes_end_with_one_line_and_nonzero_exit(photo_dir, tmp_path, args, message):
    result = run("featurize", photo_dir, "--cache-dir", tmp_path / "c", "-q", *args, ok=False)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_models_and_layers(tmp_path):
    listing = run("models").output
    assert "efficientnet_lite0" in listing and "minilm" in listing and "timm/NAME" in listing
    layers = run("layers", "efficientnet_lite0").output
    assert "pre_logits" in layers and "(default)" in layers and "320x7x7" in layers
    assert run("layers", "nothing", ok=False).exit_code == 1


@pytest.mark.parametrize("args", [["--help"], ["models"], ["info", "--help"], ["featurize", "--help"]])
def test_commands_that_fit_nothing_do_not_load_scikit_learn(args):
    """Each command's module loads only when it runs: listing models or help starts without sklearn."""
    code = (
        "import sys; from click.testing import CliRunner; from cli import main; "
        f"r = CliRunner().invoke(main, {args!r}); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('sklearn', 'pipelines', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]", done.stdout


def test_the_command_list_reads_each_help_as_the_command_shows_it():
    from commands import short_help

    for name, command in all_commands().items():
        assert short_help(name, 60) == command.get_short_help_str(60), name
