"""Score synthetic volumes against a subject's real contrast, and aggregate the scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.checks import check_choice
from common.errors import InvalidInputError
from datamodules.dataset import Subject
from datamodules.nifti import Volume
from datamodules.preprocessing import BRAIN_MASK_RULE, brain_mask, percentile_scale, unit_scale
from evaluation.image_metrics import mean_absolute_error, mean_over, mean_squared_error, psnr, ssim_map

METRICS = (
    "pct_mse_brain", "pct_mse_tumour", "mse_brain", "mse_tumour", "scaled_mse_brain", "scaled_mse_tumour",
    "pct_mae_brain", "psnr_brain", "ssim_healthy", "ssim_tumour",
)  # fmt: skip
PRIMARY_METRIC = "pct_mse_brain"
REGIONS = ("brain", "union")


#: Limits of a plausible synthetic image on the unit scale ([0, 1], background 0).
UNIT_SCALE_LIMITS = (-0.5, 1.5)
#: A prediction is degenerate when one value covers more than this share of the brain.
CONSTANT_SHARE = 0.9


def degeneracy(prediction: np.ndarray, brain: np.ndarray) -> str:
    """Why ``prediction`` (a synthetic image on the unit scale) is no image at all, or "" when it is
    plausible: non-finite values, values far outside [0, 1], one value over most of the brain, or a
    foreground lying mostly outside the brain. Scores of such an output mean little; a run says so."""
    if not np.all(np.isfinite(prediction)):
        return f"{int(np.count_nonzero(~np.isfinite(prediction)))} non-finite voxels"
    low, high = float(prediction.min()), float(prediction.max())
    if low < UNIT_SCALE_LIMITS[0] or high > UNIT_SCALE_LIMITS[1]:
        return f"values from {low:.3g} to {high:.3g}, far outside the unit scale [0, 1]"
    inside = prediction[brain]
    outside = int(np.count_nonzero(prediction[~brain]))
    if outside > np.count_nonzero(inside):
        return f"most of the foreground ({outside} voxels) lies outside the brain"
    if inside.size:
        _, counts = np.unique(inside, return_counts=True)
        share = counts.max() / inside.size
        if share > CONSTANT_SHARE:
            return f"{share:.1%} of the brain holds one value"
    return ""


def check_same_grid(prediction: Volume, real: Volume, shown: str, case_id: str) -> None:
    """Raises InvalidInputError naming the prediction's file when its shape or affine is not the real
    volume's (``shown``: how the message names the real one)."""
    if prediction.shape != real.shape:
        raise InvalidInputError(
            prediction.name, f"shape {prediction.shape} differs from {shown}'s {real.shape} (case {case_id})"
        )
    if not np.allclose(prediction.affine, real.affine, atol=1e-3):
        ours, theirs = (np.array2string(a[:3], precision=3, separator=",") for a in (prediction.affine, real.affine))
        message = f"affine {ours} differs from {shown}'s {theirs} (case {case_id})"
        raise InvalidInputError(prediction.name, message.replace("\n", ""))


def score_prediction(
    prediction: Volume, subject: Subject, target: str = "t2", region: str = "brain"
) -> dict[str, float | None]:
    """All image metrics of one synthetic contrast against the subject's real ``target``.

    Args:
        prediction: the synthetic volume, with the subject's geometry.
        subject: its anchor gives the brain mask (the primary source: T1 for the paper's task); it
            needs ``target`` and, for tumour metrics, its segmentation.
        target: the contrast the prediction stands for.
        region: ``brain`` (the anchor's brain mask, the project's default) or ``union`` (the
            reference code's union of the two images' foregrounds, for parity with the paper's numbers).

    Returns:
        metric name -> value; tumour metrics are None without a segmentation (n/a).

    The three MSE forms differ only in how each image is put on [0, 1]: ``mse`` compares the
    prediction as the method made it (the unit scale) with the real volume's brain min-max;
    ``scaled_mse`` min-maxes both images; ``pct_mse`` (primary) clips both to their own 0.5/99.5
    brain percentiles first. MAE, PSNR and SSIM use the percentile scale with data range 1.
    """
    real_volume = subject.get(target)
    if real_volume is None:
        raise ValueError(f"case {subject.case_id}: no real {target.upper()} to score against")
    check_same_grid(prediction, real_volume, f"the real {target.upper()}", subject.case_id)
    check_choice("region", region, REGIONS)
    brain = subject.brain
    if region == "union":
        predicted = prediction.data
        brain = brain_mask(real_volume) | (predicted > predicted.min())
    tumour = subject.tumour
    tumour = np.zeros_like(brain) if tumour is None else tumour
    has_tumour = subject.segmentation is not None
    real, predicted = real_volume.data, prediction.data.astype(np.float32)

    scores: dict[str, float | None] = {}
    real_unit = unit_scale(real, brain)
    forms = {
        "mse": (predicted * brain, real_unit),
        "scaled_mse": (unit_scale(predicted, brain), real_unit),
        "pct_mse": (percentile_scale(predicted, brain), percentile_scale(real, brain)),
    }
    for name, (p, r) in forms.items():
        scores[f"{name}_brain"] = mean_squared_error(p, r, brain)
        scores[f"{name}_tumour"] = mean_squared_error(p, r, tumour) if has_tumour else None
    pct_prediction, pct_real = forms["pct_mse"]
    scores["pct_mae_brain"] = mean_absolute_error(pct_prediction, pct_real, brain)
    scores["psnr_brain"] = psnr(pct_prediction, pct_real, brain)
    local = ssim_map(pct_prediction, pct_real, brain)
    scores["ssim_healthy"] = mean_over(local, brain & ~tumour)
    scores["ssim_tumour"] = mean_over(local, tumour) if has_tumour else None
    return {metric: scores[metric] for metric in METRICS}


