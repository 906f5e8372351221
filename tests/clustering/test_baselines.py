import numpy as np
import pytest

from clustering.baselines import Complementary, IntensityLookup, RandomNoise, Zeros
from datamodules.dataset import Subject
from pipeline.contract import NotFittedError, SynthesisMethod
from tests.conftest import ball_volume


def subject(case_id="c"):
    t1 = ball_volume()
    t2 = t1.with_data(np.where(t1.data == 100, 30, np.where(t1.data == 50, 90, 0)).astype(np.int16))
    return Subject(case_id, {"t1": t1, "t2": t2})


def test_complementary_inverts_the_normalised_t1_in_the_brain():
    s = subject()
    prediction = Complementary().predict(s).data
    assert prediction[s["t1"].data == 100].max() == 0.0  # brightest T1 -> darkest
    assert prediction[s["t1"].data == 50].min() == 1.0
    assert (prediction[~s.brain] == 0).all()


def test_random_is_uniform_in_the_brain_and_reproducible():
    s = subject()
    first, second = RandomNoise(seed=1).predict(s).data, RandomNoise(seed=1).predict(s).data
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, RandomNoise(seed=2).predict(s).data)
    assert (first[~s.brain] == 0).all() and first.min() >= 0 and first.max() < 1
    assert abs(first[s.brain].mean() - 0.5) < 0.1


def test_zeros():
    assert not Zeros().predict(subject()).data.any()


def test_intensity_lookup_learns_the_mapping_and_round_trips(tmp_path):
    with pytest.raises(NotFittedError):
        IntensityLookup().predict(subject())
    method = IntensityLookup(bins=16).fit([subject("a"), subject("b")])
    s = subject()
    prediction = method.predict(s).data
    assert prediction[s["t1"].data == 100] == pytest.approx(0.0)  # T2 30 is the brain minimum
    assert prediction[s["t1"].data == 50] == pytest.approx(1.0)
    loaded = SynthesisMethod.load(method.save(tmp_path / "model"))
    assert isinstance(loaded, IntensityLookup) and loaded.bins == 16
    np.testing.assert_array_equal(loaded.predict(s).data, prediction)


def test_bad_hyperparameter():
    with pytest.raises(ValueError, match="bins must be at least 2"):
        IntensityLookup(bins=1)
