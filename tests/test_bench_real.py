"""bench/real.py's tables from the metrics.csv files of separate jobs (one per fold or seed)."""

import csv

import pytest

from bench.real import REPORTED, main

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
