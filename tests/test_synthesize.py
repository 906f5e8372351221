"""synthesize.py refuses what it cannot do unambiguously, and never reads its own outputs as inputs."""

import pytest

from clustering.baselines import Complementary
from datamodules.nifti import save_volume
from tests.conftest import ball_volume
from tests.test_pipeline import run


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
    assert line == f"error: {output_file}: OUTPUT is a file; give a folder for the synthetic T2s"

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
    (folder / "c.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    result = run("synthesize.py", model, folder, tmp_path / "out", check=False)
    assert result.returncode == 2
    assert f"error: {folder / 'c.nii.gz'}: dangling symbolic link" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_t2syn.nii.gz", "b_t2syn.nii.gz"]
