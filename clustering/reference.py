"""The authors' code path (``setting=reference``, T1 -> T2 only): their preprocessing, their foreground
("greater than the volume minimum" after their outlier removal), ``micro`` as a total split evenly
across the tissues, the update f += |a2 - f| / n, matched shade pairs kept without a common voxel,
and tables that extrapolate through the origin (f(x_k) x / x_k) beyond their end rows."""

from __future__ import annotations

import numpy as np

from clustering.setting import PaperSetting, Prepared, integer_keys
from datamodules.dataset import Subject
from datamodules.preprocessing import values_at
from datamodules.standardisation import Standardisation
from datamodules.task import SynthesisTask


def reference_t1(data: np.ndarray) -> np.ndarray:
    """The reference code's T1 preprocessing: z-score on the voxels above the minimum, voxels above
    Q75 + 1.5 IQR (of those) set to the minimum, then a whole-volume min-max to [0, 1]."""
    volume = data.astype(np.float64)
    foreground = volume > volume.min()
    volume = (volume - volume[foreground].mean()) / volume[foreground].std()
    q25, q75 = np.percentile(volume[foreground], [25, 75])
    volume[volume > q75 + 1.5 * (q75 - q25)] = volume.min()
    return (volume - volume.min()) / (volume.max() - volume.min())


def reference_t2(data: np.ndarray) -> np.ndarray:
    """The reference code's T2 preprocessing: a whole-volume min-max to [0, 1]."""
    volume = data.astype(np.float64)
    return (volume - volume.min()) / (volume.max() - volume.min())


class ReferenceSetting(PaperSetting):
    """``setting=reference``: the authors' code, as the module docstring lists."""

    skip_disjoint = False
    micro_is_total = True
    absolute_update = True
    through_origin = True
    own_preprocessing = True

    def prepare(self, subject: Subject, task: SynthesisTask, with_target: bool, scales: Standardisation) -> Prepared:
        """The whole volumes preprocessed as the authors do (``scales`` unused), at the foreground of the T1's."""
        primary_data = subject[task.primary].data
        primary_volume = reference_t1(primary_data)
        voxels = primary_volume != 0
        primary = values_at(primary_volume, voxels)
        if not with_target:
            return Prepared(voxels, primary, primary_keys=integer_keys(values_at(primary_data, voxels)))
        target_data = subject[task.target].data
        target = values_at(reference_t2(target_data), voxels)
        return Prepared(
            voxels,
            primary,
            target,
            (primary > 0) & (target > 0),
            primary_keys=integer_keys(values_at(primary_data, voxels)),
            target_keys=integer_keys(values_at(target_data, voxels)),
        )
