"""The report: collection from run folders, labels, selection on validation, every method and metric."""

import json

import pytest

from common.files import write_rows_csv
from datamodules.task import SynthesisTask
from evaluation.report import (
    best_of_each_family,
    best_on_validation,
    build_report,
    collect,
    write_report,
)
from evaluation.run_folder import method_label
from evaluation.scoring import METRICS, summarise
from evaluation.segmentation_metrics import SEGMENTATION_METRICS


def fake_run(folder, model, errors, roles=("validation", "test"), task=None):
    """A run folder whose methods have the given pct_mse_brain per case (other metrics derived), and
    the task its summary records (none: a run from before tasks were recorded, T1 -> T2)."""
    rows = []
    for method, values in errors.items():
        for role in roles:
            for index, value in enumerate(values):
                row = {"method": method, "role": role, "case_id": f"{role}{index}"}
                row.update({metric: value for metric in METRICS})
                rows.append(row)
    folder.mkdir(parents=True)
    write_rows_csv(rows, folder / "metrics.csv")
    summary = {"model": model, "summary": []} | ({"task": task} if task else {})
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_labels_of_sweep_runs():
    assert method_label("pix2pix", "gamma=0,lambda=100", several_runs=True) == "pix2pix (gamma=0,lambda=100)"
    assert method_label("complementary", "model=complementary", several_runs=True) == "complementary"
    assert method_label("pix2pix", "2026-11-26", several_runs=False) == "pix2pix"


def test_collect_keeps_a_baseline_shared_by_runs_once(tmp_path):
    fake_run(tmp_path / "sweep" / "lambda=0", "pix2pix", {"pix2pix": [0.3, 0.4], "complementary": [0.2, 0.2]})
    fake_run(tmp_path / "sweep" / "lambda=100", "pix2pix", {"pix2pix": [0.1, 0.1], "complementary": [0.2, 0.2]})
    study = collect([tmp_path / "sweep"])
    assert len(study.runs) == 2
    assert sorted(study.methods) == ["complementary", "pix2pix (lambda=0)", "pix2pix (lambda=100)"]
    assert sum(row["method"] == "complementary" for row in study.image_rows) == 4  # 2 roles x 2 cases, once


def test_best_model_is_selected_on_validation_and_reported_on_test(tmp_path):
    fake_run(tmp_path / "a", "x", {"x": [0.10, 0.20]}, roles=("validation",))
    fake_run(tmp_path / "b", "y", {"y": [0.30, 0.30]}, roles=("validation",))
    fake_run(tmp_path / "c", "x", {"x": [0.5, 0.7]}, roles=("test",))  # the same label "x (c)" is a new method
    study = collect([tmp_path])
    choices = {c["metric"]: c for c in best_on_validation(summarise(study.image_rows), METRICS)}
    assert choices["pct_mse_brain"]["best method"] == "x (a)"
    assert choices["pct_mse_brain"]["validation mean"] == "0.1500±0.0707"
    assert choices["psnr_brain"]["best method"] == "y (b)"  # higher is better for PSNR


def test_report_lists_every_method_and_metric(tmp_path):
    fake_run(tmp_path / "runs" / "m1", "bc", {"bc": [0.1, 0.2], "zeros": [0.5, 0.6]})
    fake_run(tmp_path / "runs" / "m2", "p2p", {"p2p": [0.05, 0.1]})
    common = {"role": "test", "reference": "ground_truth"}
    segmentation = [
        {"method": method, "case_id": f"t{i}", **common, **dict.fromkeys(SEGMENTATION_METRICS, value)}
        for method, value in (("real_t2", 0.8), ("zeros", 0.4), ("p2p (m2)", 0.7))
        for i in range(2)
    ]
    write_rows_csv(segmentation, tmp_path / "evaluation" / "segmentation_metrics.csv")
    study = collect([tmp_path / "runs"], [tmp_path / "evaluation"])
    markdown, page = write_report(build_report(study, tmp_path / "report"), tmp_path / "report")
    text = markdown.read_text()
    for name in ("bc #1", "zeros", "p2p #2", "real_t2", *METRICS, "dice_mean", "hd95_mean", "dice_change_mean"):
        assert name in text, name
    assert "| #1 | m1 | bc |" in text and "| #2 | m2 | p2p |" in text  # the runs' legend
    assert (tmp_path / "report" / "figures" / "mse.png").exists()
    assert (tmp_path / "report" / "figures" / "segmentation.png").exists()
    assert "<table>" in page.read_text()


def test_the_report_names_the_task_of_its_runs(tmp_path):
    multi = {"source": ["t1", "t1ce", "flair"], "target": "t2"}
    fake_run(tmp_path / "runs" / "a", "bc", {"bc": [0.1, 0.2]}, task=multi)
    study = collect([tmp_path / "runs"])
    assert study.title == "t1+t1ce+flair -> t2" and study.target == "t2"
    markdown, _ = write_report(build_report(study, tmp_path / "report"), tmp_path / "report")
    assert markdown.read_text().startswith("# MRI contrast synthesis: t1+t1ce+flair → t2 study report")
    fake_run(tmp_path / "runs" / "b", "bc", {"bc": [0.1, 0.3], "complementary": [0.2, 0.2]})  # older: T1 -> T2
    both = collect([tmp_path / "runs"])
    assert both.title == "t1+t1ce+flair -> t2; t1 -> t2"
    assert both.methods == ["bc (a)", "bc (b)", "complementary [t1 -> t2]"]
    assert [both.short(label) for label in both.methods] == [
        "bc #1 [t1+t1ce+flair -> t2]",
        "bc #2 [t1 -> t2]",
        "complementary [t1 -> t2]",
    ]
    markdown, _ = write_report(build_report(both, tmp_path / "both"), tmp_path / "both")
    text = markdown.read_text()
    assert "| #1 | a | bc | t1+t1ce+flair -> t2 |" in text and "| bc #2 [t1 -> t2] | 2 |" in text


