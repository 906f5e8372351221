"""A run's folder: the one place that names what ``train.py`` writes into it, and reads and writes it.

Layout::

    <run>/.hydra/config.yaml          resolved configuration (Hydra)
    <run>/split.json                  the split used
    <run>/model/                      the fitted method (method.json, state.npz)
    <run>/baselines/<name>/           each baseline, fitted the same way
    <run>/predictions/<method>/<role>/<case>.nii.gz
    <run>/metrics.csv                 one row per method, role and case
    <run>/summary.json                mean, sd and n of every metric per method and role; its
                                      presence means the run finished
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.files import read_rows_csv, write_json_atomic, write_rows_csv
from datamodules.task import SynthesisTask

SUMMARY, METRICS_CSV, SPLIT, MODEL, BASELINES, PREDICTIONS = (
    "summary.json",
    "metrics.csv",
    "split.json",
    "model",
    "baselines",
    "predictions",
)
#: ``summary.json``'s ``kind`` in a folder that ``evaluate.py`` wrote (a run's has none).
EVALUATION = "evaluation"
#: What a run writes after fitting; a rerun into the same folder replaces all of it, so that no
#: prediction or score of the earlier run stays beside the new ones. ``model/`` stays: its
#: checkpoints are what an interrupted run resumes from.
RESULTS = (PREDICTIONS, BASELINES, METRICS_CSV, SUMMARY)


@dataclass(frozen=True)
class RunFolder:
    """The folder of one run (see the module docstring)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_CSV

    @property
    def split_file(self) -> Path:
        return self.path / SPLIT

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    def method_folder(self, name: str, primary: bool) -> Path:
        """Where a fitted method is saved: ``model/`` for the run's own, ``baselines/<name>`` else."""
        return self.model if primary else self.path / BASELINES / name

    def prediction(self, method: str, role: str, case_id: str) -> Path:
        return self.predictions / method / role / f"{case_id}.nii.gz"

    @property
    def finished(self) -> bool:
        return self.summary_file.exists()

    def clear_results(self) -> list[str]:
        """Remove an earlier run's :data:`RESULTS`; returns the names removed."""
        removed = []
        for name in RESULTS:
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(name)
        return removed

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary_file.read_text())

    def write_summary(self, record: dict[str, Any]) -> None:
        write_json_atomic(record, self.summary_file)

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_rows_csv(self.metrics_file)

    def write_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        write_rows_csv(rows, self.metrics_file)

    @property
    def model_name(self) -> str:
        """The run's own model (its ``summary.json`` records it), or "" if unknown. Read once per
        process: labelling a sweep's rows asks for it once per row."""
        return recorded_model(self.summary_file)

    @property
    def task(self) -> SynthesisTask:
        """The task the run's summary records (runs made before tasks were recorded did T1 -> T2;
        evaluations made before the task was a mapping wrote ``t1+t1ce -> t2``)."""
        task = self.read_summary().get("task") if self.finished else None
        if isinstance(task, str):
            sources, target = task.split(" -> ")
            return SynthesisTask.of(sources.split("+"), target)
        return SynthesisTask.of(task["source"], task["target"]) if task else SynthesisTask()

    @property
    def is_evaluation(self) -> bool:
        """Whether ``evaluate.py`` wrote the folder: it scores predictions that belong to runs."""
        summary = self.read_summary() if self.finished else {}
        return summary.get("kind") == EVALUATION or isinstance(summary.get("task"), str)

    @staticmethod
    def holding(path: Path) -> RunFolder | None:
        """The finished run whose ``predictions/`` ``path`` is, or lies in; None if none."""
        for folder in (path, *path.parents):
            if folder.name == PREDICTIONS and (folder.parent / SUMMARY).exists():
                return RunFolder(folder.parent)
        return None


@functools.cache
def recorded_model(summary_file: Path) -> str:
    return json.loads(summary_file.read_text()).get("model", "") if summary_file.exists() else ""


def find_runs(folders: Sequence[Path], skipped: list[str] | None = None) -> list[RunFolder]:
    """The finished runs (holding ``summary.json`` and ``metrics.csv``) at or under the given folders,
    each once. An ``evaluate.py`` output is read when it is given itself; found under a given folder,
    it is left out (its predictions belong to runs that are likely listed too), and a sentence saying
    so goes to ``skipped``."""
    runs = []
    for folder in folders:
        if (folder / SUMMARY).exists() and (folder / METRICS_CSV).exists():
            runs.append(RunFolder(folder))
            continue
        for summary in sorted(folder.rglob(SUMMARY)):
            run = RunFolder(summary.parent)
            if not run.metrics_file.exists():
                continue
            if run.is_evaluation:
                if skipped is not None:
                    skipped.append(
                        f"{run.path}: skipped, an evaluate.py output (it rescores runs' predictions); "
                        "give it on its own to report it"
                    )
                continue
            runs.append(run)
    return list(dict.fromkeys(runs))


# -- labels of a run's methods in a report over runs ----------------------------------------------


def method_label(method: str, run_name: str, several_runs: bool) -> str:
    if not several_runs or run_name == f"model={method}":
        return method
    return f"{method} ({run_name})"


def label_in_run(method: str, run: RunFolder, several_runs: bool) -> str:
    """A method's label in a report over runs: the run's own model (and its extra outputs such as
    ``_unfiltered``) carries the run's folder name; baselines fitted inside a run do not."""
    model = run.model_name
    own = not model or method == model or method.startswith(f"{model}_")
    return method_label(method, run.name, several_runs and own)
