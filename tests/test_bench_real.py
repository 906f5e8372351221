"""bench/real.py's tables from the metrics.csv files of separate jobs (one per fold or seed)."""

import csv

import numpy as np
import pytest

from bench.real import REPORTED, main, predicted_by_all, run_task
from datamodules.dataset import Subject
from datamodules.task import SynthesisTask
from tests.conftest import ball_volume, make_volume

COLUMNS = ("task", "method", "fold", "seed", "case_id", *REPORTED)


def write_metrics(path, rows):
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        for task, method, fold, seed, case_id, error, ssim in rows:
            values = {"pct_mse_brain": error, "ssim_healthy": ssim}
            writer.writerow(
                {"task": task, "method": method, "fold": fold, "seed": seed, "case_id": case_id}
                | {metric: values.get(metric, "") for metric in REPORTED}
            )
    return path


def row_of(output: str, method: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_tables_merge_jobs_average_seeds_and_count_a_repeated_baseline_once(tmp_path, capsys):
    task = "t1+t1ce+flair -> t2"
    seed0 = write_metrics(tmp_path / "seed0.csv", [
        (task, "pix2pix", 0, 0, "a", 0.010, 0.60), (task, "pix2pix", 1, 0, "b", 0.030, 0.50),
        (task, "complementary", 0, "", "a", 0.020, 0.55), (task, "complementary", 1, "", "b", 0.040, 0.52),
    ])  # fmt: skip
    seed1 = write_metrics(tmp_path / "seed1.csv", [
        (task, "pix2pix", 0, 1, "a", 0.026, 0.70), (task, "pix2pix", 1, 1, "b", 0.054, 0.40),
        (task, "complementary", 0, "", "a", 0.020, 0.55), (task, "complementary", 1, "", "b", 0.040, 0.52),
    ])  # fmt: skip
    assert main(["--tables", str(seed0), str(seed1)]) == 0
    output = capsys.readouterr().out
    assert output.startswith("T2 from t1, t1ce, flair")
    header = row_of(output, "method")
    pix2pix = dict(zip(header, row_of(output, "pix2pix"), strict=True))
    complementary = dict(zip(header, row_of(output, "complementary"), strict=True))
    # Case a: means over seeds 0.018 / 0.65, case b: 0.042 / 0.45; their mean and sd over the two cases.
    assert pix2pix["cases"] == "2" and pix2pix["seeds"] == "0,1"
    assert pix2pix["pct_mse_brain"] == "0.030 ± 0.017" and pix2pix["ssim_healthy"] == "0.550 ± 0.141"
    # The seed means over cases are 0.020 and 0.040 (pct_mse_brain): sd 0.014.
    assert pix2pix["seed sd (pct_mse_brain)"] == "0.014"
    assert complementary["cases"] == "2" and complementary["pct_mse_brain"] == "0.030 ± 0.014"
    # Against Complementary on each case's mean over seeds: a wins on both metrics, b on neither.
    assert pix2pix["beats complementary (pct_mse_brain)"] == "1/2"
    assert pix2pix["beats complementary (ssim_healthy)"] == "1/2"


def test_tables_refuse_a_file_that_is_not_a_metrics_csv_naming_it(tmp_path, capsys):
    other = tmp_path / "summary.csv"
    other.write_text("method,case_id\npix2pix,a\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--tables", str(other)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {other}: not a metrics.csv of bench/real.py (no column 'task')"
    garbled = write_metrics(tmp_path / "garbled.csv", [("t1 -> t2", "pix2pix", 0, 0, "a", "lots", 0.5)])
    with pytest.raises(SystemExit) as exit_:
        main(["--tables", str(garbled)])
    assert exit_.value.code == 2 and "garbled.csv: case a: could not convert string to float" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--tables", str(tmp_path / "nowhere.csv")])
    assert exit_.value.code == 2 and "nowhere.csv: cannot be read" in capsys.readouterr().err


def test_an_override_that_does_not_fit_every_method_is_refused_before_any_data_is_read(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--data", str(tmp_path / "absent"), "--sources", "t1", "--methods", "pix2pix", "complementary",
              "--overrides", "model.lambda_ssim=10"])  # fmt: skip
    assert stopped.value.code == 2
    assert "--overrides do not fit complementary" in capsys.readouterr().err


def test_folds_outside_the_five_are_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--data", "absent", "--folds", "5"])
    assert stopped.value.code == 2
    assert "invalid choice: 5" in capsys.readouterr().err


def ball_subject(case_id: str, seed: int) -> Subject:
    """A ball 'brain' whose T2 falls with its T1 (two tissues, a little noise), with a small tumour."""
    rng = np.random.default_rng(seed)
    brain = ball_volume((14, 14, 10)).data > 0
    inner = np.zeros_like(brain)
    inner[5:9, 5:9, 3:7] = True
    t1 = np.where(brain, 300.0 + 300 * inner + rng.normal(0, 5, brain.shape), 0)
    t2 = np.where(brain, 900.0 - 500 * inner + rng.normal(0, 5, brain.shape), 0)
    return Subject(
        case_id,
        {"t1": make_volume(t1.astype(np.float32)), "t2": make_volume(t2.astype(np.float32))},
        segmentation=make_volume((inner * 1).astype(np.int16)),
    )


def test_with_no_fold_a_method_that_learns_predicts_only_the_extra_cases(tmp_path):
    task = SynthesisTask.of(["t1"], "t2")
    development = {f"dev{k}": ball_subject(f"dev{k}", k) for k in range(5)}
    extra = {"other": ball_subject("other", 9)}
    rows, outputs = run_task(task, development, extra, ["intensity_lookup", "complementary"], tmp_path, folds=())
    predicted = {(row["method"], row["case_id"]) for row in rows}
    assert predicted == {("intensity_lookup", "other")} | {("complementary", c) for c in [*development, "other"]}
    assert predicted_by_all(outputs) == ["other"]
