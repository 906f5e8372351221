"""Image metrics of a synthetic T2 against the real T2 (docs: evaluation protocol, section 1).

Pure functions on arrays and boolean region masks. A metric over an empty region is ``None``
(reported as n/a), never 0.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from datamodules.preprocessing import bounding_box

SSIM_WINDOW = 7  # voxels per side of the uniform 3-D window (scikit-image's default)
DATA_RANGE = 1.0  # every metric below compares images on a [0, 1] scale


def mean_squared_error(prediction: np.ndarray, target: np.ndarray, region: np.ndarray) -> float | None:
    """Mean of (prediction - target)^2 over the voxels in ``region``."""
    if not region.any():
        return None
    difference = prediction[region].astype(np.float64) - target[region].astype(np.float64)
    return float(np.mean(difference * difference))


def mean_absolute_error(prediction: np.ndarray, target: np.ndarray, region: np.ndarray) -> float | None:
    """Mean of |prediction - target| over the voxels in ``region``."""
    if not region.any():
        return None
    return float(np.mean(np.abs(prediction[region].astype(np.float64) - target[region].astype(np.float64))))


def psnr(
    prediction: np.ndarray, target: np.ndarray, region: np.ndarray, data_range: float = DATA_RANGE
) -> float | None:
    """10 log10(data_range^2 / MSE) over ``region`` (scikit-image), with the data range given explicitly
    rather than inferred from the dtype. Infinite for a perfect prediction."""
    if not region.any():
        return None
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(target[region], prediction[region], data_range=data_range))


def ssim_map(prediction: np.ndarray, target: np.ndarray, region_of_interest: np.ndarray) -> np.ndarray:
    """3-D SSIM map (scikit-image: uniform 7^3 window, data range 1, K1 0.01, K2 0.03, sample covariance).

    Computed on the bounding box of ``region_of_interest`` grown by half a window, which gives the same
    values there as on the whole volume at a fraction of the cost. Voxels outside the box are NaN.
    """
    full = np.full(target.shape, np.nan, dtype=np.float64)
    if not region_of_interest.any():
        return full
    box = bounding_box(region_of_interest, margin=SSIM_WINDOW // 2)
    if min(s.stop - s.start for s in box) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW} voxels along every axis of the brain's bounding box")
    _, local = structural_similarity(
        target[box].astype(np.float64),
        prediction[box].astype(np.float64),
        data_range=DATA_RANGE,
        win_size=SSIM_WINDOW,
        full=True,
    )
    full[box] = local
    return full


def mean_over(values: np.ndarray, region: np.ndarray) -> float | None:
    if not region.any():
        return None
    return float(np.mean(values[region]))
