"""A featurize run killed part-way (SIGKILL, Ctrl-C), then re-run, gives the file of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featurizer import FeatureFile
from featurizer.base import catching_interrupts, raise_if_interrupted

ROOT = Path(__file__).resolve().parents[1]


def featurize_cmd(inputs, out, cache):
    return [
        sys.executable,
        str(ROOT / "cli.py"),
        "featurize",
        str(inputs),
        "-o",
        str(out),
        "--cache-dir",
        str(cache),
        "-b",
        "8",
        "--workers",
        "0",
        "-q",
        "-l",
        "-1",
        "-l",
        "-3",
    ]


def shard_count(cache: Path) -> int:
    return len(list(cache.glob("store-*/*/shard-*.h5")))


def kill_after_shards(cmd, cache: Path, shards: int, limit_s: float = 120) -> int:
    """Start ``cmd`` and SIGKILL it as soon as ``shards`` cache shards exist; returns the count seen."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + limit_s
    try:
        while proc.poll() is None and shard_count(cache) < shards and time.monotonic() < deadline:
            time.sleep(0.005)  # polling a condition, not timing the run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return shard_count(cache)


def test_killed_runs_resume_to_the_same_file(digits_dir, tmp_path):
    train = digits_dir / "train"  # 80 digit images: 20 batches of 4, two layers -> 2 shards a batch
    cache, out = tmp_path / "cache", tmp_path / "out.h5"
    rng = random.Random(int(os.environ.get("KILL_SEED", "0")))
    seen = 0
    for _ in range(5):  # five SIGKILLs at random points, each run resuming the last
        seen = kill_after_shards(featurize_cmd(train, out, cache), cache, seen + rng.randint(1, 6))
        assert 0 < seen < 40 and not out.exists()
    resumed = subprocess.run(featurize_cmd(train, out, cache), capture_output=True, text=True, check=True)
    computed = int(resumed.stdout.split(" computed")[0].rsplit(": ", 1)[1])
    assert computed <= 80 - 4 * (seen // 2)  # finished batches were not computed again

    clean_out = tmp_path / "clean.h5"
    subprocess.run(featurize_cmd(train, clean_out, tmp_path / "clean_cache"), check=True, capture_output=True)
    with FeatureFile(out) as a, FeatureFile(clean_out) as b:
        assert a.ids == b.ids and len(set(a.ids)) == len(a.ids) == 80
        assert a.labels == b.labels and a.layers == b.layers
        for layer in a.layers:
            np.testing.assert_allclose(a.read(layer), b.read(layer), rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))


def test_ctrl_c_stops_the_run_and_its_decoding_workers_with_one_message(digits_dir, tmp_path):
    cache = tmp_path / "cache"
    cmd = featurize_cmd(digits_dir / "train", tmp_path / "out.h5", cache)
    cmd[cmd.index("--workers") + 1] = "2"
    cmd[cmd.index("-b") + 1] = "1"  # 80 batches: the interrupt lands mid-run
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as a terminal starts it: a suite run in the background (`make test &`) ignores SIGINT, and
        # a child inherits an ignored signal, which Python then leaves ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and shard_count(cache) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)  # polling a condition, not timing the run
    assert proc.poll() is None, "the run ended before it could be interrupted (a starved test process?)"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Interrupted" in err and "Traceback" not in err, err


class _InterruptedWhileCollected:
    """Ctrl-C arriving while Python runs a destructor: Python prints the exception as ignored and goes on."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10_000))  # the handler runs at the next bytecode, still inside __del__


@pytest.fixture
def python_sigint_handler():
    """Python's own Ctrl-C handler, as in a terminal (a suite run in the background ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_swallowed_by_a_destructor_still_stops_the_next_batch(python_sigint_handler, capfd):
    with catching_interrupts():
        _InterruptedWhileCollected()  # collected at once: the KeyboardInterrupt is swallowed
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    with catching_interrupts():
        raise_if_interrupted()  # the next run starts with no interrupt pending
    assert "Exception ignored" not in capfd.readouterr().err