def test_one_table_says_which_way_each_metric_is_better():
    import pytest

    from evaluation.directions import lower_is_better

    assert lower_is_better("pct_mse_brain") and lower_is_better("hd95_WT") and lower_is_better("pct_mae_brain")
    assert not any(lower_is_better(m) for m in ("psnr_brain", "ssim_healthy", "dice_mean", "dice_change_mean"))
    assert not lower_is_better("hd95_change_mean")  # real HD95 - method HD95: positive is better
    with pytest.raises(KeyError, match="no direction known for metric 'new_metric'"):
        lower_is_better("new_metric")


def test_the_report_says_what_it_merged_and_how_it_selected(tmp_path):
    """Two sweeps holding a run with the same settings, and a baseline fitted in every run; no
    validation cases, so the selection falls back to the test split and says so."""
    for sweep, error in (("sweep1", 0.1), ("sweep2", 0.3)):
        fake_run(tmp_path / sweep / "lambda=0", "p2p", {"p2p": [error], "zeros": [0.5]}, roles=("test",))
    fake_run(tmp_path / "sweep1" / "lambda=100", "p2p", {"p2p": [0.2], "zeros": [0.5]}, roles=("test",))
    study = collect([tmp_path / "sweep1", tmp_path / "sweep2"])
    assert [study.short(m) for m in study.methods] == ["p2p #1", "zeros", "p2p #2"]
    merged = study.merges()
    assert len(merged) == 2
    assert merged[0].startswith("p2p #1: 2 runs have the same settings (folder lambda=0")
    assert merged[1].startswith("zeros: fitted in 3 runs on the same data")
    text = build_report(study, tmp_path / "report").markdown(tmp_path / "report")
    assert "Merged: p2p #1: 2 runs have the same settings" in text
    assert "no validation cases, so each model is selected on the test split itself" in text
    assert "selected on the validation split" not in text


def test_the_console_table_fits_80_columns_without_cutting_a_label():
    from rich.console import Console

    from evaluation.scoring import summary_table

    label = "pix2pix (gamma=0,generator=unet,lambda=100)"
    summary = summarise(
        [
            {"method": m, "role": "no_ground_truth", "case_id": "c", **dict.fromkeys(METRICS, 0.0123)}
            for m in (label, "zeros")
        ]
    )
    console = Console(width=80, record=True)
    console.print(summary_table(summary, "a sweep", width=80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for metric in ("pct_mse_brain", "pct_mse_tumour", "mse_brain", "psnr_brain", "ssim_healthy", "ssim_tumour"):
        assert metric in text
    lines = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert label.replace(" ", "") in "".join(lines[:3])  # wrapped and folded onto lines, not cut
    assert "…" not in text


@pytest.mark.parametrize("task", [{"source": ["t1", "flair"], "target": "t2"}, "t1+flair -> t2"], ids=["now", "before"])
def test_an_evaluation_folder_is_read_when_given_and_skipped_with_a_note_when_found(tmp_path, task):
    fake_run(tmp_path / "multirun" / "run", "bc", {"bc": [0.1, 0.2], "zeros": [0.5, 0.6]})
    evaluation = fake_run(tmp_path / "multirun" / "evaluation_of_run", "", {"bc": [0.1, 0.2]}, task=task)
    if isinstance(task, dict):  # what evaluate.py writes now; before, only the task as a string told it apart
        summary = json.loads((evaluation / "summary.json").read_text()) | {"kind": "evaluation"}
        (evaluation / "summary.json").write_text(json.dumps(summary))
    found = collect([tmp_path / "multirun"])
    assert [run.path for run in found.runs] == [tmp_path / "multirun" / "run"]
    assert found.skipped == [f"{evaluation}: skipped, an evaluate.py output (it rescores runs' predictions); "
                             "give it on its own to report it"]  # fmt: skip
    given = collect([evaluation])
    assert given.methods == ["bc"] and given.tasks == [SynthesisTask(("t1", "flair"), "t2")] and not given.skipped


def test_the_best_of_each_family_follows_each_metrics_direction():
    summary = [
        {"method": method, "role": "validation", "pct_mse_brain": {"mean": error}, "ssim_healthy": {"mean": ssim}}
        for method, error, ssim in (("bc (a)", 0.02, 0.5), ("bc (b)", 0.03, 0.6), ("complementary", 0.05, 0.4))
    ]
    assert best_of_each_family(summary, "pct_mse_brain") == ["bc (a)", "complementary"]
    assert best_of_each_family(summary, "ssim_healthy") == ["bc (b)", "complementary"]  # higher is better
