"""Score folders of synthetic volumes against a data set, whatever method made them.

    python evaluate.py PREDICTIONS [PREDICTIONS ...] DATA_ROOT [--target t2] [--source t1[,t1ce,...]]
                       [--region brain|union] [--output DIR]
                       [--segmenter RUN | --segmenter-command "CMD {t1} {t1ce} {t2} {flair} {output}"]

Every NIfTI file under PREDICTIONS whose name is a case id of the data set (``<case>.nii.gz``, or
``<case>`` followed by ``_``, ``-`` or ``.`` and anything, such as ``synthesize.py``'s
``<case>-t2w.nii.gz``) is scored against that case's real target contrast (``--target``; by default
the task of the run the folder belongs to, else T2), inside the brain mask of the first source
(``--source``, likewise; T1 by default). The method of a file is its folder
relative to PREDICTIONS (a trailing role folder such as ``test/`` is dropped), so the ``predictions/``
folder of a run scores every method it holds; with several PREDICTIONS folders (the runs of a sweep)
each run's own model is labelled with its run's folder name, as in ``report.py``, and a baseline found
in several runs is scored once. Writes ``metrics.csv`` and ``summary.json`` to --output (default:
PREDICTIONS/evaluation, required with several folders) and prints the summary.

With --segmenter (a ``model=segmenter`` run) or --segmenter-command (an external segmenter), every
case is also segmented with its real and with each synthetic target, and Dice and HD95 per region, and
their changes against the real-target run, go to ``segmentation_metrics.csv`` and
``segmentation_summary.json`` (evaluation protocol, section 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from datamodules.dataset import SynthesisDataset
from datamodules.nifti import InvalidInputError, is_nifti, load_volume, strip_nifti_suffix
from datamodules.progress import track
from datamodules.splits import write_json_atomic
from datamodules.task import CONTRASTS, SynthesisTask
from evaluation.report import label_in_run
from evaluation.scoring import (
    METRICS,
    PRIMARY_METRIC,
    score_prediction,
    summarise,
    summary_table,
    write_rows_csv,
)
from evaluation.segmentation import CommandSegmenter, evaluate_synthetic, prediction_files
from evaluation.segmentation_metrics import SEGMENTATION_TABLE
from pipeline.cli import ConfigError, bad_input_exits
from pipeline.contract import METHOD_FILE, SegmentationMethod, load_from_run

#: What may follow a case id in a prediction's file name.
CASE_SEPARATORS = ("_", "-", ".")


def match_case(stem: str, case_ids: set[str]) -> str | None:
    """The case a file stem names: the id itself, or the longest id followed by a separator."""
    if stem in case_ids:
        return stem
    prefixes = [c for c in case_ids if any(stem.startswith(c + separator) for separator in CASE_SEPARATORS)]
    return max(prefixes, key=len) if prefixes else None


def task_of_run(folders: list[Path]) -> SynthesisTask | None:
    """The task of the run whose ``predictions/`` folder the first PREDICTIONS folder is (or is in)."""
    for folder in (folders[0], *folders[0].parents):
        description = folder / "model" / METHOD_FILE
        if description.is_file():
            hyperparameters = json.loads(description.read_text()).get("hyperparameters", {})
            if "target" in hyperparameters:
                return SynthesisTask.of(hyperparameters["source"], hyperparameters["target"])
            return None
    return None


def image_rows(
    folders: list[Path], dataset: SynthesisDataset, output: Path, region: str, task: SynthesisTask
) -> list[dict]:
    role_of = {case_id: role for role, ids in dataset.split.items() for case_id in ids}
    rows = []
    unscored: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_nifti(p) and output not in p.parents)
        matched = [(p, match_case(strip_nifti_suffix(p.name), set(dataset.cases))) for p in files]
        matched = [(p, c) for p, c in matched if c is not None]
        if not matched:
            example = next(iter(dataset.cases))
            found = ", ".join(p.name for p in files[:3]) + (", ..." if len(files) > 3 else "") or "no NIfTI file"
            raise InvalidInputError(
                folder,
                f"no file named after a case of {dataset.root}: expected <case>.nii.gz or <case> followed by "
                f"one of {' '.join(CASE_SEPARATORS)} (e.g. {example}.nii.gz, {example}-{task.target}.nii.gz); "
                f"found {found}",
            )
        for path, case_id in track(matched, f"Scoring {len(matched)} file(s) in {folder}"):
            case = dataset.cases[case_id]
            subject = dataset.load(case, [task.primary, *([task.target] if case.has(task.target) else [])])
            parts = path.parent.relative_to(folder).parts
            if parts and parts[-1] in dataset.split:
                parts = parts[:-1]
            method = label_in_run("/".join(parts) or folder.name, folder.parent, len(folders) > 1)
            if (method, case_id) in seen:
                continue
            seen.add((method, case_id))
            prediction = load_volume(path)
            if subject.get(task.target) is None:  # the same rule as train.py: listed, counted, n/a scores
                scores = dict.fromkeys(METRICS)
                unscored.add(case_id)
            else:
                scores = score_prediction(prediction, subject, task.target, region)
            rows.append({"method": method, "role": role_of.get(case_id, "unassigned"), "case_id": case_id, **scores})
    if unscored:
        print(
            f"warning: {len(unscored)} case(s) have no real {task.target.upper()} to score against; "
            f"listed with n/a scores: {', '.join(sorted(unscored))}",
            file=sys.stderr,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path, nargs="+")
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--label-convention", default=None)
    parser.add_argument("--split-file", type=Path, default=None)
    parser.add_argument("--target", choices=CONTRASTS, default=None, help="the contrast predicted (default: t2)")
    parser.add_argument("--source", default=None, help="the sources, comma-separated; the first's brain mask is used")
    parser.add_argument("--region", choices=("brain", "union"), default="brain")
    parser.add_argument("--output", type=Path, default=None)
    segmenters = parser.add_mutually_exclusive_group()
    segmenters.add_argument("--segmenter", type=Path, default=None, help="a model=segmenter run directory")
    segmenters.add_argument("--segmenter-command", default=None, help="an external segmenter's command template")
    parser.add_argument("--skip-image-metrics", action="store_true", help="segmentation metrics only")
    args = parser.parse_args(argv)
    if args.output is None and len(args.predictions) > 1:
        parser.error("--output is required with several PREDICTIONS folders")
    output = args.output or args.predictions[0] / "evaluation"
    console = Console(width=None if sys.stdout.isatty() else 160)
    with bad_input_exits():
        from_run = task_of_run(args.predictions) or SynthesisTask()
        try:
            source = args.source.split(",") if args.source else from_run.sources
            task = SynthesisTask.of(source, args.target or from_run.target)
        except ValueError as error:
            raise ConfigError(f"--source/--target: {error}") from None
        dataset = SynthesisDataset(
            args.data_root, args.layout, args.label_convention, args.split_file, write_split=False
        )
        if not args.skip_image_metrics:
            rows = image_rows(args.predictions, dataset, output, args.region, task)
            summary = summarise(rows)
            write_rows_csv(rows, output / "metrics.csv")
            write_json_atomic(
                {"primary_metric": PRIMARY_METRIC, "task": str(task), "summary": summary}, output / "summary.json"
            )
            console.print(summary_table(summary, title=f"{task}: " + ", ".join(map(str, args.predictions))))
        if args.segmenter or args.segmenter_command:
            segmenter = (
                load_from_run(args.segmenter, SegmentationMethod)
                if args.segmenter
                else CommandSegmenter(args.segmenter_command)
            )
            files = prediction_files(args.predictions, dataset)
            rows = evaluate_synthetic(segmenter, dataset, files, task.target)
            summary = summarise(rows)
            write_rows_csv(rows, output / "segmentation_metrics.csv")
            write_json_atomic({"task": str(task), "summary": summary}, output / "segmentation_summary.json")
            title = f"segmentation with each {task.target} (real and synthetic)"
            console.print(summary_table(summary, title=title, metrics=SEGMENTATION_TABLE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
