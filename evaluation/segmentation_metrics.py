"""Dice and HD95 of a segmentation per BraTS region (evaluation protocol, section 2).

Regions come from the data set's label convention (WT, TC, ET). Empty sets: both empty gives Dice 1
and HD95 0; one empty gives Dice 0 and HD95 :data:`HD95_PENALTY_MM` (the BraTS challenges' value,
the diagonal of a 240 x 240 x 155 mm volume rounded up). HD95 is MONAI's undirected 95th-percentile
Hausdorff distance (the larger of the two directed 95th percentiles of surface distances) with the
voxel spacing, in mm.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from datamodules.labels import LabelConvention

HD95_PENALTY_MM = 374.0
REGION_NAMES = ("WT", "TC", "ET")
SEGMENTATION_METRICS = tuple(f"{metric}_{region}" for metric in ("dice", "hd95") for region in (*REGION_NAMES, "mean"))
#: The columns of the printed summary table.
SEGMENTATION_TABLE = ("dice_mean", "dice_WT", "dice_TC", "dice_ET", "hd95_mean", "hd95_WT")


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """2 |P ∩ R| / (|P| + |R|); 1 when both masks are empty."""
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, reference).sum()) / total


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> float:
    """Undirected 95th-percentile Hausdorff distance in mm (MONAI); 0 when both masks are empty,
    :data:`HD95_PENALTY_MM` when exactly one is."""
    from monai.metrics import compute_hausdorff_distance

    empty_prediction, empty_reference = not prediction.any(), not reference.any()
    if empty_prediction and empty_reference:
        return 0.0
    if empty_prediction or empty_reference:
        return HD95_PENALTY_MM
    with warnings.catch_warnings():  # MONAI 1.5+ warns about an argument of its own internal call
        warnings.simplefilter("ignore", FutureWarning)
        distance = compute_hausdorff_distance(
            prediction[None, None].astype(np.float32),
            reference[None, None].astype(np.float32),
            include_background=True,
            percentile=95,
            spacing=[float(s) for s in spacing],
        )
    return float(distance.item())


def score_segmentation(
    prediction: np.ndarray, reference: np.ndarray, labels: LabelConvention, spacing: Sequence[float]
) -> dict[str, float]:
    """Dice and HD95 per region and their means over the three regions (the paper's summary)."""
    scores: dict[str, float] = {}
    for region in REGION_NAMES:
        predicted, expected = labels.region_mask(prediction, region), labels.region_mask(reference, region)
        scores[f"dice_{region}"] = dice(predicted, expected)
        scores[f"hd95_{region}"] = hd95(predicted, expected, spacing)
    for metric in ("dice", "hd95"):
        scores[f"{metric}_mean"] = float(np.mean([scores[f"{metric}_{region}"] for region in REGION_NAMES]))
    return {metric: scores[metric] for metric in SEGMENTATION_METRICS}
