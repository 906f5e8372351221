"""Score folders of synthetic T2 files against a data set, whatever method made them.

    python evaluate.py PREDICTIONS [PREDICTIONS ...] DATA_ROOT [--region brain|union] [--output DIR]
                       [--segmenter RUN | --segmenter-command "CMD {t1} {t1ce} {t2} {flair} {output}"]

Every NIfTI file under PREDICTIONS whose name is a case id of the data set (``<case>.nii.gz``, or
``<case>_<anything>.nii.gz``) is scored against that case's real T2. The method of a file is its folder
relative to PREDICTIONS (a trailing role folder such as ``test/`` is dropped), so the ``predictions/``
folder of a run scores every method it holds; with several PREDICTIONS folders (the runs of a sweep)
each run's own model is labelled with its run's folder name, as in ``report.py``, and a baseline found
in several runs is scored once. Writes ``metrics.csv`` and ``summary.json`` to --output (default:
PREDICTIONS/evaluation, required with several folders) and prints the summary.

With --segmenter (a ``model=segmenter`` run) or --segmenter-command (an external segmenter), every
case is also segmented with its real and with each synthetic T2, and Dice and HD95 per region, and
their changes against the real-T2 run, go to ``segmentation_metrics.csv`` and
``segmentation_summary.json`` (evaluation protocol, section 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from datamodules.dataset import SynthesisDataset
from datamodules.nifti import InvalidInputError, is_nifti, load_volume, strip_nifti_suffix
from datamodules.progress import track
from datamodules.splits import write_json_atomic
from evaluation.report import label_in_run
from evaluation.scoring import (
    METRICS,
    PRIMARY_METRIC,
    score_prediction,
    summarise,
    summary_table,
    write_rows_csv,
)
from evaluation.segmentation import CommandSegmenter, evaluate_synthetic_t2, prediction_files
from evaluation.segmentation_metrics import SEGMENTATION_TABLE
from pipeline.cli import bad_input_exits
from pipeline.contract import SegmentationMethod, load_from_run


def match_case(stem: str, case_ids: set[str]) -> str | None:
    if stem in case_ids:
        return stem
    prefixes = [c for c in case_ids if stem.startswith(c + "_")]
    return max(prefixes, key=len) if prefixes else None


def image_rows(folders: list[Path], dataset: SynthesisDataset, output: Path, region: str) -> list[dict]:
    role_of = {case_id: role for role, ids in dataset.split.items() for case_id in ids}
    rows = []
    unscored: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_nifti(p) and output not in p.parents)
        matched = [(p, match_case(strip_nifti_suffix(p.name), set(dataset.cases))) for p in files]
        matched = [(p, c) for p, c in matched if c is not None]
        if not matched:
            raise InvalidInputError(folder, f"no file named after a case of {dataset.root}")
        for path, case_id in track(matched, f"Scoring {len(matched)} file(s) in {folder}"):
            case = dataset.cases[case_id]
            subject = dataset.load(case, ("t1", "t2") if case.has("t2") else ("t1",))
            parts = path.parent.relative_to(folder).parts
            if parts and parts[-1] in dataset.split:
                parts = parts[:-1]
            method = label_in_run("/".join(parts) or folder.name, folder.parent, len(folders) > 1)
            if (method, case_id) in seen:
                continue
            seen.add((method, case_id))
            prediction = load_volume(path)
            if subject.t2 is None:  # the same rule as train.py: listed and counted, with n/a scores
                scores = dict.fromkeys(METRICS)
                unscored.add(case_id)
            else:
                scores = score_prediction(prediction, subject, region)
            rows.append({"method": method, "role": role_of.get(case_id, "unassigned"), "case_id": case_id, **scores})
    if unscored:
        print(
            f"warning: {len(unscored)} case(s) have no real T2 to score against; listed with n/a scores: "
            + ", ".join(sorted(unscored)),
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
        dataset = SynthesisDataset(
            args.data_root, args.layout, args.label_convention, args.split_file, write_split=False
        )
        if not args.skip_image_metrics:
            rows = image_rows(args.predictions, dataset, output, args.region)
            summary = summarise(rows)
            write_rows_csv(rows, output / "metrics.csv")
            write_json_atomic({"primary_metric": PRIMARY_METRIC, "summary": summary}, output / "summary.json")
            console.print(summary_table(summary, title=", ".join(map(str, args.predictions))))
        if args.segmenter or args.segmenter_command:
            segmenter = (
                load_from_run(args.segmenter, SegmentationMethod)
                if args.segmenter
                else CommandSegmenter(args.segmenter_command)
            )
            files = prediction_files(args.predictions, dataset)
            rows = evaluate_synthetic_t2(segmenter, dataset, files)
            summary = summarise(rows)
            write_rows_csv(rows, output / "segmentation_metrics.csv")
            write_json_atomic({"summary": summary}, output / "segmentation_summary.json")
            console.print(summary_table(summary, title="segmentation with each T2", metrics=SEGMENTATION_TABLE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
