"""SIGTERM (what SLURM and ``timeout`` send) or SIGINT stops a run, while it caches, trains or predicts,
with one line that says what was kept and how to resume, the status 128 + the signal, the state
saved, the temporary cache removed and no results half-written."""

import os
import signal
import subprocess
import sys

import pytest

from common.files import PARTIAL
from tests.conftest import REPOSITORY, TINY_PIX2PIX, TINY_SHAPE


@pytest.mark.slow
def test_sigterm_during_pix2pix_training(tmp_path):
    from datamodules.phantom import generate_phantom

    root = generate_phantom(tmp_path / "data", n_subjects=8, shape=TINY_SHAPE, seed=6, workers=1)
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "train.py", "data=brats", f"data.root={root}", "logger=none", *TINY_PIX2PIX, "trainer=cpu",
        "model.constant_iterations=100000", "model.decay_iterations=0", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in process.stderr:
            seen.append(line)
            if line.startswith("iteration 1/"):  # training has started
                break
        assert (run_dir / "model" / "cache").is_dir(), "".join(seen)
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        status = process.wait(timeout=120)
    finally:
        process.kill()
    assert status == 128 + signal.SIGTERM, rest
    last_line = rest.strip().splitlines()[-1]
    checkpoint = run_dir / "model" / "checkpoints" / "last.ckpt"
    assert last_line.startswith(f"interrupted: stopped by SIGTERM; kept {checkpoint}; rerun the same command into")
    assert checkpoint.exists()
    assert not (run_dir / "model" / "cache").exists()
    assert not (run_dir / "summary.json").exists()


def started(command: list[str]) -> subprocess.Popen:
    """The command with its stdout and stderr in one unbuffered stream, as a terminal shows them."""
    environment = os.environ | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )


def stopped(process: subprocess.Popen, when: str, sent: signal.Signals) -> tuple[int, str]:
    """Send ``sent`` once a line starts with ``when``: (exit status, the output after it)."""
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith(when):
                break
        else:
            raise AssertionError("".join(seen))
        process.send_signal(sent)
        rest = process.stdout.read()
        return process.wait(timeout=120), rest
    finally:
        process.kill()


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    from datamodules.phantom import generate_phantom

    return generate_phantom(tmp_path_factory.mktemp("data"), n_subjects=12, shape=(48, 48, 31), seed=6, workers=1)


@pytest.mark.slow
@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_predicting_ends_with_one_line_and_no_results(phantom_root, tmp_path, sent):
    run_dir = tmp_path / "run"
    process = started([sys.executable, "train.py", "data=brats", f"data.root={phantom_root}", "logger=none",
                       "model=brainclustering", "model.micro=5", f"hydra.run.dir={run_dir}"])  # fmt: skip
    status, rest = stopped(process, "Predicting", sent)
    assert status == 128 + sent, rest
    assert rest.strip().splitlines()[-1] == (
        f"interrupted: stopped by {sent.name}; while predicting; rerun the same command into {run_dir} "
        "(hydra.run.dir, or the same sweep folder) to resume"
    )
    assert not (run_dir / "summary.json").exists() and not (run_dir / "metrics.csv").exists()
    assert not [path for path in run_dir.rglob(f"*{PARTIAL}*")]  # every file written whole or not at all


#: train.py with each case's caching slowed down, so that a signal surely arrives while caching.
SLOW_CACHING = """
import runpy, sys, time
import datamodules.patches as patches
cache_case = patches.cache_case
patches.cache_case = lambda *args, **kwargs: (time.sleep(0.5), cache_case(*args, **kwargs))[1]
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.slow
def test_sigterm_while_caching_ends_with_one_line_and_removes_the_cache(phantom_root, tmp_path):
    run_dir = tmp_path / "run"
    process = started([sys.executable, "-c", SLOW_CACHING, "data=brats", f"data.root={phantom_root}", "logger=none",
                       *TINY_PIX2PIX, "trainer=cpu", f"hydra.run.dir={run_dir}"])  # fmt: skip
    status, rest = stopped(process, "data:", signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, rest
    assert rest.strip().splitlines()[-1].startswith("interrupted: stopped by SIGTERM; rerun the same command into")
    assert not (run_dir / "model" / "cache").exists()
    assert not (run_dir / "summary.json").exists()
