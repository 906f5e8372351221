"""Synthesise T2 volumes with a trained run.

    python synthesize.py RUN INPUT OUTPUT

RUN is a run directory (its ``model/`` is used) or a saved model folder. INPUT is a T1 NIfTI file, a
folder of T1 files, or a data set root in a known layout (every case's T1). OUTPUT is a folder; each
T2 is written as ``<input name>_t2syn.nii.gz`` (float32, on the unit T2 scale, background 0) with the
input's affine and header. OUTPUT may be the input folder: files named ``*_t2syn.nii.gz`` are never
read as inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datamodules.dataset import Subject
from datamodules.layouts import find_layout
from datamodules.nifti import InvalidInputError, is_nifti, load_volume, save_volume, strip_nifti_suffix
from datamodules.progress import track
from pipeline.cli import EXIT_BAD_INPUT, bad_input_exits
from pipeline.contract import SynthesisMethod, load_from_run

OUTPUT_SUFFIX = "_t2syn.nii.gz"


def t1_inputs(source: Path) -> list[tuple[str, Path]]:
    """(output stem, T1 file) for a file, a data set root (one layout, see
    :func:`datamodules.layouts.find_layout`), or a folder of T1 files (our own outputs left out)."""
    if source.is_file():
        return [(strip_nifti_suffix(source.name), source)]
    if not source.is_dir():
        raise InvalidInputError(source, "input not found")
    layout = find_layout(source)
    if layout is not None:
        return [(case.case_id, case.path("t1")) for case in layout.find_cases(source)]
    files = sorted(  # dangling links included: reading one names the problem
        p
        for p in source.iterdir()
        if (p.is_file() or p.is_symlink()) and is_nifti(p) and not p.name.endswith(OUTPUT_SUFFIX)
    )
    if not files:
        raise InvalidInputError(source, "no NIfTI files in this folder")
    stems: dict[str, Path] = {}
    for path in files:
        stem = strip_nifti_suffix(path.name)
        if stem in stems:
            raise InvalidInputError(path, f"both {stems[stem].name} and {path.name} exist: remove one")
        stems[stem] = path
    return list(stems.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run directory or saved model folder")
    parser.add_argument("input", type=Path, help="T1 file, folder of T1 files, or data set root")
    parser.add_argument("output", type=Path, help="output folder")
    args = parser.parse_args(argv)
    with bad_input_exits():
        if args.output.exists() and not args.output.is_dir():
            raise InvalidInputError(args.output, "OUTPUT is a file; give a folder for the synthetic T2s")
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
