"""Scoring folders of predictions against a data set's real contrast, one process per core.

A prediction is any NIfTI file under a folder named after a case: ``<case>.nii.gz`` or ``<case>``
followed by one of :data:`CASE_SEPARATORS` (``<case>-t2w.nii.gz``, ``<case>_t2syn.nii.gz``). In a
run's ``predictions/`` folder, the method is the path below the folder (``<method>/<role>/``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from common.cores import usable_cores
from common.errors import InvalidInputError
from common.progress import track
from datamodules.dataset import SynthesisDataset
from datamodules.layouts import Case
from datamodules.nifti import is_nifti, load_volume, strip_nifti_suffix
from datamodules.task import SynthesisTask
from evaluation.run_folder import RunFolder, label_in_run
from evaluation.scoring import METRICS, score_prediction

#: What may follow a case id in a prediction's file name.
CASE_SEPARATORS = ("_", "-", ".")


def match_case(stem: str, case_ids: set[str]) -> str | None:
    """The case a file stem names: the id itself, or the longest id followed by a separator."""
    if stem in case_ids:
        return stem
    prefixes = [c for c in case_ids if any(stem.startswith(c + separator) for separator in CASE_SEPARATORS)]
    return max(prefixes, key=len) if prefixes else None


@dataclass(frozen=True)
class Prediction:
    """A prediction file to score: its method's label, role and case."""

    path: Path
    method: str
    role: str
    case: Case


def find_predictions(
    folders: Sequence[Path], dataset: SynthesisDataset, target: str, skip: Path | None = None
) -> list[Prediction]:
    """Every prediction file of the ``target`` contrast under ``folders`` (not under ``skip``), each
    (method, case) once.

    Raises:
        InvalidInputError: a folder holds no file named after a case of the data set.
    """
    role_of = {case_id: role for role, ids in dataset.split.items() for case_id in ids}
    found: dict[tuple[str, str], Prediction] = {}
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_nifti(p) and skip not in p.parents)
        matched = [(p, match_case(strip_nifti_suffix(p.name), set(dataset.cases))) for p in files]
        matched = [(p, c) for p, c in matched if c is not None]
        if not matched:
            example = next(iter(dataset.cases))
            listed = ", ".join(p.name for p in files[:3]) + (", ..." if len(files) > 3 else "") or "no NIfTI file"
            raise InvalidInputError(
                folder,
                f"no file named after a case of {dataset.root}: expected <case>.nii.gz or <case> followed by "
                f"one of {' '.join(CASE_SEPARATORS)} (e.g. {example}.nii.gz, {example}-{target}.nii.gz); "
                f"found {listed}",
            )
        for path, case_id in matched:
            parts = path.parent.relative_to(folder).parts
            if parts and parts[-1] in dataset.split:
                parts = parts[:-1]
            method = label_in_run("/".join(parts) or folder.name, RunFolder(folder.parent), len(folders) > 1)
            found.setdefault(
                (method, case_id), Prediction(path, method, role_of.get(case_id, "unassigned"), dataset.cases[case_id])
            )
    return list(found.values())


def score_file(
    prediction: Prediction, dataset: SynthesisDataset, task: SynthesisTask, region: str
) -> dict[str, Any] | None:
    """One prediction's row of image metrics; None when the case has no real target to score against."""
    case = prediction.case
    if not case.has(task.target):
        return None
    subject = dataset.load(case, [task.primary, task.target])
    return score_prediction(load_volume(prediction.path), subject, task.target, region)


def score_folders(
    folders: Sequence[Path],
    dataset: SynthesisDataset,
    task: SynthesisTask,
    region: str = "brain",
    skip: Path | None = None,
    workers: int | None = None,
) -> list[dict[str, Any]]:
    """Per-case rows (method, role, case_id, every image metric) of the predictions under ``folders``
    (:func:`find_predictions`), scored against the data set's ``task.target`` on the brain of
    ``task.primary``, a process per core (``workers``). A case without the target is listed with
    n/a scores and a warning, as ``train.py`` does."""
    predictions = find_predictions(folders, dataset, task.target, skip)
    workers = min(workers or usable_cores(), max(len(predictions), 1))
    arguments = ([dataset] * len(predictions), [task] * len(predictions), [region] * len(predictions))
    description = f"Scoring {len(predictions)} file(s) in {', '.join(map(str, folders))}"
    if workers > 1:  # spawned: the parent may hold threads (torch, readers) that a fork would copy
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            scores = list(track(pool.map(score_file, predictions, *arguments), description, total=len(predictions)))
    else:
        scores = list(track(map(score_file, predictions, *arguments), description, total=len(predictions)))
    unscored = sorted({p.case.case_id for p, s in zip(predictions, scores, strict=True) if s is None})
    if unscored:
        print(
            f"warning: {len(unscored)} case(s) have no real {task.target.upper()} to score against; "
            f"listed with n/a scores: {', '.join(unscored)}",
            file=sys.stderr,
        )
    rows = []
    for prediction, row in zip(predictions, scores, strict=True):
        identity = {"method": prediction.method, "role": prediction.role, "case_id": prediction.case.case_id}
        rows.append(identity | (row if row is not None else dict.fromkeys(METRICS)))
    return rows
