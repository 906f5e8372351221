"""synthesize.py refuses what it cannot do unambiguously, and never reads its own outputs as inputs."""

import csv
import json

import numpy as np
import pytest

from clustering.baselines import ClosestSource, Complementary
from datamodules.nifti import load_volume, save_volume
from datamodules.preprocessing import percentile_scale
from tests.conftest import ball_volume, run


@pytest.fixture
def model(tmp_path):
    return Complementary().fit([]).save(tmp_path / "model")


def t1_folder(folder, names=("a.nii.gz", "b.nii.gz")):
    for name in names:
        save_volume(ball_volume(), folder / name)
    return folder


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_output_inside_the_input_folder_is_not_read_back(model, tmp_path):
    folder = t1_folder(tmp_path / "scans")
    for _ in range(2):
        run("synthesize.py", model, folder, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["a.nii.gz", "a_t2syn.nii.gz", "b.nii.gz", "b_t2syn.nii.gz"]


@pytest.mark.slow
def test_refusals_name_the_file_and_the_problem(model, tmp_path):
    folder = t1_folder(tmp_path / "scans")
    output_file = tmp_path / "out.nii.gz"
    output_file.write_bytes(b"x")
    line = one_error_line(run("synthesize.py", model, folder, output_file, check=False))
    assert line == f"error: {output_file}: OUTPUT is a file; give a folder for the outputs"

    twins = t1_folder(tmp_path / "twins", ("a.nii.gz", "a.nii"))
    line = one_error_line(run("synthesize.py", model, twins, tmp_path / "out", check=False))
    assert line == f"error: {twins / 'a.nii.gz'}: both a.nii and a.nii.gz exist: remove one"

    both = tmp_path / "both"
    t1_folder(both / "C1", ("C1_t1.nii.gz",))  # BraTS 2019
    t1_folder(both / "C2", ("C2-t1n.nii.gz",))  # BraTS 2023
    line = one_error_line(run("synthesize.py", model, both, tmp_path / "out", check=False))
    assert line == f"error: {both}: ambiguous layout (matches brats2019, brats2023); set data.layout explicitly"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_dangling_link_in_a_folder_is_reported_and_the_rest_written(model, tmp_path):
    folder = t1_folder(tmp_path / "scans")
    (folder / "0.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    result = run("synthesize.py", model, folder, tmp_path / "out", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    after_progress = lines[max(i for i, line in enumerate(lines) if line.startswith("Synthesising")) + 1 :]
    assert after_progress == [f"error: {folder / '0.nii.gz'}: dangling symbolic link"]  # listed after the progress
    assert result.stdout.strip().endswith(f"wrote 2 file(s) to {tmp_path / 'out'}; 1 failed")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_t2syn.nii.gz", "b_t2syn.nii.gz"]


# -- the BraSyn case: a case missing one contrast, made from the other three --------------------

BRATS2023 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}


def brats2023_case(root, case_id, contrasts=("t1", "t1ce", "flair")):
    folder = root / case_id
    volume = ball_volume()
    for index, contrast in enumerate(contrasts):
        data = np.where(volume.data > 0, volume.data + index, 0).astype(np.int16)
        save_volume(volume.with_data(data), folder / f"{case_id}-{BRATS2023[contrast]}.nii.gz", np.int16)
    return folder


@pytest.fixture
def brasyn_model(tmp_path):
    """A run for T2 from T1, T1CE and FLAIR: the FLAIR copied (ClosestSource needs no training)."""
    return ClosestSource(source=["t1", "t1ce", "flair"], target="t2").fit([]).save(tmp_path / "brasyn")


@pytest.mark.slow
def test_the_missing_contrast_is_written_with_the_case_naming_and_scored_as_written(brasyn_model, tmp_path):
    root = tmp_path / "data"
    brats2023_case(root, "CASE-A")
    brats2023_case(root, "CASE-B", ("t1", "t1ce", "t2", "flair"))
    # Next to the other files: the case missing its T2 is completed; the one that has it is left alone.
    original = (root / "CASE-B" / "CASE-B-t2w.nii.gz").read_bytes()
    result = run("synthesize.py", brasyn_model, root, check=False)
    assert result.returncode == 2
    written = load_volume(root / "CASE-A" / "CASE-A-t2w.nii.gz")
    flair = load_volume(root / "CASE-A" / "CASE-A-t2f.nii.gz")
    np.testing.assert_array_equal(written.affine, flair.affine)
    np.testing.assert_allclose(written.data, percentile_scale(flair.data, flair.data > 0), atol=1e-6)
    assert f"{root / 'CASE-B' / 'CASE-B-t2w.nii.gz'}: case CASE-B already has its t2: not overwritten" in result.stderr
    assert (root / "CASE-B" / "CASE-B-t2w.nii.gz").read_bytes() == original
    # Into an output folder (one case's folder as input), then scored by evaluate.py as it is.
    run("synthesize.py", brasyn_model, root / "CASE-B", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["CASE-B-t2w.nii.gz"]
    evaluation = run("evaluate.py", tmp_path / "out", root, "--source", "t1,t1ce,flair")
    rows = list(csv.DictReader((tmp_path / "out" / "evaluation" / "metrics.csv").open()))
    assert [(r["method"], r["case_id"]) for r in rows] == [("out", "CASE-B")], evaluation.stdout
    assert float(rows[0]["pct_mse_brain"]) >= 0
    summary = json.loads((tmp_path / "out" / "evaluation" / "summary.json").read_text())
    assert summary["task"] == {"source": ["t1", "t1ce", "flair"], "target": "t2"}  # as a run records it


@pytest.mark.slow
def test_a_case_without_the_runs_sources_is_named_with_what_it_lacks(brasyn_model, tmp_path):
    root = tmp_path / "data"
    brats2023_case(root, "CASE-A", ("t1", "t2"))
    line = one_error_line(run("synthesize.py", brasyn_model, root, tmp_path / "out", check=False))
    assert line == (
        "error: case CASE-A: the run needs t1ce, flair and the case lacks it (CASE-A-t1c.nii.gz, CASE-A-t2f.nii.gz)"
    )
    line = one_error_line(
        run("synthesize.py", brasyn_model, root / "CASE-A" / "CASE-A-t1n.nii.gz", tmp_path, check=False)
    )
    assert "this run makes t2 from t1, t1ce, flair: give a case folder or a data set root" in line


@pytest.mark.slow
def test_evaluate_says_which_file_names_it_expects(tmp_path):
    root = tmp_path / "data"
    brats2023_case(root, "CASE-A", ("t1", "t2"))
    save_volume(ball_volume(), tmp_path / "out" / "other.nii.gz")
    line = one_error_line(run("evaluate.py", tmp_path / "out", root, check=False))
    assert line == (
        f"error: {tmp_path / 'out'}: no file named after a case of {root}: expected <case>.nii.gz or <case> "
        "followed by one of _ - . (e.g. CASE-A.nii.gz, CASE-A-t2.nii.gz); found other.nii.gz"
    )


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["truncated", "text", "another shape"])
def test_evaluate_names_a_bad_prediction_found_by_a_worker(tmp_path, fault):
    root = tmp_path / "data"
    for case_id in ("CASE-A", "CASE-B", "CASE-C"):
        brats2023_case(root, case_id, ("t1", "t2"))
        save_volume(ball_volume(), tmp_path / "out" / f"{case_id}.nii.gz")
    bad = tmp_path / "out" / "CASE-B.nii.gz"
    if fault == "truncated":
        bad.write_bytes(bad.read_bytes()[:100])
    elif fault == "text":
        bad.write_bytes(b"not a NIfTI file\n")
    else:
        save_volume(ball_volume(shape=(12, 12, 8)), bad)
    result = run("evaluate.py", tmp_path / "out", root, check=False)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("Scoring")]  # progress lines
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}: "), result.stderr
    assert not (tmp_path / "out" / "evaluation").exists()  # nothing written from a half-scored folder
