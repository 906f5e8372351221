"""Shared fixtures: tiny synthetic volumes and a tiny phantom data set, all in temporary folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pipeline.resolvers  # noqa: F401 -- registers the configs' resolvers, as train.py does
from datamodules.nifti import Volume, new_header, save_volume

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_DATA = REPOSITORY.parent / "shared" / "data" / "real"
TINY_SHAPE = (24, 24, 16)
#: Pix2Pix overrides that train in seconds on the CPU (with the top-level train.yaml).
TINY_PIX2PIX = (
    "generator=unet_small",
    "generator.base_filters=4",
    "model.discriminator.base_filters=4",
    "model.checkpoint_every=2",
    "model.validate_every=3",
    "model.data.patch_size=[32,32,32]",
    "model.data.samples_per_volume=2",
    "model.data.num_workers=0",
    "~model@baselines.random",
    "~model@baselines.zeros",
)


def run(script: str, *args: object, check: bool = True) -> subprocess.CompletedProcess:
    """An entry script run as a user runs it, from the repository (``check``: fail on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, script, *map(str, args)], cwd=REPOSITORY, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed:\n{result.stdout}\n{result.stderr}")
    return result


def train_in_process(monkeypatch: pytest.MonkeyPatch, *args: object) -> int | str | None:
    """``train.py``'s main with ``args``, in this process: what the script does, without the cost of
    a new interpreter importing torch (Hydra's config folder given as an absolute path, since
    ``train`` is imported here, not run as ``__main__``). Returns the exit status (0 when it returns)."""
    import train

    monkeypatch.setattr(sys, "argv", ["train.py", "--config-path", str(REPOSITORY / "conf"), *map(str, args)])
    try:
        train.main()
    except SystemExit as exit_:
        return exit_.code
    return 0


def make_volume(data: np.ndarray, spacing: float = 1.0) -> Volume:
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    return Volume(data=data, affine=affine, header=new_header(affine))


def ball_volume(shape: tuple[int, int, int] = (12, 12, 10), background: float = 0.0, dtype=np.int16) -> Volume:
    """A bright ball (value 100) with a darker core (50) on a constant background."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    radius = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    data = np.full(shape, background)
    data[radius < 4] = 100
    data[radius < 2] = 50
    return make_volume(data.astype(dtype))


def write_case(folder: Path, names: dict[str, str], volumes: dict[str, Volume]) -> None:
    """Write ``volumes`` (modality -> Volume) under the file names ``names`` (modality -> file name)."""
    for modality, volume in volumes.items():
        save_volume(volume, folder / names[modality], dtype=volume.data.dtype)


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory: pytest.TempPathFactory):
    """A six-subject phantom at 24 x 24 x 16 voxels (10 x 10 x 9.7 mm voxels)."""
    from datamodules.phantom import phantom_dataset

    root = tmp_path_factory.mktemp("phantom")
    return phantom_dataset(n_subjects=6, shape=TINY_SHAPE, seed=3, root=root)
