"""Synthesise T2 volumes with a trained run.

    python synthesize.py RUN INPUT OUTPUT

RUN is a run directory (its ``model/`` is used) or a saved model folder. INPUT is a T1 NIfTI file, a
folder of T1 files, or a data set root in a known layout (every case's T1). OUTPUT is a folder; each
T2 is written as ``<input name>_t2syn.nii.gz`` (float32, on the unit T2 scale, background 0) with the
input's affine and header.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datamodules.dataset import Subject
from datamodules.layouts import LAYOUTS
from datamodules.nifti import InvalidInputError, is_nifti, load_volume, save_volume, strip_nifti_suffix
from datamodules.progress import track
from pipeline.cli import EXIT_BAD_INPUT, bad_input_exits
from pipeline.contract import SynthesisMethod, load_from_run

OUTPUT_SUFFIX = "_t2syn.nii.gz"


def t1_inputs(source: Path) -> list[tuple[str, Path]]:
    """(output stem, T1 file) for a file, a data set root, or a folder of T1 files."""
    if source.is_file():
        return [(strip_nifti_suffix(source.name), source)]
    if not source.is_dir():
        raise InvalidInputError(source, "input not found")
    for layout in LAYOUTS.values():
        if layout.matches(source):
            return [(case.case_id, case.path("t1")) for case in layout.find_cases(source)]
    files = sorted(p for p in source.iterdir() if p.is_file() and is_nifti(p))
    if not files:
        raise InvalidInputError(source, "no NIfTI files in this folder")
    return [(strip_nifti_suffix(p.name), p) for p in files]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run directory or saved model folder")
    parser.add_argument("input", type=Path, help="T1 file, folder of T1 files, or data set root")
    parser.add_argument("output", type=Path, help="output folder")
    args = parser.parse_args(argv)
    with bad_input_exits():
        method = load_from_run(args.run, SynthesisMethod)
        inputs = t1_inputs(args.input)
    failures = []
    for stem, path in track(inputs, f"Synthesising {len(inputs)} T2 volume(s)"):
        try:
            subject = Subject(case_id=stem, t1=load_volume(path))
            save_volume(method.predict(subject), args.output / f"{stem}{OUTPUT_SUFFIX}")
        except InvalidInputError as error:
            failures.append(str(error))
            print(f"error: {error}", file=sys.stderr)
    print(
        f"wrote {len(inputs) - len(failures)} file(s) to {args.output}"
        + (f"; {len(failures)} failed" if failures else "")
    )
    return EXIT_BAD_INPUT if failures else 0


if __name__ == "__main__":
    sys.exit(main())
