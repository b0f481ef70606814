"""A protocol never reports what it did not run (issue 28, family 5).

A requested setting that cannot be honoured (an N larger than a class, a head that cannot fit at
an N, repeated runs of a draw that is always the same) is skipped, or run once, with a one-line
reason; nothing runnable is a refusal. Test items that are training items are counted by content
(identical vectors: ids such as ``3/0042.png`` repeat across folders with other files) and warned
about, by ``fewshot`` and ``evaluate`` alike.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from featurizer import FeatureFile, FeaturizerError, featurize
from pipelines import few_shot, few_shot_files, fit, save_model
from tests.test_flows import xfer

TRAIN_PER_CLASS = 8  # the digit fixture: 12 a class, 4 of them in test/


@pytest.fixture(scope="module")
def model(digit_features, tmp_path_factory):
    path = tmp_path_factory.mktemp("protocol-model") / "digits.skops"
    result = fit(digit_features[0], "prototype")
    save_model(result.model, result.card, path)
    return path


@pytest.fixture(scope="module")
def mixed(digit_features, digits_dir, tmp_path_factory):
    """A test folder and its feature file: the test digits, 3 training digits copied in, and one test
    digit saved under a training digit's name (same id, other content: not an overlap)."""
    root = tmp_path_factory.mktemp("mixed")
    folder = root / "images"
    shutil.copytree(digits_dir / "test", folder)
    for digit in ("0", "1", "2"):
        shutil.copy(sorted((digits_dir / "train" / digit).iterdir())[0], folder / digit)
    impostor = sorted((digits_dir / "train" / "3").iterdir())[0].name
    shutil.copy(sorted((digits_dir / "test" / "4").iterdir())[0], folder / "3" / impostor)
    out = root / "mixed.h5"
    featurize(folder, "efficientnet_lite0", ["-1", "-3"], output=out, cache_dir=digit_features[2], progress=False)
    return folder, out


def _overlap_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "training file" in line and line.startswith("warning:")]


def _run(command: str, test, model, digit_features, tmp_path):
    train, _, cache = digit_features
    if command == "fewshot":
        args = ["fewshot", train, test, "--shots", "2", "--runs", "2", "--head", "prototype"]
        args += ["--png", tmp_path / "c.png"]
    else:
        args = ["evaluate", model, test, "-o", tmp_path / "r.json", "--png", tmp_path / "cm.png", "--cache-dir", cache]
    return xfer(*args)


CASES = ["same file", "overlapping file", "disjoint file"]


@pytest.mark.parametrize(
    ("command", "case"),
    [("fewshot", case) for case in CASES] + [("evaluate", case) for case in [*CASES, "raw training images"]],
)
def test_test_items_that_are_training_items_are_counted(
    command, case, model, mixed, digit_features, digits_dir, tmp_path
):
    train, test, _ = digit_features
    chosen = {
        "same file": train,
        "overlapping file": mixed[1],
        "disjoint file": test,
        "raw training images": digits_dir / "train",
    }[case]
    lines = _overlap_lines(_run(command, chosen, model, digit_features, tmp_path).output)
    if case == "disjoint file":
        assert not lines
        return
    assert len(lines) == 1, lines
    if case == "same file":
        assert "itself" in lines[0] and f"all {TRAIN_PER_CLASS * 10} test items are training items" in lines[0]
    elif case == "overlapping file":
        with FeatureFile(mixed[1]) as f:
            total = len(f)
        assert f"3 of {total} test items are also in the" in lines[0]  # the impostor shares an id, not content
    else:
        assert f"{TRAIN_PER_CLASS * 10} of {TRAIN_PER_CLASS * 10} test items are also in" in lines[0]


