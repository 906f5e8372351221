import numpy as np
import pytest

from common.errors import InvalidInputError
from datamodules.preprocessing import (
    brain_mask,
    percentile_scale,
    put_values_at,
    smooth_across_slices,
    unit_scale,
    values_at,
)
from tests.conftest import ball_volume, make_volume


@pytest.mark.parametrize("background", [0.0, -1024.0, 17.0])
def test_brain_mask_does_not_depend_on_the_background_value(background):
    reference = brain_mask(ball_volume(background=0.0))
    np.testing.assert_array_equal(brain_mask(ball_volume(background=background, dtype=np.float32)), reference)
    assert reference.sum() == (ball_volume().data > 0).sum()


def test_brain_mask_with_a_noisy_background_and_a_dark_core():
    volume = ball_volume(background=-5.0, dtype=np.float32)
    data = volume.data.copy()
    noise = np.random.default_rng(0).normal(0, 0.5, data.shape)
    data[data == -5.0] += noise[data == -5.0]
    data[5:7, 5:7, 4:6] = -5.0  # a core as dark as the background is still brain
    mask = brain_mask(volume.with_data(data))
    np.testing.assert_array_equal(mask, ball_volume().data > 0)


def test_all_background_volume_is_an_error():
    with pytest.raises(InvalidInputError, match="all voxels are background"):
        brain_mask(make_volume(np.full((6, 6, 6), 3.0)))


def test_unit_and_percentile_scales_by_hand():
    data = np.array([[[7.0, 2.0, 4.0, 6.0]]])
    mask = np.array([[[False, True, True, True]]])
    np.testing.assert_allclose(unit_scale(data, mask), [[[0.0, 0.0, 0.5, 1.0]]])
    values = np.arange(1.0, 202.0)  # 1..201: 0.5th percentile 2.0, 99.5th percentile 200.0
    scaled = percentile_scale(values.reshape(1, 1, -1), np.ones((1, 1, 201), bool)).ravel()
    assert scaled[0] == 0.0 and scaled[-1] == 1.0
    assert scaled[100] == pytest.approx((101 - 2) / 198)


def test_the_median_filter_stays_inside_the_mask():
    """A block with a notch in its edge: the median fills the notch (five of its nine neighbours are
    bright) unless the mask is applied again."""
    from datamodules.preprocessing import median_per_axial_slice

    inside = np.zeros((7, 7, 2), dtype=bool)
    inside[1:6, 1:6] = True
    inside[1, 3] = False
    image = np.where(inside, 1.0, 0.0).astype(np.float32)
    leaked = median_per_axial_slice(image)
    assert leaked[1, 3, 0] == 1.0  # what the plain filter does
    masked = median_per_axial_slice(image, inside=inside)
    assert np.all(masked[~inside] == 0)
    np.testing.assert_array_equal(masked[inside], leaked[inside])


@pytest.mark.parametrize("seed", range(6))
def test_fill_holes_equals_scipys_on_masks_with_holes_and_border_contact(seed):
    from scipy import ndimage

    from datamodules.preprocessing import fill_holes

    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random((30, 26, 20)), 1.5) > 0.5  # blobs with enclosed gaps
    if seed % 2:
        mask[0] |= mask[1]  # touching the volume's border: gaps there are not holes
    mask[10:20, 8:18, 5:15] = True
    mask[13:16, 11:14, 8:11] = False  # a hole for certain
    expected = ndimage.binary_fill_holes(mask)
    np.testing.assert_array_equal(fill_holes(mask), expected)
    assert expected[14, 12, 9]


@pytest.mark.parametrize("order", ["C", "F"])
def test_values_at_and_put_values_at_round_trip_in_the_masks_order(order):
    volume = np.asarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4), order=order)
    mask = np.asarray(volume % 3 == 1, order=order)
    values = values_at(volume, mask)
    np.testing.assert_array_equal(np.sort(values), volume[mask])  # the same values, in the mask's order
    assert values[:2].tolist() == ([1, 4] if order == "C" else [4, 16])  # F: the first axis runs fastest
    other_layout = np.asarray(volume, order="F" if order == "C" else "C")
    np.testing.assert_array_equal(values_at(other_layout, mask), values)  # the order follows the mask
    placed = np.zeros_like(other_layout)
    put_values_at(placed, mask, values)
    np.testing.assert_array_equal(placed, np.where(mask, volume, 0))


def test_smoothing_across_slices_keeps_a_constant_brain_and_its_edge_and_zeroes_the_rest():
    inside = np.zeros((4, 4, 9), dtype=bool)
    inside[1:3, 1:3, 2:7] = True
    volume = np.where(inside, 0.6, 0).astype(np.float32)
    smoothed = smooth_across_slices(volume, 1.0, inside)
    assert smoothed.dtype == np.float32
    np.testing.assert_allclose(smoothed[inside], 0.6, rtol=1e-6)  # the background does not darken the edge
    assert np.all(smoothed[~inside] == 0)


def test_smoothing_across_slices_is_a_gaussian_along_axis_2_only():
    volume = np.zeros((3, 3, 41), dtype=np.float32)
    volume[1, 1, 20] = 1.0
    smoothed = smooth_across_slices(volume, 2.0, np.ones(volume.shape, dtype=bool))
    weights = np.exp(-0.5 * (np.arange(-8, 9) / 2.0) ** 2)
    np.testing.assert_allclose(smoothed[1, 1, 12:29], weights / weights.sum(), atol=1e-6)
    assert np.all(smoothed[0] == 0) and np.all(smoothed[:, 0] == 0)  # nothing spreads within a slice
