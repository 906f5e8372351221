"""Segmentation-based evaluation (evaluation protocol, section 2): is the synthetic contrast useful?

Every case is segmented with its real target contrast (T2 in the paper) and with each method's
synthetic one (the other three contrasts real both times), by a trained segmenter
(``python train.py model=segmenter``) or by an external command. Each segmentation is compared with
the ground truth, or, for a case without one, with the segmentation made with the real contrast. Per
case, the change against the real-contrast run is recorded as the paper's Table 2 does: method Dice -
real Dice, and real HD95 - method HD95 (positive = better).
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from common.checks import check_choice
from common.contrasts import CONTRASTS
from common.errors import InvalidInputError
from common.progress import track
from datamodules.dataset import Subject, SynthesisDataset
from datamodules.nifti import Volume, check_same_geometry, load_volume, save_volume
from evaluation.run_folder import RunFolder, label_in_run
from evaluation.segmentation_metrics import REGION_NAMES, score_segmentation


def real_label(target: str) -> str:
    """The method name of the segmentation made with the real target contrast (``real_t2``)."""
    return f"real_{target}"


class Segmenter(Protocol):
    """Anything that turns a subject with the four contrasts into a label map."""

    def predict(self, subject: Subject) -> Volume: ...


class CommandSegmenter:
    """An external segmenter (an nnU-Net or BraTS container, ...) run once per case.

    ``template`` is a shell-style command with the placeholders ``{t1}``, ``{t1ce}``, ``{t2}``,
    ``{flair}`` (input NIfTI files, written for the call) and ``{output}`` (the label map the command
    must write, in the data set's label convention), e.g.
    ``docker run --rm -v /tmp:/tmp brats-seg {t1} {t1ce} {t2} {flair} {output}``.
    """

    def __init__(self, template: str) -> None:
        missing = [name for name in (*CONTRASTS, "output") if "{" + name + "}" not in template]
        if missing:
            raise ValueError(f"segmenter command lacks the placeholders {missing}: {template!r}")
        self.template = template

    def predict(self, subject: Subject) -> Volume:
        with tempfile.TemporaryDirectory(prefix="segment-") as folder:
            files = {m: save_volume(subject[m], Path(folder) / f"{m}.nii.gz") for m in CONTRASTS}
            output = Path(folder) / "segmentation.nii.gz"
            command = [part.format(**files, output=output) for part in shlex.split(self.template)]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not output.exists():
                raise RuntimeError(
                    f"segmenter command failed for {subject.case_id} (exit {result.returncode}): "
                    f"{' '.join(command)}\n{result.stderr[-2000:]}"
                )
            labels = load_volume(output, label_map=True)
            return subject.volume_like(labels.data.astype("int16"))


def changes(scores: Mapping[str, float], real: Mapping[str, float]) -> dict[str, float]:
    """The paper's Table 2 entries: Dice gained and HD95 reduced against the real-contrast run."""
    result = {}
    for region in (*REGION_NAMES, "mean"):
        result[f"dice_change_{region}"] = scores[f"dice_{region}"] - real[f"dice_{region}"]
        result[f"hd95_change_{region}"] = real[f"hd95_{region}"] - scores[f"hd95_{region}"]
    return result


def evaluate_synthetic(
    segmenter: Segmenter,
    dataset: SynthesisDataset,
    predictions: Mapping[str, Mapping[str, Path]],
    target: str = "t2",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Segment every case that has a synthetic ``target``, with the real and with each synthetic one.

    Args:
        segmenter: a trained segmenter (or :class:`CommandSegmenter`).
        dataset: the data set the predictions were made for (its four contrasts and segmentations).
        predictions: method -> case id -> synthetic file.
        target: the contrast the predictions replace.

    Returns:
        One row per (method, case), the real contrast included as method ``real_<target>`` for cases
        with a ground truth: role, case id, ``reference`` (``ground_truth`` or ``real_<target>``),
        Dice and HD95 per region and their means, and (synthetic contrasts) the changes against the
        real-contrast run.
    """
    check_choice("target", target, CONTRASTS)
    real_name = real_label(target)
    role_of = {case_id: role for role, ids in dataset.split.items() for case_id in ids}
    case_ids = sorted({case_id for files in predictions.values() for case_id in files})
    rows: list[dict[str, Any]] = []
    cases = track(case_ids, f"Segmenting {len(case_ids)} case(s)") if progress else case_ids
    # The target last, so that the brain mask (the anchor's) never comes from a replaced contrast.
    order = [*(m for m in CONTRASTS if m != target), target]
    for case_id in cases:
        subject = dataset.load(dataset.cases[case_id], order)
        real = segmenter.predict(subject)
        ground_truth = subject.segmentation
        reference = (ground_truth or real).data
        common = {"role": role_of.get(case_id, "unassigned"), "case_id": case_id}
        common["reference"] = "ground_truth" if ground_truth is not None else real_name
        spacing = subject.reference.spacing
        real_scores = score_segmentation(real.data, reference, dataset.labels, spacing)
        if ground_truth is not None:
            rows.append({"method": real_name, **common, **real_scores})
        for method, files in predictions.items():
            if case_id not in files:
                continue
            synthetic = load_volume(files[case_id])
            check_same_geometry({subject.anchor: subject.reference, f"synthetic {target}": synthetic}, case_id)
            segmentation = segmenter.predict(subject.replace(target, synthetic))
            scores = score_segmentation(segmentation.data, reference, dataset.labels, spacing)
            rows.append({"method": method, **common, **scores, **changes(scores, real_scores)})
    return rows


def prediction_files(folders: Sequence[Path], dataset: SynthesisDataset) -> dict[str, dict[str, Path]]:
    """method -> case id -> file, from run ``predictions/`` folders (``<method>/<role>/<case>.nii.gz``).
    Methods are labelled as in the report (:func:`evaluation.report.label_in_run`); a baseline
    found in several runs is taken once."""
    files: dict[str, dict[str, Path]] = {}
    for folder in folders:
        if not folder.is_dir():
            raise InvalidInputError(folder, "predictions folder not found")
        for method_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
            method = label_in_run(method_folder.name, RunFolder(folder.parent), len(folders) > 1)
            for path in sorted(method_folder.glob("*/*.nii*")):
                case_id = path.name.split(".nii")[0]
                if case_id in dataset.cases:
                    files.setdefault(method, {}).setdefault(case_id, path)
    return files
