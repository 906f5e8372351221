"""The study's report: tables, figures and the best model per metric, from runs and sweeps.

    python report.py RUNS_OR_SWEEPS... [--segmentation EVALUATION_DIR ...] [--data DATA_ROOT]
                     [--output report] [--wandb]

RUNS_OR_SWEEPS are run directories or folders holding them (``multirun/paper_pix2pix``, ...).
--segmentation names ``evaluate.py --segmenter`` outputs (folders with ``segmentation_metrics.csv``).
--data (the data set's root) enables the gallery of mid-slices. Writes ``report.md``, ``report.html``
and ``figures/*.png`` to --output; --wandb also logs them to W&B (offline without an account).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common.errors import InvalidInputError
from datamodules.dataset import SynthesisDataset
from datamodules.nifti import load_volume
from evaluation.report import Study, best_of_each_family, build_report, collect, write_report
from evaluation.scoring import summarise
from pipeline.cli import bad_input_exits


def gallery_volumes(study: Study, data_root: Path) -> dict | None:
    """The sources, real target, brain mask, segmentation and the chosen methods' predictions of the
    first test case they share (the first run's task)."""
    dataset = SynthesisDataset(data_root, write_split=False)
    chosen = best_of_each_family(summarise(study.image_rows, metrics=["pct_mse_brain"]))
    test_cases = [row["case_id"] for row in study.image_rows if row["role"] == "test"]
    for case_id in dict.fromkeys(test_cases):
        files = {m: study.case_files.get(m, {}).get(case_id) for m in chosen}
        files = {m: f for m, f in files.items() if f is not None and f.exists()}
        if files:
            task = study.tasks[0]
            subject = dataset.load(dataset.cases[case_id], task.modalities)
            return {
                "sources": {c: subject[c].data.astype(np.float32) for c in task.sources},
                "real": subject[task.target].data.astype(np.float32),
                "brain": subject.brain,
                "segmentation": None if subject.segmentation is None else subject.segmentation.data,
                "synthetic": {m: load_volume(f).data for m, f in sorted(files.items())},
            }
    return None


def log_to_wandb(markdown: Path, output: Path) -> None:
    import wandb

    from pipeline.resolvers import wandb_offline

    run = wandb.init(
        project="mri-contrast-synthesis", job_type="report", mode="offline" if wandb_offline() else "online"
    )
    run.log({"report": wandb.Html(markdown.with_suffix(".html").read_text())})
    run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in sorted((output / "figures").glob("*.png"))})
    run.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--segmentation", type=Path, nargs="*", default=[])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=Path("report"))
    parser.add_argument("--wandb", action="store_true")
    args = parser.parse_args(argv)
    with bad_input_exits():
        study = collect(args.runs, args.segmentation)
        for sentence in study.skipped:
            print(f"note: {sentence}", file=sys.stderr)
        if not study.runs:
            raise InvalidInputError(", ".join(map(str, args.runs)), "no run directory (summary.json + metrics.csv)")
        volumes = gallery_volumes(study, args.data) if args.data else None
    document = build_report(study, args.output, volumes)
    markdown, page = write_report(document, args.output)
    print(f"wrote {markdown} and {page} ({len(study.runs)} runs, {len(study.methods)} methods)")
    if args.wandb:
        log_to_wandb(markdown, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
