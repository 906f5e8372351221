"""Brain masks and intensity normalisation shared by every method and by the evaluation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from scipy import ndimage

from common.cores import usable_cores
from common.errors import InvalidInputError
from datamodules.nifti import Volume

#: Threads that share the median filter (one per core).
PARALLEL_PARTS = usable_cores()

BRAIN_MASK_RULE = (
    "border-background: background = median of the volume's six faces; brain = voxels differing from it "
    "by more than 5 robust SDs of the faces (any difference when the faces are constant); holes filled"
)


def brain_mask(volume: Volume) -> np.ndarray:
    """Boolean brain mask of a skull-stripped scan whose background need not be zero.

    The background level is read from the volume's faces (the field of view's edges are outside the
    head in BraTS-space scans), so a constant background of 0, -1024 or 17 all work, and so does a
    noisy background after resampling. Dark voxels enclosed by brain (necrosis, CSF equal to the
    background value) are kept by filling holes.

    Raises:
        InvalidInputError: the volume has no voxel that differs from its background.
    """
    data = volume.data
    faces = np.concatenate(
        [data[[0, -1], :, :].ravel(), data[:, [0, -1], :].ravel(), data[:, :, [0, -1]].ravel()]
    ).astype(np.float64)
    background = float(np.median(faces))
    spread = 1.4826 * float(np.median(np.abs(faces - background)))
    if spread == 0 and data.dtype.kind in "iu" and background.is_integer():
        mask = data != int(background)  # the same as below (integers are exact in float32), 10x faster
    else:
        mask = np.abs(data.astype(np.float32) - np.float32(background)) > 5.0 * spread
    if not mask.any():
        raise InvalidInputError(volume.name, f"all voxels are background (value {background:g}): no brain found")
    return fill_holes(mask)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)``, several times faster on a brain: background
    components (6-connected, as scipy's) that do not reach the border are filled, found by one
    labelling of the mask's bounding box. Everything outside the box is background that reaches the
    border, so a component of the box's background is a hole unless it touches a face of the box.
    Without holes, ``mask`` itself is returned."""
    if not mask.any():
        return mask.copy(order="K")
    box = bounding_box(mask)
    labels, count = ndimage.label(~np.ascontiguousarray(mask[box]))  # a strided view labels 15 % slower
    faces = np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(), labels[:, :, [0, -1]].ravel()])
    hole = np.ones(count + 1, dtype=bool)
    hole[faces] = False
    hole[0] = False  # label 0 is the mask itself
    if not hole.any():
        return mask
    filled = mask.copy(order="K")  # keeps a NIfTI mask's Fortran order (see values_at)
    filled[box] |= hole[labels]
    return filled


