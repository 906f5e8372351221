"""Make a missing contrast with a trained run: the T2 of a T1 (the paper's task), or any target from
the sources the run was trained on (a BraTS case missing its T2 still has T1, T1CE and FLAIR).

    python synthesize.py RUN INPUT [OUTPUT]
    python synthesize.py phantom[:MODEL] INPUT [OUTPUT] [--source t1 t1ce flair] [--target t2]

RUN is a run directory (its ``model/`` is used) or a saved model folder; its task (sources ->
target) is the one it was trained for. Or RUN is a model that needs no training data: ``phantom``
(Pix2Pix, T2 from T1) or ``phantom:<model>`` (pix2pix, brainclustering, intensity_lookup), for the
task ``--source``/``--target`` give; it is fitted on the embedded phantom on first use (about 15
minutes on 2 cores for Pix2Pix, 4 for BrainClustering), kept in ``$MRI_SYNTHESIS_CACHE`` (default
``~/.cache/mri-synthesis``) with its provenance and reused after (docs/phantom.md; write ``./phantom`` for a
folder of that name). INPUT is

- a data set root in a known layout (every case), or one case's folder of such a data set
  (``.../BraTS-GLI-00001-000/``): each case's sources are read by the layout's names, and the target
  is written under the name the layout gives it (``<case>-t2w.nii.gz`` in BraTS 2023,
  ``<case>_t2.nii.gz`` in BraTS 2019): next to the case's other files when OUTPUT is left out, so
  that the case is complete for a segmenter, or into OUTPUT (flat), where ``evaluate.py`` scores it
  as it is. A file already there in the case's folder is never overwritten.
- for a single-source run only: a NIfTI file of that source, or a folder of them; each output is
  ``<input name>_<target>syn.nii.gz`` in OUTPUT (required), which may be the input folder: files named
  so are never read as inputs.

Outputs are float32 on the target's unit scale (background 0) with the affine and header of the
first source.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError, InvalidInputError
from common.progress import track
from datamodules.dataset import Subject
from datamodules.layouts import Case, find_case_folder, find_layout
from datamodules.nifti import check_same_geometry, is_nifti, load_volume, save_volume, strip_nifti_suffix
from datamodules.task import SynthesisTask
from pipeline.cli import EXIT_BAD_INPUT, bad_input_exits
from pipeline.contract import SynthesisMethod, load_from_run
from pipeline.phantom_model import phantom_model, phantom_model_name


def output_suffix(target: str) -> str:
    """The suffix of an output made from a loose file: ``_t2syn.nii.gz`` for a T2."""
    return f"_{target}syn.nii.gz"


@dataclass(frozen=True)
class Job:
    """One output to make: its name (a case id or a file's stem), the source files by contrast,
    where it goes, and whether a file there may be replaced (our own earlier output) or not (a
    case's own file)."""

    name: str
    sources: dict[str, Path]
    output: Path
    replace: bool


def case_jobs(cases: list[Case], task: SynthesisTask, output: Path | None) -> tuple[list[Job], list[str]]:
    """Jobs for cases in a layout, and an error line for each case that lacks a source."""
    jobs, errors = [], []
    for case in cases:
        missing = [contrast for contrast in task.sources if not case.has(contrast)]
        if missing:
            expected = ", ".join(f"{case.expected[c].name}.nii.gz" for c in missing)
            errors.append(f"case {case.case_id}: the run needs {', '.join(missing)} and the case lacks it ({expected})")
            continue
        name = f"{case.expected[task.target].name}.nii.gz"
        destination = output / name if output is not None else case.expected[task.target].parent / name
        sources = {contrast: case.path(contrast) for contrast in task.sources}
        jobs.append(Job(case.case_id, sources, destination, replace=output is not None))
    return jobs, errors


def file_jobs(source: Path, task: SynthesisTask, output: Path | None) -> list[Job]:
    """Jobs for a file of the run's single source, or a folder of them (our own outputs left out)."""
    if len(task.sources) > 1:
        raise InvalidInputError(
            source,
            f"this run makes {task.target} from {', '.join(task.sources)}: give a case folder or a data set root "
            "in a known layout, so that each case's sources can be found",
        )
    if output is None:
        raise InvalidInputError(source, "give an OUTPUT folder for outputs made from loose files")
    suffix = output_suffix(task.target)
    if source.is_file():
        files = [source]
    else:
        files = sorted(  # dangling links included: reading one names the problem
            p
            for p in source.iterdir()
            if (p.is_file() or p.is_symlink()) and is_nifti(p) and not p.name.endswith(suffix)
        )
        if not files:
            raise InvalidInputError(source, "no NIfTI files in this folder")
    stems: dict[str, Path] = {}
    for path in files:
        stem = strip_nifti_suffix(path.name)
        if stem in stems:
            raise InvalidInputError(path, f"both {stems[stem].name} and {path.name} exist: remove one")
        stems[stem] = path
    return [Job(stem, {task.primary: path}, output / f"{stem}{suffix}", replace=True) for stem, path in stems.items()]


def jobs_for(source: Path, task: SynthesisTask, output: Path | None) -> tuple[list[Job], list[str]]:
    """What INPUT asks for (see the module docstring)."""
    if not source.exists():
        raise InvalidInputError(source, "input not found")
    if source.is_dir():
        layout = find_layout(source)
        if layout is not None:
            return case_jobs(layout.find_cases(source), task, output)
        case = find_case_folder(source)
        if case is not None:
            return case_jobs([case], task, output)
    return file_jobs(source, task, output), []


def synthesise(method: SynthesisMethod, job: Job) -> Path:
    """Read a job's sources, make the target, write it (atomically, never over a case's own file)."""
    if job.output.exists() and not job.replace:
        raise InvalidInputError(
            job.output, f"case {job.name} already has its {method.target}: not overwritten (give an OUTPUT folder)"
        )
    volumes = {contrast: load_volume(path) for contrast, path in job.sources.items()}
    check_same_geometry(volumes, job.name)
    return save_volume(method.predict(Subject(job.name, volumes)), job.output)


def saved_model(args: argparse.Namespace) -> SynthesisMethod:
    """The model of the run or model folder RUN names (it does the task it was trained for)."""
    if args.source or args.target or args.override:
        raise ConfigError(f"--source, --target and --override are for phantom models; {args.run} does its own task")
    method = load_from_run(Path(args.run), SynthesisMethod)
    assert isinstance(method, SynthesisMethod)
    return method


def phantom_task(args: argparse.Namespace) -> SynthesisTask:
    """A phantom model's task: ``--source`` (default T1) to ``--target`` (default T2)."""
    try:
        return SynthesisTask.of(args.source or ["t1"], args.target or "t2")
    except ValueError as error:
        raise ConfigError(f"--source/--target: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory, saved model folder, or phantom[:MODEL]")
    parser.add_argument("input", type=Path, help="data set root, case folder, or source file or folder of them")
    parser.add_argument("output", type=Path, nargs="?", help="output folder (default for cases: next to their files)")
    parser.add_argument("--source", nargs="+", help="a phantom model's sources (default: t1)")
    parser.add_argument("--target", help="a phantom model's target (default: t2)")
    parser.add_argument(
        "--override", nargs="+", default=[], help="Hydra overrides of a phantom model's config, e.g. data.n_subjects=40"
    )
    args = parser.parse_args(argv)
    with bad_input_exits():  # also SIGTERM and SIGINT, at any point: one line, no half-written file
        if args.output is not None and args.output.exists() and not args.output.is_dir():
            raise InvalidInputError(args.output, "OUTPUT is a file; give a folder for the outputs")
        model = phantom_model_name(args.run)
        method = saved_model(args) if model is None else None
        task = method.contrasts if method is not None else phantom_task(args)
        jobs, failures = jobs_for(args.input, task, args.output)  # checked before a phantom model is fitted
        if method is None and jobs:
            method = phantom_model(model, task, args.override)
        for failure in failures:
            print(f"error: {failure}", file=sys.stderr)
        written = 0
        for job in track(jobs, f"Synthesising {len(jobs)} {task.target} volume(s) ({task})"):
            try:
                synthesise(method, job)
                written += 1
            except InvalidInputError as error:
                failures.append(str(error))
                print(f"error: {error}", file=sys.stderr)  # now, for whoever watches a long run
    if jobs and failures:  # again after the progress, which may have drawn over them
        for failure in failures:
            print(f"error: {failure}", file=sys.stderr)
    where = args.output or "the cases' folders"
    print(f"wrote {written} file(s) to {where}" + (f"; {len(failures)} failed" if failures else ""))
    return EXIT_BAD_INPUT if failures else 0


if __name__ == "__main__":
    sys.exit(main())
