"""Cases a run needs and cannot use stop it before fitting, naming the file; a predicted case
without a real T2 is listed with n/a scores, never dropped."""

import csv
import json
import shutil

import numpy as np
import pytest

from datamodules.dataset import SynthesisDataset
from datamodules.nifti import load_volume, save_volume
from tests.conftest import TINY_SHAPE, run


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from datamodules.phantom import generate_phantom

    root = generate_phantom(tmp_path_factory.mktemp("data"), n_subjects=8, shape=TINY_SHAPE, seed=7, workers=1)
    SynthesisDataset(root)  # writes the split every copy shares
    return root


@pytest.fixture
def data(pristine, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(pristine, root)
    return root, SynthesisDataset(root).split


def train(root, run_dir, check=True):
    return run("train.py", "data=brats", f"data.root={root}", "logger=none", "model=intensity_lookup",
               f"hydra.run.dir={run_dir}", check=check)  # fmt: skip


def t1_of(root, case_id):
    return root / case_id / f"{case_id}-t1n.nii.gz"


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["missing", "dangling link", "truncated"])
@pytest.mark.parametrize("role", ["train", "test"])
def test_a_bad_t1_stops_the_run_before_fitting(data, tmp_path, fault, role):
    root, split = data
    path = t1_of(root, split[role][0])
    if fault == "missing":
        path.unlink()
        message = f"error: {path}: missing t1 for case {split[role][0]}"
    elif fault == "dangling link":
        path.unlink()
        path.symlink_to(tmp_path / "elsewhere.nii.gz")
        message = f"error: {path}: dangling symbolic link"
    else:
        content = path.read_bytes()
        path.write_bytes(content[: len(content) // 2])
        message = f"error: {path}: truncated"
    run_dir = tmp_path / "run"
    result = train(root, run_dir, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)
    assert not (run_dir / "model").exists()  # found before fitting


@pytest.mark.slow
def test_a_test_case_without_its_t2_is_predicted_listed_and_counted(data, tmp_path):
    root, split = data
    case_id = split["test"][0]
    (root / case_id / f"{case_id}-t2w.nii.gz").unlink()
    run_dir = tmp_path / "run"
    result = train(root, run_dir)
    assert f"no real T2 to score against; listed with n/a scores: {case_id}" in result.stdout + result.stderr
    assert (run_dir / "predictions" / "intensity_lookup" / "test" / f"{case_id}.nii.gz").exists()
    rows = [r for r in csv.DictReader((run_dir / "metrics.csv").open()) if r["case_id"] == case_id]
    assert {r["method"] for r in rows} == {"intensity_lookup", "complementary", "random", "zeros"}
    assert all(r["pct_mse_brain"] == "" for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())["summary"]
    (test,) = [e for e in summary if (e["method"], e["role"]) == ("intensity_lookup", "test")]
    assert test["cases"] == len(split["test"]) and test["pct_mse_brain"]["n"] == len(split["test"]) - 1


@pytest.mark.slow
def test_evaluate_lists_a_case_without_its_t2_as_train_does(data, tmp_path):
    root, split = data
    case_id = split["test"][0]
    (root / case_id / f"{case_id}-t2w.nii.gz").unlink()
    predictions = tmp_path / "predictions" / "copy" / "test"
    for case in split["test"]:  # the T1 as a "prediction": any image will do here
        t1 = load_volume(t1_of(root, case))
        save_volume(t1.with_data((t1.data / t1.data.max()).astype(np.float32)), predictions / f"{case}.nii.gz")
    result = run("evaluate.py", tmp_path / "predictions", root, "--output", tmp_path / "evaluation")
    assert f"no real T2 to score against; listed with n/a scores: {case_id}" in result.stderr
    rows = list(csv.DictReader((tmp_path / "evaluation" / "metrics.csv").open()))
    assert sorted(r["case_id"] for r in rows) == sorted(split["test"])
    assert [r["pct_mse_brain"] for r in rows if r["case_id"] == case_id] == [""]
