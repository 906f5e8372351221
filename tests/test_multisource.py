"""Any target from any sources: the task, Pix2Pix's input channels, multi-source BrainClustering
(its combination tables and their fallback), the ClosestSource baseline, and a run end to end."""

import json

import numpy as np
import pytest
import torch

from clustering.baselines import ClosestSource, Complementary, IntensityLookup
from clustering.brainclustering import BrainClustering
from clustering.multisource import build_combination_tables, look_up_combinations, multisource_patient_rows
from clustering.shades import leveled_clustering, patient_rows
from clustering.tables import TableRows
from datamodules.dataset import Subject
from datamodules.patches import network_inputs
from datamodules.preprocessing import bounding_box, percentile_scale
from datamodules.task import SynthesisTask
from lightning_modules.method import Pix2PixMethod
from lightning_modules.training import BRAIN_MARGIN
from pipeline.contract import SynthesisMethod, TaskNotSupportedError
from tests.conftest import make_volume, run
from tests.lightning_modules.test_pix2pix import SMALL_DISCRIMINATOR, SMALL_UNET, as_batch, head_subject, untrained

BRASYN = ("t1", "t1ce", "flair")


def test_the_task_refuses_what_it_cannot_mean():
    task = SynthesisTask.of(["t1", "t1ce", "flair"], "t2")
    assert task.primary == "t1" and task.modalities == ("t1", "t1ce", "flair", "t2")
    assert str(task) == "t1+t1ce+flair -> t2" and SynthesisTask.of("flair", "t1") == SynthesisTask(("flair",), "t1")
    for source, target, message in [
        (["t1", "t2"], "t2", r"the target t2 is also a source"),
        (["t1", "dwi"], "t2", r"unknown contrast\(s\) \['dwi'\]"),
        (["t1"], "pd", r"unknown contrast\(s\) \['pd'\]"),
        ([], "t2", "at least one"),
        (["t1", "t1"], "t2", "twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            SynthesisTask.of(source, target)


def test_methods_read_their_sources_and_train_on_sources_and_target():
    method = BrainClustering(source=["flair", "t1"], target="t1ce")
    assert method.inference_modalities == ("flair", "t1") and method.training_modalities == ("flair", "t1", "t1ce")
    assert BrainClustering().training_modalities == ("t1", "t2")  # the paper's task by default
    with pytest.raises(ValueError, match="setting=reference is the authors' T1 -> T2 code"):
        BrainClustering(setting="reference", source=["t1", "flair"])


# -- Pix2Pix ---------------------------------------------------------------------------------------


def four_contrast_subject(shape=(30, 28, 20)) -> Subject:
    """head_subject's T1 and T2, plus a T1CE (T1 doubled) and a FLAIR (T2 + 1000), so that each
    contrast has its own intensity range."""
    base = head_subject(shape=shape)
    t1, t2 = base["t1"], base["t2"]
    brain = t1.data > 0
    volumes = {
        "t1": t1,
        "t1ce": t1.with_data(t1.data * 2),
        "flair": t2.with_data(np.where(brain, t2.data + 1000, 0).astype(np.float32)),
        "t2": t2,
    }
    return Subject("case", volumes, segmentation=base.segmentation)


def test_each_source_is_normalised_on_its_own():
    subject = four_contrast_subject()
    arrays = network_inputs(subject, ("t1", "t1ce", "flair", "t2"))
    brain = subject.brain
    for contrast in ("t1", "t1ce", "flair", "t2"):
        expected = percentile_scale(subject[contrast].data, brain) * 2 - 1
        np.testing.assert_allclose(arrays[contrast], expected, atol=1e-6)
    np.testing.assert_allclose(arrays["t1ce"], arrays["t1"], atol=1e-6)  # a doubled T1 scales to the T1


class Channels(torch.nn.Module):
    """Records the channels it is given; outputs the second one."""

    def forward(self, x):
        self.seen = x.detach().clone()
        return x[:, 1:2]


def test_pix2pix_takes_one_channel_per_source_in_order_and_the_discriminator_one_more():
    method = Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, source=["flair", "t1", "t1ce"], target="t2")
    assert method.build("generator").encoder[0].in_channels == 3
    assert next(method.build("discriminator").parameters()).shape[1] == 4
    subject = four_contrast_subject()
    settings = {"device": "cpu"}
    method = untrained(Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, source=["flair", "t1"], inference=settings))
    method.generator_ = Channels()
    prediction = method.predict(subject)
    arrays, box = network_inputs(subject, ("flair", "t1")), bounding_box(subject.brain, BRAIN_MARGIN)
    np.testing.assert_array_equal(
        method.generator_.seen[0].numpy(), np.stack([arrays["flair"][box], arrays["t1"][box]])
    )
    # The second channel is the T1: the output is the T1 on the unit scale inside the brain.
    brain = subject.brain
    np.testing.assert_allclose(prediction.data[brain], percentile_scale(subject["t1"].data, brain)[brain], atol=1e-6)


