"""One experiment, the same for every method: fit on the training split, predict every other role,
write one NIfTI per subject, score it, write ``metrics.csv`` and ``summary.json``, print a table, log.

The run folder's layout: :mod:`evaluation.run_folder`.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from rich.console import Console

from common.errors import ConfigError, InvalidInputError, RunInterruptedError
from common.files import remove_partial_files
from common.progress import track
from datamodules.dataset import LazySubjects, Subject, SynthesisDataset
from datamodules.labels import LabelConvention
from datamodules.layouts import Case
from datamodules.nifti import Volume, save_volume
from datamodules.splits import TRAIN, VALIDATION, save_split
from evaluation.run_folder import RunFolder
from evaluation.scoring import (
    METRICS,
    PRIMARY_METRIC,
    degeneracy,
    score_prediction,
    summarise,
    summary_table,
)
from evaluation.segmentation_metrics import SEGMENTATION_METRICS, SEGMENTATION_TABLE, score_segmentation
from pipeline.contract import FitContext, Method, SynthesisMethod, TaskNotSupportedError

log = logging.getLogger(__name__)


def roles_to_predict(dataset: SynthesisDataset, roles: Sequence[str] | None) -> list[str]:
    """The requested roles, or every non-empty role but training."""
    if roles is None:
        return [role for role in dataset.roles if role != TRAIN]
    missing = [role for role in roles if role not in dataset.split]
    if missing:
        raise ValueError(f"predict_roles {missing} are not in the split (roles: {sorted(dataset.split)})")
    return list(roles)


def score(
    method: Method, prediction: Volume, subject: Subject, labels: LabelConvention, region: str
) -> dict[str, Any] | None:
    """The method's task's scores of one prediction, or None when the subject has nothing to
    compare with (no real target contrast for a synthesis, no segmentation for a segmentation)."""
    if method.task == "segmentation":
        if subject.segmentation is None:
            return None
        return score_segmentation(prediction.data, subject.segmentation.data, labels, subject.reference.spacing)
    assert isinstance(method, SynthesisMethod)
    if subject.get(method.target) is None:
        return None
    return score_prediction(prediction, subject, method.target, region)


def scored_contrast(methods: Mapping[str, Method]) -> str | None:
    """The contrast the methods' predictions are scored against: the synthesis target, or None for
    a segmenter (scored against the segmentation)."""
    targets = {method.target for method in methods.values() if isinstance(method, SynthesisMethod)}
    return next(iter(targets), None)


def modalities_to_read(methods: Mapping[str, Method], case: Case) -> list[str]:
    """What a predicted case is loaded with: every method's inputs, the primary method's first (the
    subject's anchor), then the scored contrast when the case has it."""
    first, *others = methods.values()
    order = [*first.inference_modalities, *sorted({m for method in others for m in method.inference_modalities})]
    target = scored_contrast(methods)
    if target is not None and case.has(target):
        order.append(target)
    return list(dict.fromkeys(order))


def predict_and_score(
    methods: Mapping[str, Method],
    dataset: SynthesisDataset,
    roles: Sequence[str],
    run: RunFolder,
    region: str = "brain",
) -> list[dict[str, Any]]:
    """Predict every case of ``roles`` with every method (each case is read once), write the
    predictions, and score them; a case with nothing to compare with (no real target contrast for a
    synthesis, no segmentation for a segmentation) gets a row of n/a scores and a warning."""
    rows: list[dict[str, Any]] = []
    unscored: set[str] = set()
    work: list[tuple[str, Case]] = [(role, case) for role in roles for case in dataset.cases_in(role)]
    for role, case in track(work, f"Predicting {len(work)} cases with {len(methods)} method(s)"):
        subject = dataset.load(case, modalities_to_read(methods, case))
        for method_name, method in methods.items():
            for suffix, prediction in method.predict_all(subject).items():
                name = f"{method_name}_{suffix}" if suffix else method_name
                save_volume(prediction, run.prediction(name, role, case.case_id), prediction.data.dtype)
                scores = score(method, prediction, subject, dataset.labels, region)
                if scores is None:  # listed and counted, with n/a scores
                    scores = dict.fromkeys(SEGMENTATION_METRICS if method.task == "segmentation" else METRICS)
                    unscored.add(case.case_id)
                row = {"method": name, "role": role, "case_id": case.case_id, **scores}
                if method.task == "synthesis":
                    row["degenerate"] = "" if method.constant_by_design else degeneracy(prediction.data, subject.brain)
                    if row["degenerate"]:
                        log.warning("%s on %s: degenerate prediction (%s)", name, case.case_id, row["degenerate"])
                rows.append(row)
    if unscored:
        target = scored_contrast(methods)
        reference = "segmentation" if target is None else f"real {target.upper()}"
        log.warning(
            "%d predicted case(s) have no %s to score against; listed with n/a scores: %s",
            len(unscored),
            reference,
            ", ".join(sorted(unscored)),
        )
    return rows


def build(cfg: DictConfig, key: str) -> Any:
    """``instantiate(cfg)``, with the bad input or bad value that stopped it raised as itself (one
    line for the user) rather than wrapped in Hydra's multi-line ``InstantiationException``."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, InvalidInputError | ConfigError | TaskNotSupportedError):
            raise cause from None
        if isinstance(cause, ValueError | TypeError):
            raise ConfigError(f"{key}: {cause}") from None
        raise


def validation_cases(dataset: SynthesisDataset, modalities: Sequence[str]) -> list[Case]:
    """The validation role's cases that have every one of ``modalities`` (the others cannot be used)."""
    cases = dataset.cases_in(VALIDATION) if VALIDATION in dataset.split else []
    return [case for case in cases if all(case.has(m) for m in modalities)]


def check_before_fitting(methods: Mapping[str, Method], dataset: SynthesisDataset, roles: Sequence[str]) -> int:
    """Check, from headers only, every file the run will read (training and validation cases with
    what the methods train on; predicted cases with what they read, their real T2 and segmentation
    when present), so that a bad file stops the run before a long training rather than after it.
    Returns the number of files checked.

    Raises:
        InvalidInputError: naming the first bad file.
    """
    training = sorted({m for method in methods.values() if method.learns for m in method.training_modalities})
    inference = sorted({m for method in methods.values() for m in method.inference_modalities})
    target = scored_contrast(methods)
    checked = 0
    if training:
        for case in dataset.cases_in(TRAIN):
            checked += dataset.check(case, training)
        for case in validation_cases(dataset, training):
            checked += dataset.check(case, training)
    for role in roles:
        for case in dataset.cases_in(role):
            scored = [target] if target is not None and case.has(target) else []
            checked += dataset.check(case, sorted({*inference, *scored}))
    return checked


def fit_methods(
    methods: Mapping[str, Method], dataset: SynthesisDataset, run: RunFolder, primary: str, logger: Any = None
) -> None:
    """Fit each method on the training split (validating on the validation split, for the methods
    that do) and save it: the primary to ``model/``, baselines to ``baselines/<name>``."""
    for name, method in methods.items():
        folder = run.method_folder(name, primary=name == primary)
        modalities = method.training_modalities
        loader = functools.partial(dataset.load, modalities=modalities)
        training = LazySubjects(loader, dataset.cases_in(TRAIN), description=f"Fitting {name}")
        validation = LazySubjects(
            loader, validation_cases(dataset, modalities), description="Loading validation subjects"
        )
        context = FitContext(
            validation=validation,
            workdir=folder,
            logger=logger if name == primary else None,
            labels=dataset.labels,
        )
        method.fit(training, context)
        if rank_zero_only.rank == 0:
            method.save(folder)


def build_methods(cfg: DictConfig, model_name: str, console: Console) -> dict[str, Method]:
    """The model and the baselines that can do its task, each with its settings checked (a wrong
    Trainer, data or network option costs seconds, not a cache), before any data is read."""
    try:
        primary = build(cfg.model, "model")
    except TaskNotSupportedError as error:
        raise ConfigError(f"model: {error}") from None
    methods: dict[str, Method] = {model_name: primary}
    for name, baseline_cfg in (cfg.get("baselines") or {}).items():
        if primary.task != "synthesis" or name in methods:  # synthesis baselines mean nothing to a segmenter
            continue
        try:
            baseline = build(baseline_cfg, f"baselines.{name}")
        except TaskNotSupportedError as error:
            console.print(f"baseline {name} skipped: {error}")
            continue
        if baseline.contrasts != primary.contrasts:
            raise ConfigError(
                f"baselines.{name} does {baseline.contrasts} but the model does {primary.contrasts}: "
                "set the task with the top-level source and target"
            )
        methods[name] = baseline
    for name, method in methods.items():
        try:
            method.check_settings()
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{'model' if method is primary else f'baselines.{name}'}: {error}") from None
    return methods


def open_data(
    cfg: DictConfig, run: RunFolder, methods: Mapping[str, Method], console: Console
) -> tuple[SynthesisDataset, list[str]]:
    """The data set and the roles to predict, with every file the run will read checked from its
    header; then (and only then: a rerun that stops on bad input loses nothing) the earlier run's
    results cleared and the split written."""
    dataset: SynthesisDataset = build(cfg.data, "data")
    for leftover in remove_partial_files(run.path):
        console.print(f"removed {leftover}, left half-written by an earlier run that was killed")
    roles = roles_to_predict(dataset, cfg.get("predict_roles"))
    checked = check_before_fitting(methods, dataset, roles)
    if cleared := run.clear_results():
        console.print(f"{run.path}: replaced the earlier run's {', '.join(cleared)} (model/checkpoints kept to resume)")
    save_split(dataset.split, run.split_file, dataset.split_seed)
    console.print(
        f"data: {dataset.root} ({dataset.layout.name}, labels {dataset.labels.name}); split: "
        + ", ".join(f"{role} {len(ids)}" for role, ids in dataset.split.items())
        + f"; {checked} files checked"
    )
    return dataset, roles


def write_results(
    rows: list[dict[str, Any]],
    methods: Mapping[str, Method],
    model_name: str,
    run: RunFolder,
    title: str,
    console: Console,
    logger: Any,
) -> list[dict[str, Any]]:
    """Write ``metrics.csv`` and ``summary.json``, print the table, log the means; returns the summary."""
    primary = methods[model_name]
    summary = summarise(rows)
    if rows:
        run.write_metrics(rows)
    degenerate = dict(Counter(row["method"] for row in rows if row.get("degenerate")))
    record: dict[str, Any] = {"primary_metric": PRIMARY_METRIC, "model": model_name}
    if isinstance(primary, SynthesisMethod):
        record["task"] = primary.contrasts.record
    run.write_summary(record | {"summary": summary, "degenerate": degenerate})
    for name, count in degenerate.items():
        console.print(
            f"[bold red]warning:[/] {name}: {count} degenerate prediction(s); see the degenerate column of metrics.csv"
        )
    table_metrics = SEGMENTATION_TABLE if primary.task == "segmentation" else None
    console.print(summary_table(summary, title=title, metrics=table_metrics, width=console.width))
    if logger is not None:
        flat = {
            f"{e['method']}/{e['role']}/{metric}": value["mean"]
            for e in summary
            for metric, value in e.items()
            if isinstance(value, dict) and value["mean"] is not None
        }
        logger.log_metrics(flat, step=0)
        logger.finalize("success")
    return summary


def run_experiment(cfg: DictConfig, run_dir: Path, model_name: str) -> list[dict[str, Any]]:
    """The whole experiment for a composed config; returns the summary (empty on the non-zero ranks
    of a multi-GPU run, which only train)."""
    console = Console(width=None if sys.stdout.isatty() else 160)
    run = RunFolder(run_dir)
    if cfg.get("skip_finished") and run.finished:
        console.print(f"{run_dir}: finished earlier ({run.summary_file.name} exists); skipped")
        return run.read_summary()["summary"]
    methods = build_methods(cfg, model_name, console)  # a value a model refuses stops the run before any data
    rerun = f"rerun the same command into {run_dir} (hydra.run.dir, or the same sweep folder) to resume"
    try:  # from the first file read to the last model saved, an interruption says how to resume
        dataset, roles = open_data(cfg, run, methods, console)
        logger = instantiate(cfg.logger) if cfg.get("logger") else None
        if logger is not None:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        fit_methods(methods, dataset, run, model_name, logger)
    except RunInterruptedError as error:
        resume = "; ".join(filter(None, (error.resume, rerun)))
        raise RunInterruptedError(error.received, error.checkpoint, resume) from error
    if rank_zero_only.rank != 0:
        return []
    try:
        rows = predict_and_score(methods, dataset, roles, run, cfg.evaluation.region)
    except RunInterruptedError as error:  # the fitted models are saved: a rerun refits or resumes, then predicts
        raise RunInterruptedError(error.received, None, f"while predicting; {rerun}") from error
    primary = methods[model_name]
    task = f", {primary.contrasts}" if isinstance(primary, SynthesisMethod) else ""
    title = f"{model_name}{task} on {dataset.root.name} ({run_dir})"
    return write_results(rows, methods, model_name, run, title, console, logger)