def metric_names(rows: Sequence[dict[str, Any]], keys: Sequence[str] = ("method", "role")) -> list[str]:
    """The metric columns of per-case rows: every column but the grouping keys and text columns."""
    names: dict[str, None] = {}
    for row in rows:
        for name, value in row.items():
            if name not in keys and not isinstance(value, str):
                names.setdefault(name)
    return list(names)


def summarise(
    rows: Sequence[dict[str, Any]], keys: Sequence[str] = ("method", "role"), metrics: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Mean, sd and count of every metric (default: every numeric column) per group of ``keys``;
    n/a values are left out."""
    metrics = metric_names(rows, keys) if metrics is None else metrics
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    summary = []
    for group, members in groups.items():
        entry: dict[str, Any] = dict(zip(keys, group, strict=True))
        entry["cases"] = len(members)
        for metric in metrics:
            values = np.array([m[metric] for m in members if m.get(metric) is not None], dtype=np.float64)
            finite = values[np.isfinite(values)]
            entry[metric] = {
                "mean": float(finite.mean()) if finite.size else None,
                "sd": float(finite.std(ddof=1)) if finite.size > 1 else None,
                "n": int(values.size),
            }
        summary.append(entry)
    return summary


def format_value(statistic: dict[str, Any]) -> str:
    if statistic["mean"] is None:
        return "n/a"
    mean = statistic["mean"]
    digits = 4 if abs(mean) < 1 else 2
    text = f"{mean:.{digits}f}" if not math.isinf(mean) else "inf"
    return text + (f"±{statistic['sd']:.{digits}f}" if statistic["sd"] is not None else "")


#: The image metrics a console table shows.
TABLE_METRICS = ("pct_mse_brain", "pct_mse_tumour", "mse_brain", "psnr_brain", "ssim_healthy", "ssim_tumour")


def summary_table(
    summary: Sequence[dict[str, Any]], title: str, metrics: Sequence[str] | None = None, width: int = 80
) -> Any:
    """The summary as rich tables, one row per method and role, that fit in ``width`` columns: the
    metrics are split among as many tables as that takes, each repeating the method and role."""
    from rich.console import Group
    from rich.table import Table

    metrics = list(
        metrics or ("pct_mse_brain", "pct_mse_tumour", "mse_brain", "psnr_brain", "ssim_healthy", "ssim_tumour")
    )
    cells = [[format_value(entry[m]) for m in metrics] for entry in summary]
    identity = ("method", "role", "n")
    keys = ("method", "role", "cases")
    longest = [max([len(c), *(len(str(e[k])) for e in summary)]) for c, k in zip(identity, keys, strict=True)]
    longest[0] = min(longest[0], max(20, width // 4))  # a longer method label folds onto a second line
    identity_width = sum(length + 3 for length in longest)
    metric_widths = [max([len(m), *(len(row[i]) for row in cells)]) + 3 for i, m in enumerate(metrics)]
    groups: list[list[int]] = [[]]
    used = identity_width
    for index, metric_width in enumerate(metric_widths):
        if groups[-1] and used + metric_width > width - 1:
            groups.append([])
            used = identity_width
        groups[-1].append(index)
        used += metric_width
    tables = []
    for part, indices in enumerate(groups):
        table = Table(title=title if part == 0 else None)
        for column in identity:
            table.add_column(
                column,
                justify="right" if column == "n" else "left",
                overflow="fold",
                max_width=longest[0] if column == "method" else None,
            )
        for index in indices:
            table.add_column(metrics[index], justify="right")
        for entry, row in zip(summary, cells, strict=True):
            table.add_row(entry["method"], entry["role"], str(entry["cases"]), *(row[i] for i in indices))
        tables.append(table)
    return Group(*tables, f"brain mask: {BRAIN_MASK_RULE}")
