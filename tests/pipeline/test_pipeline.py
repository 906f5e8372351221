"""End-to-end: the entry scripts as a user runs them, on tiny data."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from datamodules.nifti import load_volume
from datamodules.phantom import generate_phantom
from tests.conftest import REAL_DATA, REPOSITORY, TINY_PIX2PIX, TINY_SHAPE, ball_volume, make_volume, run, write_case


def test_configs_compose_with_model_and_baselines():
    with initialize_config_dir(config_dir=str(REPOSITORY / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model=intensity_lookup", "data=brats", "data.root=/x"])
    assert cfg.model._target_.endswith("IntensityLookup")
    assert sorted(cfg.baselines) == ["closest_source", "complementary", "random", "zeros"]
    assert cfg.baselines.random._target_.endswith("RandomNoise")


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    return generate_phantom(tmp_path_factory.mktemp("data"), n_subjects=8, shape=TINY_SHAPE, seed=1, workers=1)


@pytest.mark.slow
def test_train_synthesize_evaluate(phantom_root, tmp_path):
    run_dir = tmp_path / "run"
    result = run(
        "train.py", "data=brats", f"data.root={phantom_root}", "model=intensity_lookup", f"hydra.run.dir={run_dir}"
    )
    assert "intensity_lookup" in result.stdout and "complementary" in result.stdout
    split = json.loads((run_dir / "split.json").read_text())["roles"]
    predicted = [c for role, ids in split.items() if role != "train" for c in ids]
    for case_id in predicted:
        role = next(r for r, ids in split.items() if case_id in ids)
        output = load_volume(run_dir / "predictions" / "intensity_lookup" / role / f"{case_id}.nii.gz")
        t1 = load_volume(phantom_root / case_id / f"{case_id}-t1n.nii.gz")
        assert output.data.dtype == np.float32 and output.shape == t1.shape
        np.testing.assert_allclose(output.affine, t1.affine)
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert {r["method"] for r in rows} == {"intensity_lookup", "complementary", "random", "zeros"}
    assert len(rows) == 4 * len(predicted)
    assert all(r["degenerate"] == "" for r in rows)  # Zeros is constant by design, not degenerate
    assert json.loads((run_dir / "summary.json").read_text())["degenerate"] == {}
    summary = json.loads((run_dir / "summary.json").read_text())["summary"]
    means = {(e["method"], e["role"]): e["pct_mse_brain"]["mean"] for e in summary}
    for role in {r["role"] for r in rows}:
        assert means[("complementary", role)] < means[("random", role)]
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / "logs" / "metrics.csv").exists()

    synthetic = tmp_path / "synthetic"
    run("synthesize.py", run_dir, phantom_root / predicted[0] / f"{predicted[0]}-t1n.nii.gz", synthetic)
    written = load_volume(synthetic / f"{predicted[0]}-t1n_t2syn.nii.gz")
    first_role = next(r for r, ids in split.items() if predicted[0] in ids)
    reference = load_volume(run_dir / "predictions" / "intensity_lookup" / first_role / f"{predicted[0]}.nii.gz")
    np.testing.assert_array_equal(written.data, reference.data)

    result = run("evaluate.py", run_dir / "predictions", phantom_root, "--output", tmp_path / "eval")
    rescored = list(csv.DictReader((tmp_path / "eval" / "metrics.csv").open()))
    assert len(rescored) == len(rows)
    mine = {(r["method"], r["case_id"]): float(r["pct_mse_brain"]) for r in rows}
    for r in rescored:
        assert float(r["pct_mse_brain"]) == pytest.approx(mine[(r["method"], r["case_id"])])


@pytest.mark.slow
def test_train_reports_bad_input_and_leaves_nothing_half_written(tmp_path):
    volume = ball_volume()
    names = {"t1": "C{i}-t1n.nii.gz", "t2": "C{i}-t2w.nii.gz"}
    for i in range(4):
        write_case(
            tmp_path / "data" / f"C{i}", {m: n.format(i=i) for m, n in names.items()}, {"t1": volume, "t2": volume}
        )
    moved = make_volume(volume.data)
    moved.affine[2, 3] += 5
    write_case(tmp_path / "data" / "C3", {"t2": "C3-t2w.nii.gz"}, {"t2": moved})
    result = run(
        "train.py",
        "data=brats",
        f"data.root={tmp_path / 'data'}",
        "model=intensity_lookup",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert result.returncode == 2
    assert "C3-t2w.nii.gz: affine differs from t1's in case C3" in result.stderr
    assert not list((tmp_path / "run").rglob("*.partial*"))


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.skipif(not REAL_DATA.exists(), reason="../shared/data/real is not available")
def test_real_cases_run_through_the_same_path(tmp_path):
    run_dir = tmp_path / "run"
    run(
        "train.py",
        "data=brats",
        f"data.root={REAL_DATA}",
        "model=complementary",
        "~model@baselines.zeros",
        f"hydra.run.dir={run_dir}",
    )
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert {r["case_id"] for r in rows} == {"BraTS-GLI-00001-000"}  # the one without a segmentation
    assert all(r["pct_mse_tumour"] == "" and float(r["pct_mse_brain"]) > 0 for r in rows)


@pytest.mark.slow
def test_synthesize_a_folder_reports_a_bad_file_and_writes_the_rest(phantom_root, tmp_path):
    run_dir = tmp_path / "run"
    run(
        "train.py",
        "data=brats",
        f"data.root={phantom_root}",
        "model=complementary",
        "baselines=null",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = phantom_root / "PHANTOM-00000-000" / "PHANTOM-00000-000-t1n.nii.gz"
    (inputs / "good.nii.gz").write_bytes(good.read_bytes())
    (inputs / "bad.nii.gz").write_bytes(good.read_bytes()[:500])
    result = run("synthesize.py", run_dir, inputs, tmp_path / "out", check=False)
    assert result.returncode == 2 and "bad.nii.gz" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_t2syn.nii.gz"]


def test_pix2pix_is_the_default_and_takes_lambda_gamma_generator_from_the_top_level():
    with initialize_config_dir(config_dir=str(REPOSITORY / "conf"), version_base="1.3"):
        default = compose("train")
        chosen = compose("train", overrides=["lambda=500", "gamma=1000", "generator=resnet", "trainer=ddp"])
    assert default.model._target_.endswith("Pix2PixMethod")
    assert default.model.lambda_l1 == 100 and default.model.gamma_tumour == 0
    assert default.model.generator._target_.endswith("UNetGenerator") and default.model.generator.downsamplings == 7
    assert chosen.model.lambda_l1 == 500 and chosen.model.gamma_tumour == 1000
    assert chosen.model.generator._target_.endswith("ResNetGenerator") and chosen.model.generator.blocks == 6
    assert chosen.model.trainer.strategy == "ddp_find_unused_parameters_true"


def test_lambda_with_a_model_without_loss_weights_is_an_error(phantom_root, tmp_path):
    result = run(
        "train.py", "data=brats", f"data.root={phantom_root}", "model=brainclustering", "lambda=500",
        f"hydra.run.dir={tmp_path / 'run'}", check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "model=brainclustering does not use lambda" in result.stderr and "model=pix2pix" in result.stderr
    assert not (tmp_path / "run" / "model").exists()


def checkpoint_step(run_dir):
    import torch

    return torch.load(run_dir / "model" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]


@pytest.mark.slow
def test_pix2pix_trains_resumes_predicts_scores_and_synthesizes(phantom_root, tmp_path):
    run_dir = tmp_path / "run"
    common = (
        "train.py",
        "data=brats",
        f"data.root={phantom_root}",
        *TINY_PIX2PIX,
        "trainer=cpu",
        f"hydra.run.dir={run_dir}",
    )
    run(*common, "model.constant_iterations=2", "model.decay_iterations=2")
    assert checkpoint_step(run_dir) == 8  # 4 iterations, a D and a G step each
    assert not (run_dir / "model" / "cache").exists()  # the run's own cache is removed after training
    assert (run_dir / "model" / "state.npz").exists()

    # A rerun in the same folder with a longer schedule continues from the checkpoint.
    result = run(*common, "model.constant_iterations=2", "model.decay_iterations=4")
    assert "Restored all states from the checkpoint" in result.stdout + result.stderr
    assert checkpoint_step(run_dir) == 12

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "pix2pix"
    assert {e["method"] for e in summary["summary"]} == {"pix2pix", "complementary"}
    split = json.loads((run_dir / "split.json").read_text())["roles"]
    role, case_id = next((r, ids[0]) for r, ids in split.items() if r != "train" and ids)
    prediction = load_volume(run_dir / "predictions" / "pix2pix" / role / f"{case_id}.nii.gz")
    t1 = load_volume(phantom_root / case_id / f"{case_id}-t1n.nii.gz")
    assert prediction.shape == t1.shape
    np.testing.assert_allclose(prediction.affine, t1.affine)

    run("synthesize.py", run_dir, phantom_root / case_id / f"{case_id}-t1n.nii.gz", tmp_path / "synthetic")
    written = load_volume(tmp_path / "synthetic" / f"{case_id}-t1n_t2syn.nii.gz")
    np.testing.assert_allclose(written.data, prediction.data, atol=1e-6)


@pytest.mark.slow
def test_pix2pix_data_parallel_on_two_cpu_processes(phantom_root, tmp_path):
    """trainer=ddp through Lightning's launcher (gloo on the CPU): both ranks train, one predicts."""
    run_dir = tmp_path / "run"
    run(
        "train.py", "data=brats", f"data.root={phantom_root}", *TINY_PIX2PIX, "trainer=ddp", "trainer.accelerator=cpu",
        "trainer.devices=2", "model.constant_iterations=2", "model.decay_iterations=1", "baselines=null",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert checkpoint_step(run_dir) == 6
    assert (run_dir / "train_ddp_process_1.log").exists()
    summary = json.loads((run_dir / "summary.json").read_text())["summary"]
    assert {e["method"] for e in summary} == {"pix2pix"}


@pytest.mark.slow
def test_a_rerun_into_a_run_folder_replaces_its_results_and_removes_partial_files(phantom_root, tmp_path):
    run_dir = tmp_path / "run"
    common = ("train.py", "data=brats", f"data.root={phantom_root}", "logger=none", f"hydra.run.dir={run_dir}")
    run(*common, "model=intensity_lookup")
    assert (run_dir / "predictions" / "zeros").is_dir()
    leftover = run_dir / "predictions" / "intensity_lookup" / ".x.nii.gz.k2j4.partial.nii.gz"
    leftover.write_bytes(b"half a file")

    result = run(*common, "model=intensity_lookup", "~model@baselines.zeros", "~model@baselines.random")
    output = " ".join(result.stdout.split())  # the console wraps long lines
    assert f"removed {leftover}" in output
    assert "replaced the earlier run's predictions, baselines, metrics.csv, summary.json" in output
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == ["complementary", "intensity_lookup"]
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert {r["method"] for r in rows} == {"intensity_lookup", "complementary"}
    assert not list(run_dir.rglob("*.partial*"))


def test_the_command_line_reaches_config_errors_without_importing_torch():
    """train.py's --help, --cfg and config errors need Hydra and the config checks only: torch and
    Lightning (seconds to import) load once a run starts."""
    code = "import sys, train; print(sorted({'torch', 'pytorch_lightning'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_training_without_a_gpu_says_so_up_front(phantom_root, tmp_path):
    """The default trainer asks for an accelerator; on a machine without a GPU the run says so before
    training and names the CPU-sized experiment."""
    result = run("train.py", "data=brats", f"data.root={phantom_root}", "logger=none", *TINY_PIX2PIX,
                 "model.constant_iterations=1", "model.decay_iterations=0", "baselines=null",
                 f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    if torch_has_cuda():
        pytest.skip("a GPU is present")
    assert "warning: no GPU found" in result.stderr and "+experiment=pix2pix_cpu" in result.stderr


def torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_lazy_subjects_read_ahead_in_order_holding_a_bounded_number():
    import threading

    from datamodules.dataset import LazySubjects

    lock, loaded, yielded, most_ahead = threading.Lock(), [], [], [0]

    def loader(case):
        with lock:
            loaded.append(case)
            most_ahead[0] = max(most_ahead[0], len(loaded) - len(yielded))
        return case

    subjects = LazySubjects(loader, list(range(20)), workers=3)
    for case in subjects:
        yielded.append(case)
    assert yielded == list(range(20)) and sorted(loaded) == list(range(20))
    assert most_ahead[0] <= 3 + 1  # the read-ahead window plus the one being used
    assert [s for s in LazySubjects(loader, [5, 6], workers=1)] == [5, 6] and subjects[7] == 7
