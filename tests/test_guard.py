"""The output guard (featurizer.storage._guard), for every command of the CLI.

Families: an output that is an input, reached through a symbolic link or ``..``, that lies inside
an input folder, or that holds an input, is refused by every command with an output, ``--force``
or not, and the input is left as it was; a file or folder xfer did not write is never replaced;
what xfer wrote is replaced (with ``--force`` where the command asks for it). The first test fails
when a command has a path option that it does not declare to the guard.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main
from commands import all_commands
from featurizer.storage._guard import FOLDER_MARKER, Guard, is_xfer_header, written_by_xfer

OUT = "{out}"

# command -> (argv with {placeholders}; the inputs an output may not be). Every command with an
# output option is here: test_every_command_with_an_output_is_probed fails otherwise.
CASES = {
    "featurize": (["featurize", "{imgs}", "-q", "--force", "-o", OUT], ["imgs", "member"]),
    "embed": (["embed", "{imgs}", "-q", "-o", OUT], ["imgs"]),
    "shift": (["shift", "{feat}", "{test}", "--png", OUT], ["feat", "test"]),
    "audit-o": (["audit", "{feat}", "{test}", "-o", OUT], ["feat", "test"]),
    "audit-report": (["audit", "{feat}", "--report", OUT], ["feat"]),
    "fit": (["fit", "{feat}", "--no-cv", "--force", "-o", OUT], ["feat"]),
    "predict": (["predict", "{model}", "{imgs}", "-q", "-o", OUT], ["model", "card", "imgs", "member"]),
    "suggest": (["suggest", "{model}", "{imgs}", "-q", "-o", OUT], ["model", "card", "imgs"]),
    "evaluate-o": (["evaluate", "{model}", "{test}", "-o", OUT], ["model", "card", "test"]),
    "evaluate-png": (["evaluate", "{model}", "{test}", "--png", OUT], ["model", "card", "test"]),
    "evaluate-report": (["evaluate", "{model}", "{test}", "--report", OUT], ["model", "card", "test"]),
    "fewshot": (["fewshot", "{feat}", "{test}", "--png", OUT], ["feat", "test"]),
    "finetune": (["finetune", "{imgs}", "--force", "-q", "-o", OUT], ["imgs"]),
    "export": (["export", "{feat}", "--force", "-o", OUT], ["feat"]),
    "export-npy": (["export", "{feat}", "--format", "npy", "--force", "-o", OUT], ["feat"]),
    "index": (["index", "{feat}", "--force", "-o", OUT], ["feat"]),
    "merge": (["merge", "{emb}", "-o", OUT], ["shard", "manifest"]),
    "update": (["update", "{model}", "{test}", "--force", "-o", OUT], ["model", "card", "test"]),
}


def path_params(command: click.Command) -> list[str]:
    return [p.name for p in command.params if isinstance(p.type, click.Path)]


def test_every_path_option_is_declared_to_the_guard():
    for name, command in all_commands().items():
        declared = getattr(command.callback, "guarded_paths", None)
        params = path_params(command)
        if not params:
            continue
        assert declared is not None, f"xfer {name} has path options {params} but no @paths(...)"
        known = {p for group in declared.values() for p in group}
        assert set(params) <= known, f"xfer {name}: {set(params) - known} not declared to the guard"


def test_every_command_with_an_output_is_probed():
    with_outputs = {n for n, c in all_commands().items() if getattr(c.callback, "guarded_paths", {}).get("outputs")}
    assert with_outputs == {case.split("-")[0] for case in CASES}


def digest(path: Path) -> str:
    """The content of a file, or of every file under a folder."""
    h = hashlib.sha256()
    for p in sorted([path] if path.is_file() else path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path.parent)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def places(tmp_path_factory, digit_features, photo_dir):
    """Real inputs of every kind: an image folder, feature files, a model and its card, an embed folder."""
    root = tmp_path_factory.mktemp("guard")
    train, test, _ = digit_features
    imgs = root / "photos"
    shutil.copytree(photo_dir, imgs)
    shutil.copy(train, root / "train.h5")
    shutil.copy(test, root / "test.h5")
    run = CliRunner().invoke
    model = root / "model.skops"
    assert run(main, ["fit", str(root / "train.h5"), "--no-cv", "-l", "-1", "-o", str(model)]).exit_code == 0
    emb = root / "emb"
    assert run(main, ["embed", str(imgs), "-o", str(emb), "--shard-size", "6", "-q"]).exit_code == 0
    return {
        "imgs": imgs,
        "member": next(imgs.glob("china/*.jpg")),
        "feat": root / "train.h5",
        "test": root / "test.h5",
        "model": model,
        "card": model.with_suffix(".json"),
        "emb": emb,
        "shard": sorted(emb.glob("*.h5"))[0],
        "manifest": emb / "manifest.json",
    }


def spellings(target: Path, tmp: Path) -> dict[str, Path]:
    """Other names of ``target``: itself, a symbolic link to it, a path through ``..``, and for a
    folder a new file inside it and a folder that holds it."""
    link = tmp / f"link-{target.name}"
    link.symlink_to(target)
    names = {"same": target, "symlink": link, "dotdot": target.parent / "." / ".." / target.parent.name / target.name}
    if target.is_dir():
        names["inside"] = target / "new-output"
    names["holding"] = target.parent
    return names


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_output_that_is_holds_or_lies_inside_an_input_is_refused(case, places, tmp_path):
    argv, inputs = CASES[case]
    before = {name: digest(places[name]) for name in places if name != "imgs"} | {"imgs": digest(places["imgs"])}
    for name in inputs:
        (tmp_path / name).mkdir()
        for how, out in spellings(places[name], tmp_path / name).items():
            cmd = [a.format(out=out, **{k: str(v) for k, v in places.items()}) for a in argv]
            result = CliRunner().invoke(main, cmd)
            assert result.exit_code != 0, f"{case}: output {how} of {name} was accepted: {result.output}"
            assert "Traceback" not in result.output and result.exit_code in (1, 2), result.output
            if result.exit_code == 1:  # the guard (2: click refused the kind of path already)
                assert "input" in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert {name: digest(places[name]) for name in before} == before


def users(tmp_path: Path) -> dict[str, Path]:
    """Things a user made, that xfer must never replace."""
    folder = tmp_path / "my-folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    made = {"folder": folder}
    made["csv"] = tmp_path / "labels.csv"
    made["csv"].write_text("id,label\nants/1.jpg,ant\n")
    made["json"] = tmp_path / "settings.json"
    made["json"].write_text('{"threshold": 0.5}')
    made["png"] = tmp_path / "holiday.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(made["png"])
    made["html"] = tmp_path / "page.html"
    made["html"].write_text("<html><body>mine</body></html>")
    made["h5"] = tmp_path / "data.h5"
    made["h5"].write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(64))
    made["skops"] = tmp_path / "other.skops"
    made["skops"].write_bytes(b"PK\x03\x04" + os.urandom(64))
    made["parquet"] = tmp_path / "table.parquet"
    made["parquet"].write_bytes(b"PAR1" + os.urandom(64) + b"PAR1")
    return made


# command -> which of the user's things it is pointed at
FORCED = {
    "featurize": "h5",
    "embed": "folder",
    "shift": "png",
    "audit-o": "folder",
    "audit-report": "html",
    "fit": "skops",
    "predict": "csv",
    "suggest": "csv",
    "evaluate-o": "json",
    "evaluate-png": "png",
    "evaluate-report": "html",
    "fewshot": "png",
    "finetune": "folder",
    "export": "parquet",
    "export-npy": "folder",
    "index": "folder",
    "merge": "h5",
    "update": "skops",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_force_never_replaces_what_xfer_did_not_write(case, places, tmp_path):
    argv, _ = CASES[case]
    target = users(tmp_path)[FORCED[case]]
    before = digest(target)
    cmd = [a.format(out=target, **{k: str(v) for k, v in places.items()}) for a in argv]
    result = CliRunner().invoke(main, cmd)
    assert result.exit_code != 0, f"{case} replaced the user's {target.name}: {result.output}"
    assert "not written by xfer" in result.output and "Traceback" not in result.output, result.output
    assert digest(target) == before


def test_xfer_outputs_are_replaced_and_folders_carry_a_marker(places, tmp_path):
    run = CliRunner().invoke
    feat = str(places["feat"])
    for argv in (["export", feat, "-o", str(tmp_path / "x.parquet")], ["index", feat, "-o", str(tmp_path / "idx")]):
        assert run(main, argv).exit_code == 0
        again = run(main, argv)
        assert again.exit_code != 0 and "--force" in again.output  # an xfer output: replaced only with --force
        assert run(main, [*argv, "--force"]).exit_code == 0
    assert (tmp_path / "idx" / FOLDER_MARKER).is_file()
    report = ["evaluate", str(places["model"]), str(places["test"]), "-o", str(tmp_path / "e.json")]
    report += ["--png", str(tmp_path / "e.png"), "--report", str(tmp_path / "e.html")]
    assert run(main, report).exit_code == 0
    assert run(main, report).exit_code == 0, "an evaluation's own files are replaced by the next evaluation"
    for name in ("e.json", "e.png", "e.html", "e.reliability.png", "e.pr.png"):
        assert written_by_xfer(tmp_path / name), name
    assert json.loads((tmp_path / "e.json").read_text())["format"].startswith("featurizer-")


def test_a_second_audit_replaces_the_folder_whole(places, tmp_path):
    out = tmp_path / "audit"
    run = CliRunner().invoke
    assert run(main, ["audit", str(places["feat"]), str(places["test"]), "-o", str(out)]).exit_code == 0
    assert (out / "leaks.csv").is_file()
    assert run(main, ["audit", str(places["feat"]), "-o", str(out)]).exit_code == 0
    assert not (out / "leaks.csv").exists(), "the first audit's leaks were left beside the second's findings"
    assert not list(tmp_path.glob(".*tmp")) and not list(tmp_path.glob(".old-*"))


def test_an_input_named_by_a_table_is_never_written(places, tmp_path):
    """A CSV naming images: each image is an input too, wherever it lives."""
    image = tmp_path / "elsewhere" / "a.jpg"
    image.parent.mkdir()
    shutil.copy(places["member"], image)
    table = tmp_path / "list.csv"
    table.write_text(f"path,label\n{image},x\n{places['member']},y\n")
    before = image.read_bytes()
    result = CliRunner().invoke(main, ["featurize", str(table), "-q", "--force", "-o", str(image)])
    assert result.exit_code != 0 and "input" in result.output
    assert image.read_bytes() == before


def test_case_and_hard_links_name_the_same_input(tmp_path):
    """A hard link, or the other spelling of a name on a case-insensitive disk, is the same file."""
    data = tmp_path / "data.csv"
    data.write_text("x")
    guard = Guard()
    guard.add(data)
    os.link(data, tmp_path / "hard.csv")
    assert guard.overlap(tmp_path / "hard.csv")
    upper = tmp_path / "DATA.csv"
    if upper.exists():  # a case-insensitive disk
        assert guard.overlap(upper)
    assert guard.overlap(tmp_path / "other.csv") is None


def test_urls_are_compared_folder_by_folder():
    guard = Guard()
    guard.add("s3://bucket/photos/")
    assert guard.overlap("s3://bucket/photos")
    assert guard.overlap("s3://bucket/photos/x.h5")
    assert guard.overlap("s3://bucket")
    assert guard.overlap("s3://bucket/photos-out/x.h5") is None


def test_every_csv_xfer_writes_is_recognised_as_its_own():
    from pipelines.evaluate._evalfiles import prediction_rows

    header, _ = prediction_rows(["a"], ["a.jpg"], np.array(["x"]), ["x", "y"], np.array([[0.6, 0.4]]))
    assert is_xfer_header(header)
    assert is_xfer_header(["id", "label", "p_x", "p_y"])
    assert is_xfer_header(["id", "topic", "topic_p", "tags", "tags_p_a"])
    assert not is_xfer_header(["id", "label"])  # a user's labels
    assert not is_xfer_header(["path", "label"])


# --- One kind of output never replaces another (xfer's own outputs included) ---------------------


def xfer_outputs(places, tmp: Path) -> dict[str, Path]:
    """Copies of things xfer wrote, of each kind: a feature file, a model and its card, an embed folder."""
    made = {"feat": tmp / "features.h5", "model": tmp / "model.skops", "emb": tmp / "emb"}
    shutil.copy(places["feat"], made["feat"])
    shutil.copy(places["model"], made["model"])
    shutil.copy(places["card"], tmp / "model.json")
    made["card"] = tmp / "model.json"
    shutil.copytree(places["emb"], made["emb"])
    return made


# command -> an xfer output of another kind than the one it writes
OTHER_KIND = {
    "featurize": "model",
    "embed": "feat",
    "shift": "feat",
    "audit-o": "emb",
    "audit-report": "card",
    "fit": "feat",
    "predict": "card",
    "suggest": "card",
    "evaluate-o": "model",
    "evaluate-png": "feat",
    "evaluate-report": "card",
    "fewshot": "model",
    "finetune": "emb",
    "export": "model",
    "export-npy": "emb",
    "index": "emb",
    "merge": "model",
    "update": "feat",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_kind_of_xfer_output_never_replaces_another(case, places, tmp_path):
    """Without --force (evaluate, predict, audit, merge ... have none) or with it: a report never
    lands on a model, a picture never on a feature file, an audit never on an embed folder."""
    argv, _ = CASES[case]
    target = xfer_outputs(places, tmp_path)[OTHER_KIND[case]]
    assert written_by_xfer(target)
    before = digest(target)
    cmd = [a.format(out=target, **{k: str(v) for k, v in places.items()}) for a in argv]
    result = CliRunner().invoke(main, cmd)
    assert result.exit_code != 0, f"{case} replaced xfer's {target.name}: {result.output}"
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 1:
        assert "never replaces another" in result.output or "is a folder" in result.output, result.output
    assert digest(target) == before


def test_a_folder_is_xfers_only_by_its_marker_or_when_every_file_in_it_is(places, tmp_path):
    """A user's folder that happens to hold a manifest.json or a spec.json is not xfer's."""
    photos = tmp_path / "photos"
    shutil.copytree(places["imgs"], photos)
    (photos / "manifest.json").write_text('{"name": "album"}')
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "manifest.json").write_text("{}")
    (webapp / "index.html").write_text("<html>mine</html>")
    specced = tmp_path / "specced"
    shutil.copytree(places["emb"], specced)
    (specced / FOLDER_MARKER).unlink()
    (specced / "holiday.jpg").write_bytes(digest(places["member"]).encode())
    for folder in (photos, webapp, specced):
        assert not written_by_xfer(folder), folder
    run = CliRunner().invoke
    feat = str(places["feat"])
    for argv in (
        ["index", feat, "-o", str(photos), "--force"],
        ["export", feat, "--format", "npy", "-o", str(webapp), "--force"],
        ["embed", str(places["imgs"]), "-q", "-o", str(specced)],
        ["audit", feat, "-o", str(photos)],
    ):
        before = digest(Path(argv[argv.index("-o") + 1]))
        result = run(main, argv)
        assert result.exit_code == 1 and "not written by xfer" in result.output, (argv, result.output)
        assert digest(Path(argv[argv.index("-o") + 1])) == before


def test_the_shards_a_merged_file_reads_are_its_inputs(places, tmp_path):
    emb = tmp_path / "emb"
    shutil.copytree(places["emb"], emb)
    merged = tmp_path / "elsewhere" / "merged.h5"
    run = CliRunner().invoke
    assert run(main, ["merge", str(emb), "-o", str(merged)]).exit_code == 0
    shard = sorted(emb.glob("shard-*.h5"))[0]
    before = digest(emb)
    for argv in (
        ["index", str(merged), "-o", str(emb), "--force"],
        ["export", str(merged), "-o", str(shard), "--force"],
        ["fit", str(merged), "--no-cv", "-o", str(shard), "--force"],
        ["audit", str(merged), "-o", str(emb)],
        ["export", str(merged), "-o", str(shard) + ".sha256", "--force"],
    ):
        result = run(main, argv)
        assert result.exit_code == 1, (argv, result.output)
        assert "input" in result.output or "never replaces another" in result.output, (argv, result.output)
    assert digest(emb) == before


def test_fewshot_replaces_its_own_picture(places, tmp_path):
    argv = ["fewshot", str(places["feat"]), str(places["test"]), "--shots", "1", "--runs", "1"]
    argv += ["--png", str(tmp_path / "curve.png")]
    assert CliRunner().invoke(main, argv).exit_code == 0
    again = CliRunner().invoke(main, argv)
    assert again.exit_code == 0, again.output
    assert written_by_xfer(tmp_path / "curve.png")


def test_a_derived_output_is_claimed_before_the_work_and_never_a_users_file(places, tmp_path):
    """featurize's list of failed items (OUT.errors.csv) is an output too: a user's file of that
    name is neither replaced nor removed, and the refusal comes before the feature file is written."""
    run = CliRunner().invoke
    mine = tmp_path / "x.errors.csv"
    mine.write_text("my,own\n1,2\n")
    result = run(main, ["featurize", str(places["imgs"]), "-q", "-o", str(tmp_path / "x.h5")])
    assert result.exit_code == 1 and "not written by xfer" in result.output, result.output
    assert mine.read_text() == "my,own\n1,2\n" and not (tmp_path / "x.h5").exists()


def test_merge_never_replaces_a_feature_file_of_other_inputs(places, tmp_path):
    """merge has no --force: a feature file made from other inputs stays; its own earlier output is replaced."""
    other = tmp_path / "other.h5"
    shutil.copy(places["feat"], other)
    before = digest(other)
    run = CliRunner().invoke
    result = run(main, ["merge", str(places["emb"]), "-o", str(other)])
    assert result.exit_code == 1 and "holds features of" in result.output, result.output
    assert digest(other) == before
    mine = tmp_path / "merged.h5"
    assert run(main, ["merge", str(places["emb"]), "-o", str(mine)]).exit_code == 0
    assert run(main, ["merge", str(places["emb"]), "-o", str(mine)]).exit_code == 0


def test_embed_never_replaces_the_embeddings_of_other_inputs(places, tmp_path):
    emb = tmp_path / "emb"
    shutil.copytree(places["emb"], emb)
    before = digest(emb)
    other = tmp_path / "other-photos"
    shutil.copytree(places["imgs"], other)
    result = CliRunner().invoke(main, ["embed", str(other), "-q", "-o", str(emb)])
    assert result.exit_code == 1 and "holds the embeddings of" in result.output, result.output
    assert digest(emb) == before
    again = CliRunner().invoke(main, ["embed", str(places["imgs"]), "-q", "-o", str(emb)])
    assert again.exit_code == 0, again.output  # the same inputs: a resume


def test_the_kind_of_a_json_file_longer_than_the_head_read_is_read_whole(tmp_path):
    """A model card of many CV rows is still a card (its kind was read from its first 64 KB only)."""
    from featurizer.storage._guard import kind_of

    card = tmp_path / "m.json"
    card.write_text(json.dumps({"format": "featurizer-model/2", "cv": [{"layers": "x" * 100}] * 2000}))
    assert card.stat().st_size > 1 << 16
    assert kind_of(card) == "card" and written_by_xfer(card)