def test_a_multi_source_pix2pix_training_step_and_round_trip(tmp_path):
    """The system's losses run on (sources..., target) batches; a saved model predicts the same."""
    torch.manual_seed(0)
    subject = four_contrast_subject(shape=(32, 32, 32))
    method = Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, source=list(BRASYN), inference={"device": "cpu"})
    system = method.system()
    batch = as_batch(network_inputs(subject, method.training_modalities))
    fake = system.generator(system.source_channels(batch))
    terms = system.generator_losses(batch, fake)
    assert fake.shape == (1, 1, 32, 32, 32) and torch.isfinite(terms["total"])
    method.generator_, method.fitted_ = system.generator, True
    loaded = SynthesisMethod.load(method.save(tmp_path / "model"))
    assert loaded.source == list(BRASYN)
    np.testing.assert_array_equal(loaded.predict(subject).data, method.predict(subject).data)


# -- BrainClustering with several sources ----------------------------------------------------------


def test_multisource_rows_are_the_single_source_ones_and_each_combinations_means():
    """Primary values 0.1 (tissue 0) and 0.9 (tissue 1); among the tissue-0 voxels, those at the
    second source's level 1 have a bright target, the others a dark one. The single-source rows
    (context -1) give tissue 0 one value; the combinations give each its own mean."""
    primary = np.array([0.1] * 6 + [0.9] * 4)
    other = np.array([0] * 3 + [1] * 3 + [0] * 4)
    target = np.array([0.2] * 3 + [0.8] * 3 + [0.9] * 4)  # target tissues {0.2} and {0.8, 0.9}
    single = patient_rows(primary, target, macro=2, micro=1, skip_disjoint=True)  # the paper's rows
    rows = multisource_patient_rows(leveled_clustering(primary, 2, 1), single, [other], target, macro=2, micro=1)
    found = sorted(zip(rows.context[:, 0], rows.tissue, rows.key, rows.value, strict=True))
    bright = (3 * 0.8 + 4 * 0.9) / 7  # micro = 1: the bright target tissue is one shade, its mean
    assert found == [
        (-1, 0, pytest.approx(0.1), pytest.approx(0.2)),  # matched as in the paper: tissue 0 <-> {0.2}
        (-1, 1, pytest.approx(0.9), pytest.approx(bright)),
        (0, 0, pytest.approx(0.1), pytest.approx(0.2)),  # combinations: the mean target of their voxels
        (0, 1, pytest.approx(0.9), pytest.approx(0.9)),
        (1, 0, pytest.approx(0.1), pytest.approx(0.8)),
    ]


def test_combination_tables_serve_inside_their_keys_and_fall_back_to_the_longest_prefix():
    rows = TableRows(
        tissue=np.array([0, 1, 0, 0, 0, 1]),
        key=np.array([0.1, 0.8, 0.1, 0.1, 0.3, 0.8]),
        value=np.array([0.5, 0.7, 0.2, 0.6, 0.4, 0.9]),
        context=np.array([[-1, -1], [-1, -1], [0, 0], [1, 1], [1, 0], [0, 0]]),
    )
    tables = build_combination_tables(rows, macro=2, sources=3)
    assert sorted(tables[2]) == [(0, 0, 0), (0, 1, 0), (0, 1, 1), (1, 0, 0)]
    assert sorted(tables[1]) == [(0, 0), (0, 1), (1, 0)]
    np.testing.assert_allclose(tables[1][(0, 1)][0], [0.1, 0.3])  # rows 0.1 -> 0.6 and 0.3 -> 0.4
    np.testing.assert_allclose(tables[0][(0,)][1], [0.5])  # depth 1: the single-source rows only
    combination = np.array([[0, 1, 1], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0, 1, 1]])
    values = np.array([0.1, 0.3, 0.2, 0.1, 0.8, 0.2])
    result, depth = look_up_combinations(tables, combination, values, macro=2)
    # (0,1,0) holds the key 0.3 only: 0.3 is served there, 0.2 by the prefix (0,1) (keys 0.1-0.3);
    # (0,1,1) holds 0.1 only: 0.2 falls back to (0,1) too; (0,0,1) is unseen: (0,0); (1,1,1): tissue 1.
    np.testing.assert_array_equal(depth, [3, 3, 2, 2, 1, 2])
    np.testing.assert_allclose(result, [0.6, 0.4, 0.5, 0.2, 0.7, 0.5])


