"""Rerun the README's CPU-sized results and print their tables in the README's format, so that a
maintainer can diff them against the README. Not a test; each run is a real ``train.py`` command.

    python bench/reproduce.py                      # everything (about 30 minutes on 2 cores)
    python bench/reproduce.py --only quick_start   # one of: quick_start, pix2pix_cpu, small_study

Runs go to ``--output`` (default ``reproduce/``), one folder per result, rerun from scratch each time,
with each command's output in ``<result>.log`` beside it.
Each table is printed under the command that made it, the commit and the machine.

The results on real scans need their data and are rerun by ``bench/real.py`` (its ``--seeds`` for
Pix2Pix's mean over seeds; docs/pix2pix.md and docs/phantom.md give each table's command).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.cores import usable_cores
from evaluation.run_folder import RunFolder

REPOSITORY = Path(__file__).resolve().parents[1]
ROLES = ("test", "no_ground_truth", "validation")
ROLE_NAMES = {"test": "test", "no_ground_truth": "no ground truth", "validation": "validation"}
IMAGE_COLUMNS = ("pct_mse_brain", "pct_mse_tumour", "ssim_healthy")
STUDY_COLUMNS = ("pct_mse_brain", "pct_mse_tumour", "mse_brain", "ssim_healthy")

#: name -> (train.py arguments, whether it is a sweep)
RESULTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "quick_start": (("model=brainclustering",), False),
    "pix2pix_cpu": (("+experiment=pix2pix_cpu",), False),
    "small_study/baselines": (("+experiment=small_baselines",), True),
    "small_study/brainclustering": (("+experiment=small_brainclustering",), True),
}
GROUPS = {
    "quick_start": ["quick_start"],
    "pix2pix_cpu": ["pix2pix_cpu"],
    "small_study": [n for n in RESULTS if "/" in n],
}


def commit() -> str:
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=REPOSITORY, capture_output=True, text=True).stdout.strip()

    dirty = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{git('rev-parse', '--short', 'HEAD')}{dirty}"


def machine() -> str:
    import torch

    cores = usable_cores()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{cores} CPU cores ({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average before the run {load}"
    )


def command_line(name: str) -> list[str]:
    """The result's command as a user types it (without the output folder)."""
    arguments, multirun = RESULTS[name]
    return ["python", "train.py", *(["-m"] if multirun else []), *arguments]


def run(name: str, output: Path) -> float:
    """Run one result's command from scratch into ``output/name``; returns its wall time."""
    folder = output / name
    shutil.rmtree(folder, ignore_errors=True)
    location = f"hydra.sweep.dir={folder}" if RESULTS[name][1] else f"hydra.run.dir={folder}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = output / f"{name.replace('/', '_')}.log"
    start = time.perf_counter()
    with log.open("w") as stream:  # the run's own output; this script prints only the tables
        completed = subprocess.run(
            [sys.executable, *command_line(name)[1:], location], cwd=REPOSITORY, stdout=stream, stderr=stream
        )
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command_line(name))} failed (status {completed.returncode}); see {log}")
    return time.perf_counter() - start


def mean_sd(value: dict[str, Any] | None) -> str:
    if value is None or value["mean"] is None:
        return "n/a"
    if value["sd"] is None:
        return f"{value['mean']:.4f}"
    return f"{value['mean']:.4f} ± {value['sd']:.4f}"


def summaries(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Run label -> its summary entries, for a run folder or a sweep folder of run folders."""
    if RunFolder(folder).finished:
        return {"": RunFolder(folder).read_summary()["summary"]}
    jobs = [RunFolder(job) for job in sorted(folder.iterdir())]
    return {job.name: job.read_summary()["summary"] for job in jobs if job.finished}


def roles_table(entries: list[dict[str, Any]], primary: str) -> list[str]:
    """The README's per-role table: each role, the primary method first, then the baselines."""
    lines = [
        "| role | method | " + " | ".join(f"`{c}`" for c in IMAGE_COLUMNS) + " |",
        "| --- | --- |" + " --- |" * len(IMAGE_COLUMNS),
    ]
    for role in ROLES:
        in_role = [e for e in entries if e["role"] == role]
        in_role.sort(key=lambda e: (e["method"] != primary, e["method"]))
        for index, entry in enumerate(in_role):
            label = f"{ROLE_NAMES[role]} ({entry['cases']})" if index == 0 else ""
            cells = [mean_sd(entry.get(column)) for column in IMAGE_COLUMNS]
            lines.append(f"| {label} | {entry['method']} | " + " | ".join(cells) + " |")
    return lines


def study_table(runs: dict[str, list[dict[str, Any]]], role: str = "test") -> list[str]:
    """One row per method of each job of a sweep, on one role."""
    lines = [
        "| job | method | " + " | ".join(f"{role} `{c}`" for c in STUDY_COLUMNS) + " |",
        "| --- | --- |" + " --- |" * len(STUDY_COLUMNS),
    ]
    for job, entries in runs.items():
        for entry in entries:
            if entry["role"] == role:
                cells = [mean_sd(entry.get(column)) for column in STUDY_COLUMNS]
                lines.append(f"| {job} | {entry['method']} | " + " | ".join(cells) + " |")
    return lines


def report(name: str, output: Path, seconds: float | None, revision: str, host: str) -> str:
    runs = summaries(output / name)
    took = "" if seconds is None else f"; {seconds / 60:.1f} min"
    header = [f"### {name}", "", f"`{' '.join(command_line(name))}` — commit {revision}; {host}{took}.", ""]
    if RESULTS[name][1]:
        body = study_table(runs)
    else:
        primary = "pix2pix" if name == "pix2pix_cpu" else "brainclustering"
        body = roles_table(runs[""], primary)
    return "\n".join(header + body) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(GROUPS), action="append", help="rerun only these (repeatable)")
    parser.add_argument("--output", type=Path, default=REPOSITORY / "reproduce")
    parser.add_argument("--report-only", action="store_true", help="print the tables of runs already in --output")
    args = parser.parse_args(argv)
    names = [name for group in (args.only or GROUPS) for name in GROUPS[group]]
    revision, host = commit(), machine()
    tables = []
    for name in names:
        seconds = None if args.report_only else run(name, args.output)
        tables.append(report(name, args.output, seconds, revision, host))
    print("\n".join(tables))


if __name__ == "__main__":
    main()
