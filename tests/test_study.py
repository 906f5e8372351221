"""A miniature of the whole study, as a user runs it: models and baselines, the segmenter, the
segmentation-based evaluation and the report; and a finished run is skipped when asked."""

import csv
import json

import pytest

from evaluation.scoring import METRICS
from tests.conftest import TINY_PIX2PIX, TINY_SHAPE, run


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from datamodules.phantom import generate_phantom

    return generate_phantom(tmp_path_factory.mktemp("data"), n_subjects=8, shape=TINY_SHAPE, seed=4, workers=1)


@pytest.mark.slow
def test_miniature_study_report_has_every_method_and_metric(data_root, tmp_path):
    data = ("data=brats", f"data.root={data_root}", "logger=none")
    bc, p2p, segmenter = tmp_path / "bc", tmp_path / "p2p", tmp_path / "segmenter"
    run("train.py", *data, "model=brainclustering", "model.micro=5", f"hydra.run.dir={bc}")
    run("train.py", *data, *TINY_PIX2PIX, "trainer=cpu", "model.constant_iterations=2", "model.decay_iterations=1",
        f"hydra.run.dir={p2p}")  # fmt: skip
    run("train.py", *data, "model=segmenter", "trainer=cpu", "model.network.base_filters=4", "model.iterations=3",
        "model.data.patch_size=[32,32,32]", "model.data.num_workers=0", f"hydra.run.dir={segmenter}")  # fmt: skip
    summary = json.loads((segmenter / "summary.json").read_text())
    split = json.loads((segmenter / "split.json").read_text())["roles"]
    predicted = {case for role, cases in split.items() if role != "train" for case in cases}
    rows = list(csv.DictReader((segmenter / "metrics.csv").open()))
    assert summary["model"] == "segmenter" and {row["case_id"] for row in rows} == predicted
    dice = [float(row["dice_mean"]) for row in rows if row["dice_mean"]]
    assert dice and all(0 <= value <= 1 for value in dice)  # scored against the phantom's segmentations

    evaluation = tmp_path / "evaluation"
    run("evaluate.py", bc / "predictions", p2p / "predictions", data_root, "--segmenter", segmenter,
        "--output", evaluation)  # fmt: skip
    assert (evaluation / "segmentation_metrics.csv").exists()

    report = tmp_path / "report"
    run("report.py", bc, p2p, "--segmentation", evaluation, "--data", data_root, "--output", report)
    text = (report / "report.md").read_text()
    methods = ("brainclustering #1", "brainclustering_unfiltered #1", "pix2pix #2", "complementary", "random",
               "zeros", "real_t2")  # fmt: skip
    assert "| #1 | bc | brainclustering |" in text and "| #2 | p2p | pix2pix |" in text  # the runs' legend
    segmentation_table = text[text.index("## Segmentation with each T2") :]
    assert "| pix2pix #2 |" in segmentation_table  # evaluate.py's labels meet the report's
    for name in (*methods, *METRICS, "dice_WT", "hd95_mean", "dice_change_mean"):
        assert name in text, name
    for figure in ("mse.png", "segmentation.png", "gallery.png"):
        assert (report / "figures" / figure).exists(), figure
    assert "Best model per metric" in text

    again = run("train.py", *data, "model=brainclustering", "model.micro=5", "skip_finished=true",
                f"hydra.run.dir={bc}")  # fmt: skip
    assert "skipped" in again.stdout
