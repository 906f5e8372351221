"""T2 from T1 alone against T2 from T1, T1CE and FLAIR, for BrainClustering and the CPU Pix2Pix, next
to Complementary and ClosestSource: on the phantom's test role, on the two real cases (trained on one,
predicting the other, both ways), and trained on the phantom predicting each real case. Prints the
README's table. Not a test; every number comes from real ``train.py``, ``synthesize.py`` and
``evaluate.py`` commands.

    python bench/multisource.py [--real ../shared/data/real] [--output reproduce/multisource]
                                [--reuse-phantom-t1 reproduce]

The phantom runs with source [t1] are the README's quick start and CPU Pix2Pix; ``--reuse-phantom-t1``
takes them from ``bench/reproduce.py``'s output instead of training them again. Pix2Pix on one real
case is the CPU Pix2Pix shortened to ``--real-iterations`` iterations (default 300 of its 1000, about
4 minutes a run on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from evaluation.run_folder import RunFolder

REPOSITORY = Path(__file__).resolve().parents[1]
SOURCES = {"t1": "[t1]", "t1+t1ce+flair": "[t1,t1ce,flair]"}
METHODS = {"brainclustering": ("model=brainclustering",), "pix2pix": ("+experiment=pix2pix_cpu",)}
COLUMNS = ("pct_mse_brain", "pct_mse_tumour", "ssim_healthy")


def command(*arguments: str, log: Path) -> None:
    started = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        result = subprocess.run([sys.executable, *arguments], cwd=REPOSITORY, stdout=output, stderr=subprocess.STDOUT)
    print(f"  {' '.join(arguments)}  [{time.perf_counter() - started:.0f} s, exit {result.returncode}]", flush=True)
    if result.returncode != 0:
        raise SystemExit(f"failed; see {log}")


def train(run_dir: Path, *arguments: str) -> Path:
    if not RunFolder(run_dir).finished:
        command("train.py", *arguments, "logger=none", f"hydra.run.dir={run_dir}", log=run_dir.with_suffix(".log"))
    return run_dir


def means(csv_file: Path, role: str | None = None) -> dict[str, dict[str, float | None]]:
    """method -> metric -> mean over the rows (of ``role``)."""
    values: dict[str, dict[str, list[float]]] = {}
    with csv_file.open() as handle:
        for row in csv.DictReader(handle):
            if role is not None and row["role"] != role:
                continue
            for column in COLUMNS:
                if row.get(column) not in ("", None):
                    values.setdefault(row["method"], {}).setdefault(column, []).append(float(row[column]))
    return {m: {c: (sum(v) / len(v) if v else None) for c, v in cols.items()} for m, cols in values.items()}


def cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=REPOSITORY.parent / "shared" / "data" / "real")
    parser.add_argument("--output", type=Path, default=REPOSITORY / "reproduce" / "multisource")
    parser.add_argument("--reuse-phantom-t1", type=Path, default=None)
    parser.add_argument("--real-iterations", type=int, default=300)
    parser.add_argument("--skip-pix2pix", action="store_true")
    args = parser.parse_args()
    out = args.output.resolve()
    methods = {m: a for m, a in METHODS.items() if not (args.skip_pix2pix and m == "pix2pix")}
    cases = sorted(p.name for p in args.real.iterdir() if p.is_dir())
    real_root = out / "real_data"  # the real cases, linked, so that split files can name them
    real_root.mkdir(parents=True, exist_ok=True)
    for case in cases:
        if not (real_root / case).exists():
            (real_root / case).symlink_to((args.real / case).resolve())
    rows: list[tuple[str, str, str, dict[str, dict[str, float | None]]]] = []  # (setting, sources, method, means)

    print("phantom", flush=True)
    phantom_runs: dict[tuple[str, str], Path] = {}
    for method, arguments in methods.items():
        for sources, value in SOURCES.items():
            reused = {"brainclustering": "quick_start", "pix2pix": "pix2pix_cpu"}[method]
            if sources == "t1" and args.reuse_phantom_t1 and RunFolder(args.reuse_phantom_t1 / reused).finished:
                run_dir = args.reuse_phantom_t1.resolve() / reused
            else:
                run_dir = train(out / f"phantom_{method}_{sources}", *arguments, f"source={value}")
            phantom_runs[method, sources] = run_dir
            rows.append(("phantom test", sources, method, means(RunFolder(run_dir).metrics_file, "test")))

    print("real: train on one case, predict the other", flush=True)
    for train_case in cases:
        (test_case,) = [c for c in cases if c != train_case]
        split = out / f"split_train_{train_case}.json"
        split.write_text(json.dumps({"seed": None, "roles": {"train": [train_case], "test": [test_case]}}))
        for method, arguments in methods.items():
            extra = ()
            if method == "pix2pix":
                half = args.real_iterations // 2
                extra = (f"model.constant_iterations={half}", f"model.decay_iterations={args.real_iterations - half}")
            for sources, value in SOURCES.items():
                run_dir = train(
                    out / f"real_{train_case}_{method}_{sources}",
                    *arguments,
                    *extra,
                    f"source={value}",
                    "data=brats",
                    f"data.root={real_root}",
                    f"data.split_file={split}",
                )
                scores = means(RunFolder(run_dir).metrics_file, "test")
                rows.append((f"{train_case} -> {test_case}", sources, method, scores))

    print("phantom-trained, predicting each real case", flush=True)
    for (method, sources), run_dir in phantom_runs.items():
        predictions = out / f"phantom_to_real_{method}_{sources}"
        if not (predictions / "evaluation" / "metrics.csv").exists():
            command(
                "synthesize.py", str(run_dir), str(real_root), str(predictions), log=predictions.with_suffix(".log")
            )
            command(
                "evaluate.py",
                str(predictions),
                str(real_root),
                "--source",
                sources.replace("+", ","),
                log=predictions.with_suffix(".evaluate.log"),
            )
        with (predictions / "evaluation" / "metrics.csv").open() as handle:
            for row in csv.DictReader(handle):
                scores = {c: float(row[c]) if row[c] else None for c in COLUMNS}
                rows.append((f"phantom -> {row['case_id']}", sources, method, {predictions.name: scores}))

    print("\n| data | sources | method | " + " | ".join(COLUMNS) + " |")
    print("| --- | --- | --- |" + " --- |" * len(COLUMNS))
    printed: set[tuple[str, str, str]] = set()
    for setting, sources, method, found in rows:
        for name, scores in found.items():
            label = method if name in (method, f"phantom_to_real_{method}_{sources}") else name
            if label not in (method, "complementary", "closest_source") or (setting, sources, label) in printed:
                continue  # each baseline once per data and sources; Random, Zeros and variants left out
            printed.add((setting, sources, label))
            print(f"| {setting} | {sources} | {label} | " + " | ".join(cell(scores.get(c)) for c in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
