"""The real benchmark: every method trained on real BraTS cases and scored on real cases it never saw.

    python bench/real.py --data /data/brats18-dev [--extra ../shared/data/real]
                         [--sources t1 t1,t1ce,flair] [--methods NAME[KIND] ...] [--folds K ...]
                         [--seeds K ...] [--phantom MODEL ...] [--output reproduce/real]
    python bench/real.py --tables RUN/metrics.csv [RUN/metrics.csv ...]

Protocol (fixed, so that numbers from two commits compare):

- ``--data``: the 20 BraTS 2018 development cases (``../shared/data/brats18-dev``; labels 1/2/4).
  Sorted by case id, case ``i`` goes to fold ``i mod 5``; each fold's 4 cases are predicted by a model
  fitted on the other 16, so every case is predicted once by a model that never saw it.
- ``--folds``: predict only these folds (Pix2Pix, ``--methods pix2pix``, trains about 10 minutes a
  fold on 2 cores); the tables then count only their cases. With no fold, the methods that learn
  nothing predict every case, and those that learn predict only the ``--extra`` cases.
- ``--seeds``: a method that has a seed (Pix2Pix) is fitted once per seed and fold; the tables give
  each case's mean over the seeds, the sd over seeds of the mean over cases, and wins on those means.
- ``--extra``: further held-out cases from other pipelines (``../shared/data/real``), predicted by a
  model fitted on all the development cases.
- ``--phantom MODEL ...``: phantom models (``pipeline/phantom_model.py``: the models ``synthesize.py
  phantom:<model>`` uses, fitted on the embedded phantom and cached) predict every real case
  (``<model>@phantom``): what a user without training data gets; ``--phantom-overrides`` changes their
  config (``data.randomise.contrast=0.2``). With ``--folds`` and no fold, only they and the baselines
  run.
- ``--tables``: the tables of several runs together, from their ``metrics.csv`` files (a benchmark
  split into one job per fold or seed, on a cluster); a row found in several (the same task, method,
  case and seed: a baseline each job scored) counts once.
- Each method is built from its ``conf/model`` config with the overrides below (the same objects
  ``train.py`` builds), ``NAME[KIND]`` with ``standardisation=KIND`` too, and scored by
  ``evaluation.scoring.score_prediction`` on the source's brain.

Prints, per task and method, the mean and sd over cases of each metric, the sd of the five fold means
(how much the numbers move with the split), and on how many cases the method beats Complementary
(and ClosestSource where it applies) on ``pct_mse_brain`` and on ``ssim_healthy``. Writes
``metrics.csv`` (a row per task, method and case) and, per task, ``gallery-<task>.png``: three held-out
cases, their sources, the real target and each method's output. A model that keeps files while it fits
keeps them under ``models/<sources>/<method>-<fold>-seed<seed>/`` (Pix2Pix: ``checkpoints/last.ckpt``).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig

from common.errors import InvalidInputError
from common.files import write_rows_csv
from datamodules.dataset import Subject, SynthesisDataset
from datamodules.standardisation import KINDS
from datamodules.task import SynthesisTask
from evaluation.directions import lower_is_better
from evaluation.scoring import score_prediction
from pipeline.cli import bad_input_exits
from pipeline.config import compose_train
from pipeline.contract import FitContext, SynthesisMethod, TaskNotSupportedError
from pipeline.phantom_model import RECIPES, phantom_model

FOLDS = 5
#: name -> (conf/model config, overrides): the methods compared. Extra outputs (BrainClustering's
#: unfiltered image) are scored as ``<name>_<output>``.
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "brainclustering": ("brainclustering", ()),
    "brainclustering_paper": ("brainclustering", ("model.setting=paper", "model.macro=4")),
    "intensity_lookup": ("intensity_lookup", ()),
    "complementary": ("complementary", ()),
    "closest_source": ("closest_source", ()),
    "pix2pix": ("pix2pix", ("+experiment=pix2pix_real_cpu",)),  # about 10 min a fold on 2 cores: --folds
}
BASELINES = ("complementary", "closest_source")
REPORTED = ("pct_mse_brain", "pct_mse_tumour", "ssim_healthy", "ssim_tumour", "mse_brain")
WINS = ("pct_mse_brain", "ssim_healthy")
GALLERY_CASES = 3


def method_config(name: str, task: SynthesisTask, extra: Sequence[str] = ()) -> DictConfig:
    """The composed config of the method ``name`` (``<method>`` or ``<method>[<standardisation>]``) for
    ``task`` with the Hydra overrides ``extra``."""
    method, _, kind = name.removesuffix("]").partition("[")
    config, overrides = METHODS[method]
    overrides = (*overrides, *extra)
    if kind:
        overrides = (*overrides, f"standardisation={kind}")
    return compose_train(task, [f"model={config}", "data=brats", *overrides])


def build(name: str, task: SynthesisTask, extra: Sequence[str] = ()) -> SynthesisMethod | None:
    """The method ``name`` for ``task`` (see :func:`method_config`), or None (with a line) when it
    cannot do the task."""
    try:
        return instantiate(method_config(name, task, extra).model)
    except Exception as error:  # Hydra wraps the method's refusal
        if isinstance(error.__cause__, TaskNotSupportedError):
            print(f"  {name}: skipped ({error.__cause__})")
            return None
        raise


def folds_of(case_ids: Sequence[str]) -> list[list[str]]:
    ordered = sorted(case_ids)
    return [ordered[k::FOLDS] for k in range(FOLDS)]


def scored_rows(
    method: SynthesisMethod, name: str, subjects: Sequence[Subject], task: SynthesisTask, fold: int | str
) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """Per-case rows of every output of ``method`` on ``subjects``, and the outputs by label and case."""
    rows, outputs = [], {}
    seed = method.hyperparameters().get("seed", "")
    for subject in subjects:
        for output, volume in method.predict_all(subject).items():
            label = f"{name}_{output}" if output else name
            scores = score_prediction(volume, subject, task.target)
            row = {"task": str(task), "method": label, "fold": fold, "seed": seed, "case_id": subject.case_id}
            rows.append(row | scores)
            outputs.setdefault(label, {})[subject.case_id] = volume.data
    return rows, outputs


def run_task(
    task: SynthesisTask,
    development: dict[str, Subject],
    extra: dict[str, Subject],
    names: Sequence[str],
    workdir: Path,
    folds: Sequence[int] = range(FOLDS),
    overrides: Sequence[str] = (),
    seeds: Sequence[int] = (0,),
) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """Every method's rows and outputs over the ``folds`` and the ``extra`` cases (with no fold, the
    methods that learn nothing predict every case, and the others only the extra ones), once per seed
    for a method that has one (the outputs kept are the first seed's); a method that keeps files while
    it fits (Pix2Pix's checkpoints) keeps them under ``workdir``; ``overrides``: Hydra overrides for
    every method."""
    rows, outputs = [], {}
    plans = [(k, held_out) for k, held_out in enumerate(folds_of(list(development))) if k in folds]
    if extra:
        plans.append(("extra", list(extra)))
    everything = {**development, **extra}
    for name in names:
        probe = build(name, task, overrides)
        if probe is None:
            continue
        started = time.perf_counter()
        runs = [(fold, [s for c, s in development.items() if c not in held_out], held_out) for fold, held_out in plans]
        if not folds and not probe.learns:
            runs = [("all", list(development.values()), list(everything))]
        own_seeds = seeds if "seed" in probe.hyperparameters() else seeds[:1]
        for seed, (fold, training, held_out) in itertools.product(own_seeds, runs):
            method = build(name, task, [*overrides, f"seed={seed}"])
            method.fit(training, FitContext(workdir=workdir / f"{name}-{fold}-seed{seed}"))
            fold_rows, fold_outputs = scored_rows(method, name, [everything[c] for c in held_out], task, fold)
            rows += fold_rows
            for label, by_case in fold_outputs.items():
                if seed == own_seeds[0]:
                    outputs.setdefault(label, {}).update(by_case)
        if runs:
            print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return rows, outputs


def run_phantom_models(
    task: SynthesisTask, subjects: dict[str, Subject], models: Sequence[str], overrides: Sequence[str]
) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """Rows and outputs of each phantom model (fitted on first use, then cached) on every case."""
    rows, outputs = [], {}
    for model in models:
        started = time.perf_counter()
        method = phantom_model(model, task, overrides, say=lambda line: print(f"  {line}", flush=True))
        model_rows, model_outputs = scored_rows(method, f"{model}@phantom", list(subjects.values()), task, "phantom")
        rows += model_rows
        outputs.update(model_outputs)
        print(f"  {model}@phantom: {time.perf_counter() - started:.0f} s", flush=True)
    return rows, outputs


def mean_sd(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def wins(rows: Sequence[dict], label: str, baseline: str, metric: str) -> str:
    ours = {r["case_id"]: r[metric] for r in rows if r["method"] == label}
    theirs = {r["case_id"]: r[metric] for r in rows if r["method"] == baseline}
    common = [c for c in ours if c in theirs and ours[c] is not None and theirs[c] is not None]
    if not common:
        return "–"
    lower = lower_is_better(metric)
    better = sum((ours[c] < theirs[c]) if lower else (ours[c] > theirs[c]) for c in common)
    return f"{better}/{len(common)}"


def over_seeds(rows: Sequence[dict]) -> list[dict]:
    """One row per method and case: its metrics averaged over the seeds it was run with."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["method"], row["case_id"]), []).append(row)
    averaged = []
    for runs in grouped.values():
        means = {m: float(np.mean([r[m] for r in runs])) if runs[0][m] is not None else None for m in REPORTED}
        averaged.append(runs[0] | means)
    return averaged


def seed_sd(rows: Sequence[dict], label: str, metric: str) -> str:
    """The sd over seeds of a method's mean over cases ("–" for one seed)."""
    by_seed: dict[object, list[float]] = {}
    for row in rows:
        if row["method"] == label:
            by_seed.setdefault(row["seed"], []).append(row[metric])
    if len(by_seed) < 2:
        return "–"
    return f"{np.std([np.mean(values) for values in by_seed.values()], ddof=1):.3f}"


def table(rows: Sequence[dict], task: SynthesisTask) -> str:
    """A Markdown table of one task: means ± sd over cases (of each case's mean over seeds), the
    spread of fold means and of seed means, and per-case wins (on the means over seeds)."""
    averaged = over_seeds(rows)
    labels = list(dict.fromkeys(r["method"] for r in averaged))
    baselines = [b for b in BASELINES if b in labels]
    header = ["method", "cases", "seeds", *REPORTED, "fold sd (pct_mse_brain)"]
    header += [f"seed sd ({m})" for m in WINS]
    header += [f"beats {b} ({m})" for b in baselines for m in WINS]
    lines = [f"T2 from {', '.join(task.sources)}" if task.target == "t2" else str(task), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for label in labels:
        own = [r for r in averaged if r["method"] == label]
        folds = [[r["pct_mse_brain"] for r in own if r["fold"] == k] for k in range(FOLDS)]
        seeds = sorted({r["seed"] for r in rows if r["method"] == label}, key=str)
        cells = [
            label,
            str(len(own)),
            ",".join(map(str, seeds)) or "–",
            *(mean_sd([r[m] for r in own]) for m in REPORTED),
        ]
        cells.append(f"{np.std([np.mean(f) for f in folds], ddof=1):.3f}" if all(folds) else "n/a")
        cells += [seed_sd(rows, label, m) for m in WINS]
        cells += ["–" if label == b else wins(averaged, label, b, m) for b in baselines for m in WINS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def predicted_by_all(outputs: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """The cases every output has, in the order the first one predicted them."""
    by_label = list(outputs.values())
    return [case_id for case_id in (by_label[0] if by_label else {}) if all(case_id in o for o in by_label)]


def draw_gallery(
    task: SynthesisTask, subjects: dict[str, Subject], outputs: dict[str, dict[str, np.ndarray]], path: Path
) -> None:
    """Rows: held-out cases; columns: the sources, the real target and each method's output, at the
    axial slice with the most tumour (percentile scale inside the brain; outputs clipped to [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from datamodules.preprocessing import percentile_scale

    cases = list(subjects)[:GALLERY_CASES]
    columns = [*task.sources, f"real {task.target}", *outputs]
    figure, axes = plt.subplots(len(cases), len(columns), figsize=(1.9 * len(columns), 2.0 * len(cases)), squeeze=False)
    for row, case_id in enumerate(cases):
        subject = subjects[case_id]
        brain = subject.brain
        tumour = subject.tumour
        z = int(np.argmax(tumour.sum(axis=(0, 1)))) if tumour is not None and tumour.any() else brain.shape[2] // 2
        panels = [percentile_scale(subject[c].data, brain) for c in task.sources]
        panels.append(percentile_scale(subject[task.target].data, brain))
        panels += [np.clip(outputs[label][case_id], 0, 1) for label in outputs]
        for column, (axis, panel) in enumerate(zip(axes[row], panels, strict=True)):
            axis.imshow(np.rot90(panel[:, :, z]), cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column].replace("_", "\n", 1), fontsize=7)
        axes[row][0].set_ylabel(case_id, fontsize=6)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def load_all(root: Path, convention: str, task: SynthesisTask) -> dict[str, Subject]:
    dataset = SynthesisDataset(root, label_convention=convention, write_split=False)
    return {case_id: dataset.load(case, task.modalities) for case_id, case in sorted(dataset.cases.items())}


def read_rows(paths: Sequence[Path]) -> list[dict]:
    """The rows of earlier runs' ``metrics.csv`` files (for example one job per fold or seed); a row
    repeated (the same task, method, case and seed: a baseline scored in every job) counts once.

    Raises:
        InvalidInputError: a file that cannot be read, lacks a column this script writes or holds a
            metric that is not a number.
    """
    rows, seen = [], set()
    for path in paths:
        try:
            with path.open(newline="") as stream:
                found = list(csv.DictReader(stream))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise InvalidInputError(path, f"cannot be read ({error})") from None
        for row in found:
            missing = [c for c in ("task", "method", "fold", "seed", "case_id", *REPORTED) if c not in row]
            if missing:
                raise InvalidInputError(path, f"not a metrics.csv of bench/real.py (no column {missing[0]!r})")
            key = (row["task"], row["method"], row["case_id"], row["seed"])
            if key in seen:
                continue
            seen.add(key)
            try:
                numbers = {m: float(row[m]) if row[m] else None for m in REPORTED}
            except ValueError as error:
                raise InvalidInputError(path, f"case {row['case_id']}: {error}") from None
            fold = int(row["fold"]) if row["fold"].isdigit() else row["fold"]
            rows.append(row | numbers | {"fold": fold, "seed": int(row["seed"]) if row["seed"] else ""})
    return rows


def print_tables(rows: Sequence[dict]) -> None:
    """:func:`table` for each task the rows hold."""
    for text in dict.fromkeys(row["task"] for row in rows):
        sources, _, target = text.partition(" -> ")
        task = SynthesisTask.of(sources.split("+"), target)
        print(table([row for row in rows if row["task"] == text], task) + "\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="the BraTS 2018 development cases")
    parser.add_argument("--extra", type=Path, default=None, help="further held-out cases (BraTS 2023 layout)")
    parser.add_argument("--sources", nargs="+", default=["t1", "t1,t1ce,flair"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[name for name in METHODS if name != "pix2pix"],
        help=f"among {', '.join(METHODS)} (default: all but pix2pix); NAME[KIND] with a standardisation "
        f"({', '.join(KINDS)})",
    )
    parser.add_argument(
        "--overrides", nargs="+", default=[], help="Hydra overrides for every method, e.g. model.decay_iterations=3000"
    )
    parser.add_argument(
        "--folds",
        nargs="*",
        type=int,
        choices=range(FOLDS),
        default=list(range(FOLDS)),
        help="the folds to predict (default: all five)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0],
        help="seeds of the methods that have one (Pix2Pix); tables give each case's mean over them",
    )
    parser.add_argument("--output", type=Path, default=Path("reproduce/real"))
    parser.add_argument(
        "--phantom", nargs="+", default=[], choices=list(RECIPES), help="phantom models to predict every case with"
    )
    parser.add_argument(
        "--phantom-overrides", nargs="+", default=[], help="Hydra overrides of the phantom models' configs"
    )
    parser.add_argument(
        "--tables",
        nargs="+",
        type=Path,
        metavar="CSV",
        help="only print the tables of earlier runs' metrics.csv files together (one job per fold or seed)",
    )
    args = parser.parse_args(argv)
    if args.tables:
        with bad_input_exits():
            print_tables(read_rows(args.tables))
        return 0
    if args.data is None:
        parser.error("--data is required (unless --tables)")
    for name in args.methods:
        method, _, kind = name.removesuffix("]").partition("[")
        if method not in METHODS or kind not in ("", *KINDS):
            parser.error(f"--methods: unknown {name!r}: a method among {', '.join(METHODS)}, then [{'|'.join(KINDS)}]")
    for sources, name in itertools.product(args.sources, args.methods):
        try:  # before any training: an override that fits one method only is refused now, not hours later
            method_config(name, SynthesisTask.of(sources.split(","), "t2"), args.overrides)
        except HydraException as error:
            parser.error(f"--overrides do not fit {name}: {str(error).splitlines()[0]}")
    all_rows = []
    for sources in args.sources:
        task = SynthesisTask.of(sources.split(","), "t2")
        print(f"{task}:", flush=True)
        development = load_all(args.data, "brats2019", task)
        extra = load_all(args.extra, "brats2023", task) if args.extra else {}
        work = args.output / "models" / "+".join(task.sources)
        rows, outputs = run_task(task, development, extra, args.methods, work, args.folds, args.overrides, args.seeds)
        phantom_rows, phantom_outputs = run_phantom_models(
            task, {**development, **extra}, args.phantom, args.phantom_overrides
        )
        rows += phantom_rows
        outputs.update(phantom_outputs)
        all_rows += rows
        print(table(rows, task) + "\n", flush=True)
        everything = {**development, **extra}
        shown = {case_id: everything[case_id] for case_id in predicted_by_all(outputs) or everything}
        draw_gallery(task, shown, outputs, args.output / f"gallery-{'+'.join(task.sources)}.png")
    write_rows_csv(all_rows, args.output / "metrics.csv")
    print(f"wrote {args.output / 'metrics.csv'} and the galleries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