def test_an_n_a_class_cannot_fill_is_skipped_naming_the_classes():
    rng = np.random.default_rng(0)
    y = np.array(["a"] * 30 + ["b"] * 20 + ["c"] * 3)
    X = rng.normal(size=(len(y), 3)) + (y[:, None] == np.array(["a", "b", "c"])) * 3
    notes: list[str] = []
    rows = few_shot(X, y, X, y, shots=(1, 3, 8, 25), runs=2, heads=("prototype",), notes=notes)
    assert sorted({r.shots for r in rows}) == [1, 3]
    assert any(n.startswith("N=8 skipped: 1 of 3 classes have fewer than 8") and "'c' (3)" in n for n in notes)
    assert any(n.startswith("N=25 skipped: 2 of 3 classes") and "'b' (20), 'c' (3)" in n for n in notes)


def test_fewshot_files_return_only_the_n_that_ran(digit_features):
    train, test, _ = digit_features
    rows, _, warnings = few_shot_files(train, test, shots=[2, 50, 1000], runs=2, heads=("prototype",))
    assert {r.shots for r in rows} == {2}
    assert any(w.startswith("N=50 skipped: 10 of 10 classes have fewer than 50") and "'0' (8)" in w for w in warnings)
    assert any(w.startswith("N=1000 skipped") for w in warnings)


def test_nothing_runnable_is_refused_in_one_line(digit_features, tmp_path):
    train, test, _ = digit_features
    result = xfer("fewshot", train, test, "--shots", "50,1000", "--png", tmp_path / "c.png", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: no N of --shots 50,1000 can run: the smallest class, '0', has 8 labelled examples; give N from 1 to 8"
    )
    assert not (tmp_path / "c.png").exists()
    with pytest.raises(FeaturizerError, match="no N of --shots 0,-1 can run"):
        few_shot_files(train, test, shots=[0, -1], runs=1, heads=("prototype",))


def test_runs_of_a_draw_that_takes_every_item_run_once_and_say_so(digit_features, tmp_path):
    train, test, _ = digit_features
    out = xfer(
        "fewshot", train, test, "--shots", f"2,{TRAIN_PER_CLASS}", "--runs", "3", "--head", "prototype",
        "--png", tmp_path / "c.png",
    ).output  # fmt: skip
    assert f"warning: N={TRAIN_PER_CLASS} takes all {TRAIN_PER_CLASS} labelled examples of every class" in out
    assert "so it ran once, not 3 times" in out
    rows, _, _ = few_shot_files(train, test, shots=[2, TRAIN_PER_CLASS], runs=3, heads=("prototype",))
    assert {r.shots: len(r.scores) for r in rows} == {2: 3, TRAIN_PER_CLASS: 1}


def test_a_head_that_cannot_run_at_an_n_is_left_out_with_its_reason(digit_features):
    train, test, _ = digit_features
    rows, _, warnings = few_shot_files(train, test, shots=[1, 2], runs=2, heads=("lda", "knn", "prototype"))
    ran = {(r.head, r.shots) for r in rows}
    assert ran == {("lda", 2), ("knn", 2), ("prototype", 1), ("prototype", 2)}
    assert any(w.startswith("lda at N=1 skipped: lda needs more training examples than classes") for w in warnings)
    assert any(w.startswith("knn at N=1 skipped") and "tie" in w for w in warnings)


@pytest.mark.parametrize(
    ("shots", "heads", "skipped"),
    [("2,50", ["prototype"], "N=50 skipped"), ("1,2", ["lda", "prototype"], "lda at N=1 skipped")],
)
def test_the_fewshot_table_shows_only_what_ran(shots, heads, skipped, digit_features, tmp_path):
    train, test, _ = digit_features
    head_args = [a for h in heads for a in ("--head", h)]
    out = xfer("fewshot", train, test, "--shots", shots, "--runs", "2", *head_args, "--png", tmp_path / "c.png").output
    assert f"warning: {skipped}" in out
    lines = out.splitlines()
    header = next(line for line in lines if "head " in line)
    assert ("N=50" not in header) if "50" in shots else ("N=1" in header)
    assert all("nan" not in line for line in lines)
