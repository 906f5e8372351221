"""Score a folder of synthetic T2 files against a data set, whatever method made them.

    python evaluate.py PREDICTIONS DATA_ROOT [--region brain|union] [--output DIR]

Every NIfTI file under PREDICTIONS whose name is a case id of the data set (``<case>.nii.gz``, or
``<case>_<anything>.nii.gz``) is scored against that case's real T2. The method of a file is its folder
relative to PREDICTIONS (a trailing role folder such as ``test/`` is dropped), so the ``predictions/``
folder of a run scores every method it holds. Writes ``metrics.csv`` and ``summary.json`` to --output
(default: PREDICTIONS/evaluation) and prints the summary table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import track

from datamodules.dataset import SynthesisDataset
from datamodules.nifti import InvalidInputError, is_nifti, load_volume, strip_nifti_suffix
from datamodules.splits import write_json_atomic
from evaluation.scoring import PRIMARY_METRIC, score_prediction, summarise, summary_table, write_rows_csv
from pipeline.cli import bad_input_exits


def match_case(stem: str, case_ids: set[str]) -> str | None:
    if stem in case_ids:
        return stem
    prefixes = [c for c in case_ids if stem.startswith(c + "_")]
    return max(prefixes, key=len) if prefixes else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--label-convention", default=None)
    parser.add_argument("--split-file", type=Path, default=None)
    parser.add_argument("--region", choices=("brain", "union"), default="brain")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    output = args.output or args.predictions / "evaluation"
    with bad_input_exits():
        dataset = SynthesisDataset(args.data_root, args.layout, args.label_convention, args.split_file)
        role_of = {case_id: role for role, ids in dataset.split.items() for case_id in ids}
        files = sorted(
            p for p in args.predictions.rglob("*") if p.is_file() and is_nifti(p) and output not in p.parents
        )
        matched = [(p, match_case(strip_nifti_suffix(p.name), set(dataset.cases))) for p in files]
        matched = [(p, c) for p, c in matched if c is not None]
        if not matched:
            raise InvalidInputError(args.predictions, f"no file named after a case of {args.data_root}")
        rows = []
        for path, case_id in track(matched, description=f"Scoring {len(matched)} file(s)"):
            case = dataset.cases[case_id]
            subject = dataset.load(case, ("t1", "t2"))
            parts = path.parent.relative_to(args.predictions).parts
            if parts and parts[-1] in dataset.split:
                parts = parts[:-1]
            method = "/".join(parts) or args.predictions.name
            rows.append(
                {
                    "method": method,
                    "role": role_of.get(case_id, "unassigned"),
                    "case_id": case_id,
                    **score_prediction(load_volume(path), subject, args.region),
                }
            )
    summary = summarise(rows)
    write_rows_csv(rows, output / "metrics.csv")
    write_json_atomic({"primary_metric": PRIMARY_METRIC, "summary": summary}, output / "summary.json")
    Console(width=None if sys.stdout.isatty() else 160).print(summary_table(summary, title=f"{args.predictions}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
