"""The validation image panel: T1 | real T2 | synthetic T2 | absolute error, on three orthogonal
mid-slices, saved as PNG and sent to the TensorBoard or W&B logger when one is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("T1", "real T2", "synthetic T2", "|error|")


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices through the centre, oriented for display."""
    x, y, z = (size // 2 for size in volume.shape)
    return [np.rot90(volume[:, :, z]), np.rot90(volume[:, y, :]), np.rot90(volume[x, :, :])]


def render_panel(t1: np.ndarray, real: np.ndarray, synthetic: np.ndarray, title: str = "") -> np.ndarray:
    """(H, W, 3) uint8 image of the panel; volumes on [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volumes = (t1, real, synthetic, np.abs(synthetic - real))
    figure, axes = plt.subplots(3, 4, figsize=(8, 6), dpi=80)
    for column, (name, volume) in enumerate(zip(COLUMNS, volumes, strict=True)):
        for row, image in enumerate(mid_slices(volume)):
            axis = axes[row, column]
            axis.imshow(image, cmap="magma" if column == 3 else "gray", vmin=0, vmax=1, aspect="equal")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return image


def log_panel(
    logger: Any, t1: np.ndarray, real: np.ndarray, synthetic: np.ndarray, step: int, case_id: str, folder: Path
) -> Path:
    """Render the panel, write ``folder/step_<step>.png`` and log it to TensorBoard or W&B."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
    from skimage.io import imsave

    image = render_panel(t1, real, synthetic, title=f"{case_id}, step {step}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:07d}.png"
    imsave(path, image, check_contrast=False)
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image("val/panel", image, step, dataformats="HWC")
    elif isinstance(logger, WandbLogger):
        logger.log_image(key="val/panel", images=[image], caption=[case_id], step=step)
    return path