def values_at(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The values of ``volume`` where ``mask`` is set, as ``volume[mask]`` but in the mask's memory
    order: nibabel gives NIfTI data in Fortran order, which numpy's C-order walk reads 5x slower.
    The order depends on the mask alone, so every volume read at one mask lines up; put values back
    with :func:`put_values_at` and the same mask."""
    return volume.T[mask.T] if _fortran_ordered(mask) else volume[mask]


def put_values_at(volume: np.ndarray, mask: np.ndarray, values: np.ndarray | float) -> None:
    """``volume[mask] = values``, with values in the order :func:`values_at` reads them."""
    if _fortran_ordered(mask):
        volume.T[mask.T] = values
    else:
        volume[mask] = values


def _fortran_ordered(mask: np.ndarray) -> bool:
    return mask.flags.f_contiguous and not mask.flags.c_contiguous


def unit_scale(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Min-max scale the voxels in ``mask`` to [0, 1]; voxels outside the mask become 0 (float32).

    This is the project's "unit scale" of a contrast, the scale on which methods predict T2 and on
    which the paper's ``mse`` is computed (the reference min-max normalises T2 over the volume, which
    is the same thing when the background is the minimum).
    """
    scaled = np.zeros(data.shape, dtype=np.float32)
    put_values_at(scaled, mask, unit_scale_values(values_at(data, mask)))
    return scaled


def unit_scale_values(values: np.ndarray) -> np.ndarray:
    """:func:`unit_scale` of the brain's values alone (float32; all 0 when they are constant)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def percentile_scale(data: np.ndarray, mask: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Clip the voxels in ``mask`` to their own ``lower``/``upper`` percentiles and scale to [0, 1].

    The BraSyn normalisation, with percentiles taken over the brain (not the whole field of view, so a
    non-zero background does not move them) and the lower bound floored at 0 when the data are
    non-negative inside the brain. Voxels outside the mask become 0 (float32).
    """
    scaled = np.zeros(data.shape, dtype=np.float32)
    put_values_at(scaled, mask, percentile_scale_values(values_at(data, mask), lower, upper))
    return scaled


def percentile_scale_values(values: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """:func:`percentile_scale` of the brain's values alone (float32)."""
    values = values.astype(np.float64)
    low, high = np.percentile(values, [lower, upper])
    if values.min() >= 0:
        low = max(low, 0.0)
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((np.clip(values, low, high) - low) / (high - low)).astype(np.float32)


#: :func:`robust_scale_values` keeps values up to this many interquartile ranges from the median.
ROBUST_RANGE = 5.0


def robust_scale_values(values: np.ndarray) -> np.ndarray:
    """The brain's values as a robust z-score, (x - median) / IQR, clipped to +-:data:`ROBUST_RANGE`
    and mapped to [0, 1] (float32): anchored at the bulk of the tissue, so scans of two scanners or
    patients line up where a percentile scale's ends (a lesion, a vessel) would move them apart."""
    values = values.astype(np.float64)
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    if q75 <= q25:
        return np.zeros(values.shape, dtype=np.float32)
    z = np.clip((values - median) / (q75 - q25), -ROBUST_RANGE, ROBUST_RANGE)
    return ((z + ROBUST_RANGE) / (2 * ROBUST_RANGE)).astype(np.float32)


def bounding_box(volume: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """The smallest box holding every non-zero voxel, grown by ``margin`` (empty for an empty volume)."""
    box = []
    for axis in range(volume.ndim):
        others = tuple(a for a in range(volume.ndim) if a != axis)
        occupied = np.flatnonzero(volume.any(axis=others))
        if not occupied.size:
            return tuple(slice(0, 0) for _ in volume.shape)
        box.append(slice(max(int(occupied[0]) - margin, 0), min(int(occupied[-1]) + 1 + margin, volume.shape[axis])))
    return tuple(box)


@numba.njit(cache=True, nogil=True)
def _column_sorted(volume, first, last):  # pragma: no cover - compiled
    """For rows first..last-1: each voxel's three neighbours along axis 0 (edges replicated),
    sorted: (low, middle, high) volumes."""
    size_x, size_y, size_z = volume.shape
    low = np.empty((last - first, size_y, size_z), dtype=volume.dtype)
    middle = np.empty_like(low)
    high = np.empty_like(low)
    for x in range(first, last):
        above, below = volume[max(x - 1, 0)], volume[min(x + 1, size_x - 1)]
        for y in range(size_y):
            for z in range(size_z):
                a, b, c = above[y, z], volume[x, y, z], below[y, z]
                if a > b:
                    a, b = b, a
                if b > c:
                    b, c = c, b
                if a > b:
                    a, b = b, a
                low[x - first, y, z], middle[x - first, y, z], high[x - first, y, z] = a, b, c
    return low, middle, high


@numba.njit(cache=True, inline="always")
def _median_of_3(a, b, c):  # pragma: no cover - compiled
    return max(min(a, b), min(max(a, b), c))


@numba.njit(cache=True, nogil=True)
def _median_3x3(volume, filtered, first, last):  # pragma: no cover - compiled
    """Rows first..last-1 of the per-slice 3x3 median: with the window's three columns (along
    axis 0) each sorted, the median of the nine is the median of (the largest low, the median
    middle, the smallest high)."""
    size_y, size_z = volume.shape[1], volume.shape[2]
    low, middle, high = _column_sorted(volume, first, last)
    for x in range(last - first):
        for y in range(size_y):
            left, right = max(y - 1, 0), min(y + 1, size_y - 1)
            for z in range(size_z):
                largest_low = max(low[x, left, z], low[x, y, z], low[x, right, z])
                median_middle = _median_of_3(middle[x, left, z], middle[x, y, z], middle[x, right, z])
                smallest_high = min(high[x, left, z], high[x, y, z], high[x, right, z])
                filtered[first + x, y, z] = _median_of_3(largest_low, median_middle, smallest_high)


def smooth_across_slices(volume: np.ndarray, sigma: float, inside: np.ndarray) -> np.ndarray:
    """A Gaussian of ``sigma`` voxels along axis 2 (across axial slices) inside the mask, 0 outside it.

    Normalised by the mask's own smoothing, so the brain's edge is not darkened by the background.
    """
    weight = inside.astype(np.float64)
    smoothed = ndimage.gaussian_filter1d(volume * weight, sigma, axis=2, mode="constant")
    coverage = ndimage.gaussian_filter1d(weight, sigma, axis=2, mode="constant")
    return np.where(inside, smoothed / np.maximum(coverage, 1e-12), 0).astype(volume.dtype)


def median_per_axial_slice(volume: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """3x3 median in every slice along axis 2, replicated borders (the reference's cv2.medianBlur,
    identical to ``scipy.ndimage.median_filter(size=(3, 3, 1), mode="nearest")``, 10x faster),
    then 0 outside the mask ``inside`` when given (the filter would otherwise spread the image
    one voxel beyond the brain where three of a voxel's neighbours are inside it).

    Computed on the bounding box of the non-zero voxels grown by one voxel: outside it every 3x3
    neighbourhood is all zero, so the result equals filtering the whole volume.
    """
    box = bounding_box(volume, margin=1)
    region = np.ascontiguousarray(volume[box])
    result = np.empty_like(region)
    edges = np.linspace(0, region.shape[0], PARALLEL_PARTS + 1).astype(int)
    with ThreadPoolExecutor(PARALLEL_PARTS) as pool:  # the compiled kernel releases the GIL
        list(pool.map(lambda part: _median_3x3(region, result, edges[part], edges[part + 1]), range(PARALLEL_PARTS)))
    filtered = np.zeros_like(volume)
    filtered[box] = result
    if inside is not None:
        put_values_at(filtered, ~inside, 0)
    return filtered
