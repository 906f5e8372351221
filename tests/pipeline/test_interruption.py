"""SIGTERM (what SLURM and ``timeout`` send) stops a training run with a non-zero status, one line that
says what was kept and how to resume, the state saved, and the temporary cache removed."""

import signal
import subprocess
import sys

import pytest

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
