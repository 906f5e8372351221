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
import sys
from pathlib import Path

from rich.console import Console

from common.contrasts import CONTRASTS
from common.errors import ConfigError
from common.files import write_json_atomic, write_rows_csv
from datamodules.dataset import SynthesisDataset
from datamodules.task import SynthesisTask
from evaluation.folders import score_folders
from evaluation.run_folder import EVALUATION, RunFolder
from evaluation.scoring import PRIMARY_METRIC, summarise, summary_table
from evaluation.segmentation import CommandSegmenter, evaluate_synthetic, prediction_files
from evaluation.segmentation_metrics import SEGMENTATION_TABLE
from pipeline.cli import bad_input_exits
from pipeline.contract import SegmentationMethod, load_from_run


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path, nargs="+")
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--label-convention", default=None)
    parser.add_argument("--split-file", type=Path, default=None)
    parser.add_argument(
        "--target",
        choices=CONTRASTS,
        default=None,
        help="the contrast predicted (default: the run's own target, else t2)",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="the sources, comma-separated; the first's brain mask is used (default: the run's own, else t1)",
    )
    parser.add_argument("--region", choices=("brain", "union"), default="brain")
    parser.add_argument("--output", type=Path, default=None)
    segmenters = parser.add_mutually_exclusive_group()
    segmenters.add_argument("--segmenter", type=Path, default=None, help="a model=segmenter run directory")
    segmenters.add_argument("--segmenter-command", default=None, help="an external segmenter's command template")
    parser.add_argument("--skip-image-metrics", action="store_true", help="segmentation metrics only")
    args = parser.parse_args(argv)
    if args.output is None and len(args.predictions) > 1:
        parser.error("--output is required with several PREDICTIONS folders")
    args.output = args.output or args.predictions[0] / "evaluation"
    return args


def task_of(args: argparse.Namespace) -> SynthesisTask:
    """--source and --target, each defaulting to the task of the run PREDICTIONS belongs to (else T2 from T1)."""
    run = RunFolder.holding(args.predictions[0])
    from_run = run.task if run is not None else SynthesisTask()
    try:
        source = args.source.split(",") if args.source else from_run.sources
        return SynthesisTask.of(source, args.target or from_run.target)
    except ValueError as error:
        raise ConfigError(f"--source/--target: {error}") from None


def write_image_metrics(
    args: argparse.Namespace, dataset: SynthesisDataset, task: SynthesisTask, console: Console
) -> None:
    rows = score_folders(args.predictions, dataset, task, args.region, skip=args.output)
    summary = summarise(rows)
    evaluation = RunFolder(args.output)  # the same file names as a run's
    evaluation.write_metrics(rows)
    evaluation.write_summary(
        {
            "kind": EVALUATION,
            "predictions": [str(folder) for folder in args.predictions],
            "primary_metric": PRIMARY_METRIC,
            "task": task.record,
            "summary": summary,
        }
    )
    title = f"{task}: " + ", ".join(map(str, args.predictions))
    console.print(summary_table(summary, title=title, width=console.width))


def write_segmentation_metrics(
    args: argparse.Namespace, dataset: SynthesisDataset, task: SynthesisTask, console: Console
) -> None:
    if args.segmenter:
        segmenter = load_from_run(args.segmenter, SegmentationMethod)
    else:
        segmenter = CommandSegmenter(args.segmenter_command)
    files = prediction_files(args.predictions, dataset)
    rows = evaluate_synthetic(segmenter, dataset, files, task.target)
    summary = summarise(rows)
    write_rows_csv(rows, args.output / "segmentation_metrics.csv")
    write_json_atomic({"task": task.record, "summary": summary}, args.output / "segmentation_summary.json")
    title = f"segmentation with each {task.target} (real and synthetic)"
    console.print(summary_table(summary, title=title, metrics=SEGMENTATION_TABLE, width=console.width))


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    with bad_input_exits():
        task = task_of(args)
        dataset = SynthesisDataset(
            args.data_root, args.layout, args.label_convention, args.split_file, write_split=False
        )
        if not args.skip_image_metrics:
            write_image_metrics(args, dataset, task, console)
        if args.segmenter or args.segmenter_command:
            write_segmentation_metrics(args, dataset, task, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
