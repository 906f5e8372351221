"""The randomised phantom: its ranges hold, it changes the sources only, and a seed reproduces it."""

import json

import numpy as np
import pytest
import torch

from datamodules.phantom import make_subject, phantom_affine, phantom_dataset
from datamodules.phantom_randomisation import PhantomRandomisation

SHAPE = (32, 32, 24)
EVERYTHING = PhantomRandomisation(
    contrast=0.3, texture=0.05, gamma=0.3, bias_field=0.3, slice_thickness=3.0, blur=1.0, noise=0.03
)


def test_the_target_and_the_segmentation_are_the_plain_subjects_and_the_sources_are_not():
    plain, affine = make_subject(seed=4, index=1, shape=SHAPE)
    randomised, randomised_affine = make_subject(seed=4, index=1, shape=SHAPE, randomise=EVERYTHING)
    np.testing.assert_array_equal(randomised["t2w"], plain["t2w"])
    np.testing.assert_array_equal(randomised["seg"], plain["seg"])
    np.testing.assert_array_equal(randomised_affine, affine)
    for source in ("t1n", "t1c", "t2f"):
        assert not np.array_equal(randomised[source], plain[source])
        np.testing.assert_array_equal(randomised[source] > 0, plain[source] > 0)  # the same brain
        assert randomised[source].dtype == np.int16


def test_a_seed_reproduces_a_subject_and_the_global_generator_is_left_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, _ = make_subject(seed=4, index=1, shape=SHAPE, randomise=EVERYTHING)
    np.testing.assert_array_equal(torch.rand(3), expected_next)
    second, _ = make_subject(seed=4, index=1, shape=SHAPE, randomise=EVERYTHING)
    other, _ = make_subject(seed=4, index=2, shape=SHAPE, randomise=EVERYTHING)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["t1n"], other["t1n"])


def test_each_tissue_is_drawn_within_its_range_and_the_draws_spread():
    """Two pure tissues side by side, nothing else on: each one's value lies within +- 20 % of its
    signal-equation value, the draws differ between seeds, and the background stays 0."""
    fractions = {"csf": np.zeros(SHAPE, np.float32), "white_matter": np.zeros(SHAPE, np.float32)}
    fractions["csf"][:16] = 1.0
    fractions["white_matter"][16:] = 1.0
    fractions["csf"][:, :, :4] = fractions["white_matter"][:, :, :4] = 0.0  # background slices
    signals = {"csf": 0.2, "white_matter": 0.4}
    options = PhantomRandomisation(contrast=0.2)
    drawn = {"csf": [], "white_matter": []}
    for seed in range(12):
        image = options.source_image(fractions, signals, phantom_affine(SHAPE), (seed,))
        assert np.all(image[:, :, :4] == 0)
        for tissue, value in signals.items():
            inside = image[fractions[tissue] == 1]
            assert np.ptp(inside) < 1e-6  # no texture asked for: one value per tissue
            drawn[tissue].append(float(inside[0]))
            assert value * 0.8 - 1e-6 <= inside[0] <= value * 1.2 + 1e-6
    for values in drawn.values():
        assert np.std(values) > 0.01


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"contrast": -0.1}, "randomise.contrast must be >= 0"),
        ({"contrast": 1.0}, "randomise.contrast must be below 1"),
        ({"slice_thickness": 0.5}, "randomise.slice_thickness must be >= 1"),
        ({"noise": "lots"}, "randomise.noise must be a number"),
        ({"sharpness": 0.1}, "randomise: unknown option 'sharpness'"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        PhantomRandomisation.of(options)


def test_a_randomised_phantom_is_kept_apart_and_records_its_options(tmp_path, monkeypatch):
    monkeypatch.setenv("MRI_SYNTHESIS_CACHE", str(tmp_path))
    plain = phantom_dataset(n_subjects=2, shape=SHAPE, seed=1)
    randomised = phantom_dataset(n_subjects=2, shape=SHAPE, seed=1, randomise={"contrast": 0.2, "noise": 0.0})
    assert plain.root != randomised.root
    assert "randomise" not in json.loads((plain.root / "phantom.json").read_text())
    assert json.loads((randomised.root / "phantom.json").read_text())["randomise"] == {"contrast": 0.2}
