"""Files appear whole under their final name, readable by the lab (0644 under umask 022)."""

import os
import stat

import matplotlib
import numpy as np
import pytest

from common.files import atomic_write, remove_partial_files, write_json_atomic, write_rows_csv
from datamodules.nifti import save_volume
from tests.conftest import ball_volume

matplotlib.use("Agg")


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_writer_gives_0644_under_umask_022_and_leaves_no_temporary_file(tmp_path, umask_022):
    import matplotlib.pyplot as plt

    from clustering.baselines import Complementary

    written = [
        save_volume(ball_volume(), tmp_path / "a" / "t2.nii.gz"),
        save_volume(ball_volume(), tmp_path / "a" / "t2.nii"),
    ]
    write_json_atomic({"x": 1}, tmp_path / "b" / "summary.json")
    write_rows_csv([{"case_id": "c", "mse": 0.5}], tmp_path / "b" / "metrics.csv")
    written += [tmp_path / "b" / "summary.json", tmp_path / "b" / "metrics.csv"]
    figure = plt.figure()
    with atomic_write(tmp_path / "c" / "figure.png") as temporary:
        figure.savefig(temporary)
    plt.close(figure)
    written.append(tmp_path / "c" / "figure.png")
    method = Complementary()
    method.fit([])
    folder = method.save(tmp_path / "model")
    written += list(folder.iterdir())
    for path in written:
        assert mode(path) == 0o644, path
    assert not [p for p in tmp_path.rglob(".*")]


def test_a_stricter_umask_is_honoured(tmp_path):
    previous = os.umask(0o077)
    try:
        path = save_volume(ball_volume(), tmp_path / "private.nii.gz")
    finally:
        os.umask(previous)
    assert mode(path) == 0o600


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError), atomic_write(target) as temporary:
        np.savez(temporary, a=np.zeros(3))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_partial_files_of_a_killed_writer_are_found_and_removed(tmp_path):
    leftover = tmp_path / "predictions" / "m" / ".case.nii.gz.abc123.partial.nii.gz"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    kept = tmp_path / "predictions" / "m" / "case.nii.gz"
    kept.write_bytes(b"whole")
    assert remove_partial_files(tmp_path) == [leftover]
    assert not leftover.exists() and kept.exists()
