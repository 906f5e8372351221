"""Segmentation metrics and the segmentation-based evaluation of synthetic T2s."""

import sys

import numpy as np
import pytest

from datamodules.dataset import Subject, SynthesisDataset
from datamodules.labels import BRATS2019, BRATS2023
from datamodules.nifti import Volume, save_volume
from datamodules.phantom import generate_phantom
from evaluation.segmentation import CommandSegmenter, evaluate_synthetic, prediction_files
from evaluation.segmentation_metrics import HD95_PENALTY_MM, dice, hd95, score_segmentation
from tests.conftest import make_volume


def cube(shape, start, size):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def test_dice_by_hand_and_empty_conventions():
    a, b = cube((10, 10, 10), (2, 2, 2), 3), cube((10, 10, 10), (2, 2, 3), 3)
    assert dice(a, b) == pytest.approx(2 * 18 / 54)
    empty = np.zeros_like(a)
    assert dice(empty, empty) == 1.0 and dice(a, empty) == 0.0


def test_hd95_uses_the_voxel_spacing_and_empty_conventions():
    a, b = cube((12, 12, 12), (3, 3, 3), 4), cube((12, 12, 12), (3, 3, 4), 4)
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert hd95(a, b, (1.0, 1.0, 2.5)) == pytest.approx(2.5)  # the shift is along z
    empty = np.zeros_like(a)
    assert hd95(empty, empty, (1, 1, 1)) == 0.0 and hd95(a, empty, (1, 1, 1)) == HD95_PENALTY_MM


@pytest.mark.parametrize(("labels", "enhancing"), [(BRATS2019, 4), (BRATS2023, 3)])
def test_regions_follow_the_label_convention(labels, enhancing):
    truth = np.zeros((10, 10, 10), dtype=np.int16)
    truth[2:8, 2:8, 2:8] = 2  # oedema
    truth[4:6, 4:6, 4:6] = enhancing
    prediction = truth.copy()
    prediction[prediction == enhancing] = 1  # enhancing called necrosis: WT and TC right, ET missed
    scores = score_segmentation(prediction, truth, labels, (1, 1, 1))
    assert scores["dice_WT"] == 1 and scores["dice_TC"] == 1 and scores["dice_ET"] == 0
    assert scores["hd95_ET"] == HD95_PENALTY_MM
    assert scores["dice_mean"] == pytest.approx(2 / 3)


class BrightSegmenter:
    """Labels oedema (2) where one contrast is in the brightest fifth of the brain: a segmenter that
    needs that contrast, so that a missing one can be seen in its scores."""

    def __init__(self, contrast: str = "t2") -> None:
        self.contrast = contrast

    def predict(self, subject: Subject) -> Volume:
        values = subject[self.contrast].data.astype(float)
        brain = subject.brain
        threshold = np.percentile(values[brain], 80) if values[brain].max() > values[brain].min() else np.inf
        return subject.volume_like(np.where(brain & (values > threshold), 2, 0).astype(np.int16))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = generate_phantom(tmp_path_factory.mktemp("phantom"), n_subjects=5, shape=(32, 32, 24), seed=2, workers=1)
    return SynthesisDataset(root)


@pytest.mark.parametrize("target", ["t2", "flair"])
def test_evaluation_replaces_the_target_and_scores_each_against_ground_truth(phantom, tmp_path, target):
    """Table 2 for any target: the segmenter sees the synthetic target in place of the real one."""
    role = next(r for r in phantom.roles if r != "train")
    case_id = phantom.split[role][0]
    subject = phantom.load(phantom.cases[case_id], ("t1", target))
    runs = tmp_path / "predictions"
    save_volume(subject[target], runs / "copy" / role / f"{case_id}.nii.gz")
    save_volume(
        subject.volume_like(np.zeros(subject["t1"].shape, np.float32)), runs / "zeros" / role / f"{case_id}.nii.gz"
    )
    files = prediction_files([runs], phantom)
    rows = evaluate_synthetic(BrightSegmenter(target), phantom, files, target, progress=False)
    by_method = {row["method"]: row for row in rows}
    real = f"real_{target}"
    assert set(by_method) == {real, "copy", "zeros"}
    assert by_method["copy"]["dice_WT"] == by_method[real]["dice_WT"]
    assert by_method["copy"]["dice_change_mean"] == 0 and by_method["copy"]["hd95_change_mean"] == 0
    assert by_method["zeros"]["dice_WT"] < by_method[real]["dice_WT"]
    assert by_method["zeros"]["dice_change_WT"] == pytest.approx(-by_method[real]["dice_WT"])
    assert all(row["reference"] == "ground_truth" for row in rows)


def test_command_segmenter_runs_an_external_program(tmp_path):
    script = tmp_path / "segment.py"
    script.write_text(
        "import sys, nibabel as nib, numpy as np\n"
        "t2 = nib.load(sys.argv[3])\n"
        "labels = (np.asarray(t2.dataobj) > 50).astype(np.int16) * 2\n"
        "nib.save(nib.Nifti1Image(labels, t2.affine), sys.argv[5])\n"
    )
    t2 = np.zeros((8, 8, 8), np.float32)
    t2[2:5, 2:5, 2:5] = 100
    volume = make_volume(t2)
    subject = Subject("c", {"t1": volume, "t2": volume, "t1ce": volume, "flair": volume})
    segmenter = CommandSegmenter(f"{sys.executable} {script} {{t1}} {{t1ce}} {{t2}} {{flair}} {{output}}")
    labels = segmenter.predict(subject)
    assert labels.data.sum() == 2 * 27
    np.testing.assert_array_equal(labels.affine, volume.affine)


def test_command_segmenter_template_is_checked_and_failures_are_reported(tmp_path):
    with pytest.raises(ValueError, match="output"):
        CommandSegmenter("seg {t1} {t1ce} {t2} {flair}")
    volume = make_volume(np.ones((4, 4, 4), np.float32))
    subject = Subject("c", {"t1": volume, "t2": volume, "t1ce": volume, "flair": volume})
    failing = CommandSegmenter(
        f"{sys.executable} -c 'import sys; sys.exit(3)' {{t1}} {{t1ce}} {{t2}} {{flair}} {{output}}"
    )
    with pytest.raises(RuntimeError, match="exit 3"):
        failing.predict(subject)
