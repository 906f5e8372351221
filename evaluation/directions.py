"""Which way is better, for every metric the project reports: one table, used by every ranking."""

from __future__ import annotations

from evaluation.scoring import METRICS
from evaluation.segmentation_metrics import REGION_NAMES, SEGMENTATION_METRICS

#: The changes against the real-contrast segmentation (the paper's Table 2): positive is better.
CHANGE_METRICS = tuple(f"{metric}_change_{region}" for metric in ("dice", "hd95") for region in (*REGION_NAMES, "mean"))

#: Metrics where a higher value is better; every other known metric is better lower (errors, HD95).
HIGHER_IS_BETTER = frozenset(
    {"psnr_brain", "ssim_healthy", "ssim_tumour"}
    | {metric for metric in SEGMENTATION_METRICS if metric.startswith("dice")}
    | set(CHANGE_METRICS)
)
KNOWN_METRICS = frozenset({*METRICS, *SEGMENTATION_METRICS, *CHANGE_METRICS})


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` is better.

    Raises:
        KeyError: a metric the table does not know (so a new metric cannot be ranked the wrong way).
    """
    if metric not in KNOWN_METRICS:
        raise KeyError(f"no direction known for metric {metric!r}; add it to evaluation/directions.py")
    return metric not in HIGHER_IS_BETTER
