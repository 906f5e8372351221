"""BrainClustering speed on full-size (240 x 240 x 155) phantom subjects. Prints numbers; not a test.

    python bench/brainclustering.py [--subjects 51] [--macro 4] [--micro 100]

Times the brain mask of a volume (the project's rule, against the same rule with scipy's
``binary_fill_holes`` over the whole volume, alternating); reading a case; the pipeline's fit from
the files (read ahead with a thread per core), projected to 270 patients; then per setting (paper,
reference): training per patient from decoded arrays (preprocessing + clusterings + matching; and
for a Search model, which also keeps each patient's T1), a Train&Test query from decoded arrays
with and without its brain mask (and, apart, reading its T1 and writing its T2), a Search query with
w = 10 over all training patients, the Search cost projected to 270 training patients from the
measured per-patient distance cost, and the Search model's T1 memory. Peak memory is the process's
maximum resident set size (all subjects are held in memory at once).
"""

from __future__ import annotations

import argparse
import functools
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from clustering.brainclustering import BrainClustering
from datamodules.dataset import LazySubjects, Subject
from datamodules.nifti import load_volume, save_volume
from datamodules.phantom import phantom_dataset
from datamodules.preprocessing import brain_mask


def scipy_fill_rule(data: np.ndarray) -> np.ndarray:
    """The brain-mask rule with scipy's hole filling over the whole volume (the earlier code)."""
    faces = np.concatenate([data[[0, -1]].ravel(), data[:, [0, -1]].ravel(), data[:, :, [0, -1]].ravel()])
    background = float(np.median(faces))
    spread = 1.4826 * float(np.median(np.abs(faces - background)))
    return ndimage.binary_fill_holes(np.abs(data.astype(np.float32) - np.float32(background)) > 5.0 * spread)


def seconds(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=51, help="phantom subjects: all but one train")
    parser.add_argument("--macro", type=int, default=4)
    parser.add_argument("--micro", type=int, default=100)
    args = parser.parse_args()

    dataset = phantom_dataset(n_subjects=args.subjects, shape=(240, 240, 155), seed=0)
    cases = sorted(dataset.cases.values(), key=lambda c: c.case_id)
    start = time.perf_counter()
    subjects = [dataset.load(case) for case in cases]
    read = (time.perf_counter() - start) / len(subjects)
    for subject in subjects:
        subject.brain  # noqa: B018 -- the brain mask is part of loading, not of the method
    query, training = subjects[0], subjects[1:]
    t1 = query["t1"]
    ours, whole_volume = [], []
    for _ in range(5):  # alternating, so that the machine's load hits both alike
        ours.append(seconds(lambda: brain_mask(t1), repeats=1))
        whole_volume.append(seconds(lambda: scipy_fill_rule(t1.data), repeats=1))
    print(
        f"brain mask of one volume: {np.median(ours):.3f} s "
        f"(the same rule with scipy's fill over the whole volume: {np.median(whole_volume):.3f} s)"
    )
    print(
        f"{len(training)} training patients, 240x240x155, brain voxels per patient "
        f"~{np.mean([s.brain.sum() for s in training]) / 1e6:.2f} M; reading T1+T2 {read:.2f} s per patient"
    )
    # The pipeline's path: the training cases read from their files ahead of the method, a thread per core.
    from_files = LazySubjects(functools.partial(dataset.load, modalities=("t1", "t2")), cases[1:])
    start = time.perf_counter()
    BrainClustering(mode="train", macro=args.macro, micro=args.micro).fit(from_files)
    per_patient = (time.perf_counter() - start) / len(training)
    print(
        f"fit from the files (paper setting, reading ahead with {from_files.workers} threads): "
        f"{per_patient:.2f} s per patient; 270 patients: {per_patient * 270 / 60:.1f} min"
    )

    for setting in ("paper", "reference"):
        micro = args.micro if setting == "paper" else args.micro - args.micro % args.macro
        train_mode = BrainClustering(mode="train", macro=args.macro, micro=micro, setting=setting)
        start = time.perf_counter()
        train_mode.fit(training)
        per_patient = (time.perf_counter() - start) / len(training)
        search = BrainClustering(mode="search", w=10, macro=args.macro, micro=micro, setting=setting)
        start = time.perf_counter()
        search.fit(training)
        search_per_patient = (time.perf_counter() - start) / len(training)
        query_time = seconds(lambda m=train_mode: m.synthesise(query))
        # End to end from decoded arrays: a fresh subject, so that its brain mask is computed too.
        end_to_end = seconds(lambda m=train_mode: m.synthesise(Subject("q", dict(query.volumes))))
        search_time = seconds(lambda m=search: m.synthesise(query))
        query_t1 = search.prepare(query, with_target=False).primary_volume()
        distance_time = seconds(lambda m=search, t1=query_t1: m.search_.distances(t1))
        projected = search_time + distance_time * (270 / len(training) - 1)
        rows = sum(len(r.key) for r in search.patient_rows_)
        crops = sum(crop.nbytes for crop in search.search_.crops) / len(training)
        print(
            f"[{setting}] macro {args.macro}, micro {micro} ({search.micro_per_tissue} per tissue), {rows} table rows"
        )
        print(
            f"  training: {per_patient:.2f} s per patient (x270 = {per_patient * 270 / 60:.1f} min); "
            f"a Search model, which also keeps each T1: {search_per_patient:.2f} s per patient"
        )
        print(f"  Train&Test query: {query_time:.2f} s (unfiltered + median); with its brain mask {end_to_end:.2f} s")
        if setting == "paper":  # the files around a query: its T1 read, the synthetic T2 written
            with tempfile.TemporaryDirectory() as folder:
                t1_file = save_volume(query["t1"], Path(folder) / "t1.nii.gz", query["t1"].data.dtype)
                reading = seconds(lambda f=t1_file: load_volume(f))
                prediction = train_mode.predict(query)
                writing = seconds(lambda f=folder, p=prediction: save_volume(p, Path(f) / "t2.nii.gz"))
            print(f"  files of a query: reading its T1 {reading:.2f} s, writing the synthetic T2 {writing:.2f} s")
        print(
            f"  Search w=10 query over {len(training)}: {search_time:.2f} s "
            f"(distances {distance_time:.2f} s); projected over 270: {projected:.2f} s"
        )
        print(
            f"  Search model: {crops / 2**20:.1f} MiB of T1 per patient "
            f"({search.search_.crops[0].dtype}); 270 patients: {crops * 270 / 2**30:.2f} GiB"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak memory (max RSS): {peak:.2f} GiB")


if __name__ == "__main__":
    main()