@pytest.fixture(scope="module")
def brasyn_subjects(tiny_phantom):
    return [tiny_phantom.load(case, (*BRASYN, "t2")) for case in tiny_phantom.cases_in("train")]


@pytest.mark.parametrize("mode", ["train", "search"])
def test_multisource_brainclustering_fits_predicts_and_round_trips(brasyn_subjects, tmp_path, mode):
    method = BrainClustering(mode=mode, w=2, macro=3, micro=6, source=list(BRASYN)).fit(brasyn_subjects)
    query = Subject("q", {c: brasyn_subjects[0][c] for c in BRASYN})
    outputs = method.predict_all(query)
    assert outputs[""].shape == query["t1"].shape and outputs[""].data.dtype == np.float32
    assert np.all(outputs[""].data[~query.brain] == 0) and 0 <= outputs[""].data.min() <= outputs[""].data.max() <= 1
    loaded = SynthesisMethod.load(method.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict(query).data, outputs[""].data)


def test_one_source_is_the_single_source_method(brasyn_subjects):
    """source=[t1] takes the paper's path: same rows and tables as a default BrainClustering."""
    default = BrainClustering(macro=3, micro=6).fit(brasyn_subjects)
    explicit = BrainClustering(macro=3, micro=6, source=["t1"], target="t2").fit(brasyn_subjects)
    np.testing.assert_array_equal(default.tables_.values, explicit.tables_.values)
    np.testing.assert_array_equal(default.predict(brasyn_subjects[0]).data, explicit.predict(brasyn_subjects[0]).data)


# -- baselines -------------------------------------------------------------------------------------


def test_closest_source_copies_the_flair_for_a_t2_and_needs_one():
    subject = four_contrast_subject()
    prediction = ClosestSource(source=list(BRASYN), target="t2").predict(subject)
    np.testing.assert_allclose(prediction.data, percentile_scale(subject["flair"].data, subject.brain))
    assert ClosestSource(source=["t1", "t2"], target="flair").copied == "t2"
    assert ClosestSource(source=["t1"], target="t1ce").copied == "t1"
    with pytest.raises(TaskNotSupportedError, match="ClosestSource copies flair for t2"):
        ClosestSource(source=["t1", "t1ce"], target="t2")
    with pytest.raises(TaskNotSupportedError, match="not among the sources"):
        Complementary(source=["flair"], target="t2")
    with pytest.raises(TaskNotSupportedError, match="one source contrast"):
        IntensityLookup(source=["t1", "flair"])
    inverted = Complementary(source=list(BRASYN)).predict(subject)  # still the inverted T1
    np.testing.assert_allclose(inverted.data, Complementary().predict(subject).data)


def test_predictions_take_the_primary_sources_geometry():
    flair = make_volume(np.pad(np.ones((4, 4, 4), np.float32), 2), spacing=2.0)
    subject = Subject("c", {"flair": flair, "t1": make_volume(flair.data)})
    assert subject.anchor == "flair"
    prediction = ClosestSource(source=["flair", "t1"], target="t2").predict(subject)
    np.testing.assert_array_equal(prediction.affine, flair.affine)


# -- a run -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_multi_source_run_scores_the_target_with_both_baselines(tiny_phantom, tmp_path):
    run_dir = tmp_path / "run"
    result = run(
        "train.py",
        "model=brainclustering",
        "model.macro=3",
        "model.micro=6",
        "source=[t1,t1ce,flair]",
        "target=t2",
        "data=brats",
        f"data.root={tiny_phantom.root}",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == {"source": ["t1", "t1ce", "flair"], "target": "t2"}
    methods = {entry["method"] for entry in summary["summary"]}
    assert {"brainclustering", "complementary", "closest_source", "random", "zeros"} <= methods
    assert "t1+t1ce+flair -> t2" in result.stdout
    saved = json.loads((run_dir / "model" / "method.json").read_text())["hyperparameters"]
    assert saved["source"] == ["t1", "t1ce", "flair"] and saved["target"] == "t2"
