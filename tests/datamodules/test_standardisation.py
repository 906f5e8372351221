"""Intensity standardisation: each kind by hand, scales that line up across differently scaled copies
of one volume, and Nyúl's landmarks learned, saved with a method and applied again after loading."""

import numpy as np
import pytest

from clustering.baselines import Complementary
from clustering.brainclustering import BrainClustering
from datamodules.dataset import Subject
from datamodules.standardisation import KINDS, STATE_PREFIX, Standardisation
from pipeline.contract import NotFittedError, SynthesisMethod
from tests.conftest import make_volume

#: Brain values 1, 2, ..., 1000.
BRAIN = np.arange(1.0, 1001.0)


def subject_of(values: np.ndarray, case_id: str = "case", contrast: str = "t1") -> Subject:
    """A subject whose brain (every non-zero voxel) holds ``values``, on a zero background."""
    data = np.zeros((12, 12, 12))
    data[1:-1, 1:-1, 1:-1].flat[: values.size] = values
    return Subject(case_id, {contrast: make_volume(data), "t2": make_volume(data)})


def test_zscore_is_the_brain_median_and_iqr_mapped_to_the_unit_interval():
    values = np.array([0.0, 1, 2, 3, 4])  # median 2, IQR 3 - 1 = 2: z = (x - 2) / 2, clipped at +-5
    np.testing.assert_allclose(Standardisation("zscore").values("t1", values), [0.4, 0.45, 0.5, 0.55, 0.6], rtol=1e-6)


def test_percentile_maps_the_half_and_99_and_a_half_percentiles_to_0_and_1():
    scaled = Standardisation("percentile").values("t1", BRAIN)
    low, high = np.percentile(BRAIN, [0.5, 99.5])  # 5.995 and 995.005
    np.testing.assert_allclose(scaled, np.clip((BRAIN - low) / (high - low), 0, 1), rtol=1e-6)


def test_nyul_learned_from_one_case_maps_its_1st_and_99th_percentiles_to_0_and_1():
    """One training case: the standard scale is its own landmarks mapped linearly onto 0-100, so the
    case itself comes out as (x - p1) / (p99 - p1), clipped."""
    nyul = Standardisation("nyul").fit([subject_of(BRAIN)], ["t1"])
    low, high = np.percentile(BRAIN, [1, 99])
    np.testing.assert_allclose(nyul.values("t1", BRAIN), np.clip((BRAIN - low) / (high - low), 0, 1), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_two_differently_scaled_copies_of_one_volume_line_up(kind):
    """Another scanner's gain and offset (3x + 40) vanish on every scale."""
    rng = np.random.default_rng(0)
    values = rng.gamma(4.0, 50.0, size=1000)
    standardisation = Standardisation(kind).fit([subject_of(values), subject_of(values * 0.5 + 7)], ["t1"])
    np.testing.assert_allclose(
        standardisation.values("t1", values * 3 + 40), standardisation.values("t1", values), atol=1e-5
    )


def test_only_nyul_lines_up_a_copy_whose_histogram_has_another_shape():
    """A monotone, non-linear change of contrast (x -> x^2) moves every percentile scale's middle;
    Nyúl maps each volume's landmarks to the same standard values, so the two agree there."""
    rng = np.random.default_rng(1)
    values = rng.uniform(10, 100, size=2000)
    squared = values**2
    nyul = Standardisation("nyul").fit([subject_of(values), subject_of(squared)], ["t1"])
    landmarks = np.percentile(values, [10, 30, 50, 70, 90])
    at = [np.argmin(np.abs(values - v)) for v in landmarks]  # voxels at the landmarks, the same in both
    np.testing.assert_allclose(nyul.values("t1", squared)[at], nyul.values("t1", values)[at], atol=2e-3)
    percentile = Standardisation("percentile")
    assert np.abs(percentile.values("t1", squared)[at] - percentile.values("t1", values)[at]).max() > 0.05


def test_nyul_needs_landmarks_for_the_contrast_and_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="standardisation must be one of"):
        Standardisation("decibels")
    nyul = Standardisation("nyul").fit([subject_of(BRAIN)], ["t1"])
    with pytest.raises(ValueError, match="no landmarks for flair"):
        nyul.values("flair", BRAIN)


def test_a_method_learns_nyul_at_fit_saves_it_and_predicts_the_same_after_loading(tmp_path):
    rng = np.random.default_rng(2)
    training = [subject_of(rng.gamma(3.0, 40.0, 1000) * (i + 1), f"c{i}") for i in range(3)]
    query = Subject("q", {"t1": training[0]["t1"]})
    method = Complementary(standardisation="nyul")
    assert method.learns and not method.is_fitted()  # Complementary learns nothing else
    with pytest.raises(NotFittedError):
        method.predict(query)
    method.fit(training)
    with np.load(method.save(tmp_path / "model") / "state.npz") as arrays:
        assert arrays.files == [f"{STATE_PREFIX}t1"]
    loaded = SynthesisMethod.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(query).data, method.predict(query).data)
    percentile = Complementary().predict(query).data
    assert not np.array_equal(percentile, method.predict(query).data)


def test_brainclustering_takes_its_settings_standardisation_unless_one_is_chosen():
    assert BrainClustering(setting="quantile").scales.kind == "zscore"
    assert BrainClustering(setting="paper").scales.kind == "percentile"
    assert BrainClustering(setting="paper", standardisation="nyul").scales.kind == "nyul"
    with pytest.raises(ValueError, match="setting=reference is the authors' T1 -> T2 code with their preprocessing"):
        BrainClustering(setting="reference", micro=100, standardisation="zscore")
