import numpy as np
import pytest

from common.errors import InvalidInputError
from datamodules.dataset import Subject
from evaluation.image_metrics import mean_absolute_error, mean_squared_error, psnr, ssim_map
from evaluation.scoring import score_prediction, summarise
from tests.conftest import ball_volume, make_volume

PREDICTION = np.array([0.0, 0.5, 1.0, 0.25])
TARGET = np.array([0.0, 1.0, 0.5, 0.25])
REGION = np.array([False, True, True, True])


def test_mse_mae_psnr_by_hand():
    # differences on the region: 0.5, 0.5, 0 -> MSE 1/6, MAE 1/3
    assert mean_squared_error(PREDICTION, TARGET, REGION) == pytest.approx(1 / 6)
    assert mean_absolute_error(PREDICTION, TARGET, REGION) == pytest.approx(1 / 3)
    assert psnr(PREDICTION, TARGET, REGION, data_range=1.0) == pytest.approx(10 * np.log10(6))
    assert psnr(PREDICTION, TARGET, REGION, data_range=2.0) == pytest.approx(10 * np.log10(24))
    assert mean_squared_error(PREDICTION, TARGET, np.zeros(4, bool)) is None


def test_ssim_of_one_window_by_hand():
    rng = np.random.default_rng(0)
    x, y = rng.random((7, 7, 7)), rng.random((7, 7, 7))
    local = ssim_map(x, y, np.ones((7, 7, 7), bool))
    c1, c2 = 0.01**2, 0.03**2
    cov = np.cov(np.stack([x.ravel(), y.ravel()]))  # sample (n - 1) covariance
    expected = ((2 * x.mean() * y.mean() + c1) * (2 * cov[0, 1] + c2)) / (
        (x.mean() ** 2 + y.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)
    )
    assert local[3, 3, 3] == pytest.approx(expected, rel=1e-6)
    assert ssim_map(x, x, np.ones((7, 7, 7), bool))[3, 3, 3] == pytest.approx(1.0)


def subject_with(t2_data, seg_data=None, shape=(12, 12, 10)):
    t1 = ball_volume(shape)
    return Subject(
        "c",
        {"t1": t1, "t2": t1.with_data(t2_data)},
        segmentation=None if seg_data is None else t1.with_data(seg_data.astype(np.int16)),
    )


def test_scores_of_a_perfect_and_of_a_shifted_prediction():
    subject = subject_with(ball_volume().data.astype(np.float32) * 3, seg_data=ball_volume().data == 50)
    brain = subject.brain
    perfect = subject["t1"].with_data(np.where(brain, (subject["t2"].data - 150) / 150, 0).astype(np.float32))
    scores = score_prediction(perfect, subject)
    for name in ("pct_mse_brain", "pct_mse_tumour", "mse_brain", "scaled_mse_brain"):
        assert scores[name] == pytest.approx(0.0, abs=1e-12)
    assert scores["ssim_healthy"] == pytest.approx(1.0) and scores["psnr_brain"] == np.inf
    # On the unit scale the target is 0 in the core and 1 elsewhere; predicting 0.5 everywhere gives 0.25.
    flat = subject["t1"].with_data(np.where(brain, 0.5, 0).astype(np.float32))
    scores = score_prediction(flat, subject)
    assert scores["mse_brain"] == pytest.approx(0.25)
    assert scores["mse_tumour"] == pytest.approx(0.25)


def test_tumour_metrics_are_na_without_segmentation_and_geometry_is_checked():
    subject = subject_with(ball_volume().data.astype(np.float32))
    scores = score_prediction(subject["t1"].with_data(np.zeros((12, 12, 10), np.float32)), subject)
    assert scores["pct_mse_tumour"] is None and scores["ssim_tumour"] is None
    assert scores["pct_mse_brain"] is not None
    wrong = make_volume(np.zeros((12, 12, 9), np.float32))
    with pytest.raises(InvalidInputError, match=r"shape \(12, 12, 9\) differs from the real T2's \(12, 12, 10\)"):
        score_prediction(wrong, subject)
    shifted = subject["t1"].affine.copy()
    shifted[0, 3] += 2.0
    moved = subject["t1"].with_data(np.zeros((12, 12, 10), np.float32))
    moved = type(moved)(data=moved.data, affine=shifted, header=moved.header)
    with pytest.raises(InvalidInputError, match=r"affine .*-8\..* differs from the real T2's .*-10\..* \(case c\)"):
        score_prediction(moved, subject)


def test_summary_skips_na_values():
    rows = [
        {"method": "m", "role": "test", "pct_mse_brain": 0.1, "pct_mse_tumour": None},
        {"method": "m", "role": "test", "pct_mse_brain": 0.3, "pct_mse_tumour": 0.2},
    ]
    (entry,) = summarise(rows)
    assert entry["pct_mse_brain"]["mean"] == pytest.approx(0.2)
    assert entry["pct_mse_brain"]["sd"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert entry["pct_mse_tumour"] == {"mean": 0.2, "sd": None, "n": 1}


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ("plausible", ""),
        ("nan", "1 non-finite voxels"),
        ("large", "values from 0 to 7, far outside the unit scale [0, 1]"),
        ("constant", "95.3% of the brain holds one value"),
        ("outside", "most of the foreground (1376 voxels) lies outside the brain"),
    ],
)
def test_degenerate_predictions_are_named(values, reason):
    from evaluation.scoring import degeneracy

    brain = np.zeros((12, 12, 10), dtype=bool)
    brain[4:8, 4:8, 3:7] = True  # 64 voxels
    image = np.where(brain, np.linspace(0.1, 0.9, brain.size).reshape(brain.shape), 0).astype(np.float32)
    if values == "nan":
        image[5, 5, 5] = np.nan
    elif values == "large":
        image[5, 5, 5] = 7
    elif values == "constant":
        image[4:8, 4:8, 3:7] = 0.5
        image[4, 4, 3:6] = 0.7  # 61 of 64 brain voxels alike
    elif values == "outside":
        image = np.where(brain, 0, 0.5).astype(np.float32)  # the reference's foreground rule gone wrong
        image[5, 5, 5] = 0.2
    assert degeneracy(image, brain) == reason
