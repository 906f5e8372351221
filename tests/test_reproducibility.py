"""The same command with the same seed gives the same numbers; Pix2Pix learns (a regression test for
the unseeded initial weights that made the README's CPU Pix2Pix numbers irreproducible); a job in a
log shows its progress."""

import csv
import json

import numpy as np
import pytest

from tests.conftest import TINY_PIX2PIX, TINY_SHAPE, run


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from datamodules.phantom import generate_phantom

    return generate_phantom(tmp_path_factory.mktemp("data"), n_subjects=8, shape=TINY_SHAPE, seed=5, workers=1)


def metrics(run_dir) -> dict[tuple[str, str], dict[str, float]]:
    text = ("method", "role", "case_id", "degenerate")
    rows = csv.DictReader((run_dir / "metrics.csv").open())
    return {(row["method"], row["case_id"]): {k: float(v) for k, v in row.items() if k not in text} for row in rows}


def weights(run_dir) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model" / "state.npz") as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.mark.slow
def test_brainclustering_twice_gives_identical_tables(data_root, tmp_path):
    common = (
        "train.py",
        "data=brats",
        f"data.root={data_root}",
        "logger=none",
        "model=brainclustering",
        "model.micro=5",
    )
    run(*common, f"hydra.run.dir={tmp_path / 'first'}")
    run(*common, f"hydra.run.dir={tmp_path / 'second'}")
    first, second = (tmp_path / name / "metrics.csv" for name in ("first", "second"))
    assert first.read_text() == second.read_text()


@pytest.mark.slow
def test_pix2pix_twice_gives_the_same_weights_and_metrics_and_another_seed_does_not(data_root, tmp_path):
    """Through the real data path: the TorchIO queue with a worker process and random flips."""
    common = (
        "train.py", "data=brats", f"data.root={data_root}", "logger=none", *TINY_PIX2PIX, "trainer=cpu",
        "model.data.num_workers=1", "model.constant_iterations=3", "model.decay_iterations=3",
    )  # fmt: skip
    first = run(*common, f"hydra.run.dir={tmp_path / 'first'}")
    run(*common, f"hydra.run.dir={tmp_path / 'second'}")
    run(*common, "seed=1", f"hydra.run.dir={tmp_path / 'other_seed'}")

    a, b, c = (weights(tmp_path / name) for name in ("first", "second", "other_seed"))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert any(not np.array_equal(a[name], c[name]) for name in a)
    scores_a, scores_b = metrics(tmp_path / "first"), metrics(tmp_path / "second")
    assert scores_a.keys() == scores_b.keys()
    for key, row in scores_a.items():
        for metric, value in row.items():
            assert value == pytest.approx(scores_b[key][metric], abs=1e-6, nan_ok=True), (key, metric)

    # Not on a terminal: progress lines in the method's own iterations, first and last included.
    lines = [line for line in first.stderr.splitlines() if line.startswith("iteration ")]
    assert lines[0].startswith("iteration 1/6 (17%)") and lines[-1].startswith("iteration 6/6 (100%)")
    assert "g_total" in lines[-1] and "left" in lines[-1]


#: A 2-D Pix2Pix (the small study's UNet on axial slices) that learns the phantom in about a minute
#: of CPU; Random and Zeros are left out.
SMALL_PIX2PIX = (
    "model.spatial_dims=2", "generator=unet_small", "trainer=cpu", "model.discriminator.base_filters=16",
    "model.learning_rate=1e-3", "model.constant_iterations=200", "model.decay_iterations=200",
    "model.checkpoint_every=400", "model.validate_every=400", "model.data.patch_size=[64,64,1]",
    "model.data.batch_size=8", "model.data.samples_per_volume=16", "model.data.queue_length=64",
    "model.data.num_workers=0", "~model@baselines.random", "~model@baselines.zeros",
)  # fmt: skip
#: Pix2Pix's mean pct_mse_brain over the held-out cases must be below this multiple of Complementary's.
#: This schedule's GAN training takes another path on another machine's floating-point rounding, so
#: the bound comes from the spread over seeds, not from one seed on one machine: seeds 0-5 (each its
#: own split) gave 0.97, 0.82, 0.90, 1.10, 0.93, 0.69 (mean 0.90, sd 0.14) on the 2-core development
#: machine, and seed 0 gave 1.10 on another machine of the same kind; 1.5 is the mean plus 4 sd. A
#: Pix2Pix that does not learn is far above it (Zeros scores 0.12 on seed 0's held-out cases, 4 times Complementary).
MARGIN = 1.5


def held_out_mean(summary: list[dict], method: str, metric: str = "pct_mse_brain") -> float:
    """The mean of ``metric`` over every predicted case of ``method`` (all roles together)."""
    entries = [e[metric] for e in summary if e["method"] == method]
    return sum(e["mean"] * e["n"] for e in entries) / sum(e["n"] for e in entries)


@pytest.mark.slow
def test_a_small_pix2pix_learns_to_the_level_of_complementary_on_the_phantom(tmp_path):
    """About a minute of CPU with a fixed seed, on a 12-subject phantom at 2.5 mm voxels: Pix2Pix
    learns to about Complementary's error on any machine (:data:`MARGIN`). That the same seed gives
    the same weights on one machine is the test above."""
    from datamodules.phantom import generate_phantom

    root = generate_phantom(tmp_path / "data", n_subjects=12, shape=(96, 96, 62), seed=0)
    run_dir = tmp_path / "run"
    run("train.py", "data=brats", f"data.root={root}", "logger=none", *SMALL_PIX2PIX, f"hydra.run.dir={run_dir}")
    summary = json.loads((run_dir / "summary.json").read_text())["summary"]
    pix2pix, complementary = (held_out_mean(summary, method) for method in ("pix2pix", "complementary"))
    assert pix2pix < MARGIN * complementary, (pix2pix, complementary)
