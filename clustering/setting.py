"""What a BrainClustering setting decides, in one place per setting: the scales a subject is put on,
the rows one training patient adds, how the rows of many patients merge, how a value beyond a table's
ends is looked up, and whether the looked-up image takes the training targets' distribution.

:class:`PaperSetting` is the reproduction (``setting=paper``) and the interface; :class:`QuantileSetting`
(``setting=quantile``) makes it hold on real scans; the authors' code path is
:class:`clustering.reference.ReferenceSetting`. ``clustering/brainclustering.py`` says how they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clustering.multisource import median_scale_values
from clustering.shades import LeveledClustering, leveled_clustering, matched_rows, shade_mean_rows
from clustering.tables import TableRows
from datamodules.dataset import Subject
from datamodules.preprocessing import (
    brain_mask,
    percentile_scale_values,
    put_values_at,
    unit_scale_values,
    values_at,
)
from datamodules.standardisation import Standardisation
from datamodules.task import SynthesisTask

#: ``setting=quantile``: the target's distribution is kept as this many quantiles (0, 0.001, ..., 1).
TARGET_QUANTILES = 1001


@dataclass(frozen=True)
class Prepared:
    """A subject on the method's scales, in [0, 1], at the voxels that take part (``voxels``: the
    brain, or the reference's foreground), as flat arrays (``values_at(volume, voxels)``): the
    primary source (the T1's part), the further sources and (training) the target; and which of
    them train (``training``: the target's foreground too). Only the voxels that take part are ever
    scaled or copied: a brain is under a fifth of a BraTS volume."""

    voxels: np.ndarray  # (volume) bool
    primary: np.ndarray
    target: np.ndarray | None = None
    training: np.ndarray | None = None  # bool, training only
    others: tuple[np.ndarray, ...] = ()
    #: The raw intensities the primary and target were computed from, voxel by voxel, when they are
    #: integers (None otherwise): they let the clusterings count distinct values instead of sorting.
    primary_keys: np.ndarray | None = None
    target_keys: np.ndarray | None = None

    def primary_volume(self) -> np.ndarray:
        """The primary source as a volume, 0 outside the voxels that take part."""
        volume = np.zeros(self.voxels.shape, dtype=self.primary.dtype)
        put_values_at(volume, self.voxels, self.primary)
        return volume


def integer_keys(values: np.ndarray) -> np.ndarray | None:
    """A raw volume's values as :class:`Prepared`'s keys: themselves if they are integers, else None."""
    return values if values.dtype.kind in "iub" else None


class PaperSetting:
    """``setting=paper``: ``micro`` shades per tissue, shades matched one to one (pairs without a common
    voxel skipped), eq. (1) as written, the data layer's brain mask, each source on its percentile
    scale (the target on its unit scale), and values clamped to a table's end rows beyond them."""

    #: Whether a matched shade pair without a common voxel adds no row.
    skip_disjoint = True
    #: Whether ``micro`` is the total number of shades, split evenly across the tissues.
    micro_is_total = False
    #: Whether a repeated key is averaged with the reference's f += |a2 - f| / n.
    absolute_update = False
    #: Whether rows of many patients merge into ``micro`` key bins per tissue, weighted by their voxels.
    bins_rows = False
    #: Whether a table extrapolates through the origin beyond its end rows (else: clamped).
    through_origin = False
    #: Whether the looked-up image takes the training targets' distribution (:func:`target_quantiles`).
    matches_target_distribution = False
    #: Whether the setting has its own preprocessing, for T1 -> T2 only (the authors' code): it takes
    #: neither several sources nor a standardisation.
    own_preprocessing = False

    #: The primary source's standardisation unless one is chosen (:mod:`datamodules.standardisation`).
    standardisation = "percentile"
    target_scale = staticmethod(unit_scale_values)

    def micro_per_tissue(self, macro: int, micro: int) -> int:
        return micro // macro if self.micro_is_total else micro

    def prepare(self, subject: Subject, task: SynthesisTask, with_target: bool, scales: Standardisation) -> Prepared:
        """A subject on the setting's scales, at its brain's voxels: the primary source on ``scales``."""
        voxels = subject.brain
        primary_raw = values_at(subject[task.primary].data, voxels)
        target_raw = values_at(subject[task.target].data, voxels) if with_target else None
        return Prepared(
            voxels,
            scales.values(task.primary, primary_raw),  # float32; values are widened where used
            self.target_scale(target_raw) if with_target else None,
            values_at(brain_mask(subject[task.target]), voxels) if with_target else None,
            tuple(median_scale_values(values_at(subject[c].data, voxels)) for c in task.sources[1:]),
            primary_keys=integer_keys(primary_raw),
            target_keys=integer_keys(target_raw) if with_target else None,
        )

    def patient_rows(
        self,
        primary: np.ndarray,
        target: np.ndarray,
        macro: int,
        micro: int,
        primary_keys: np.ndarray | None,
        target_keys: np.ndarray | None,
    ) -> tuple[LeveledClustering, TableRows]:
        """One training patient's single-source rows (training steps 1-3) from the values of its
        training voxels, with the primary source's clustering they came from."""
        clustering = leveled_clustering(primary, macro, micro, primary_keys)
        return clustering, self.rows(clustering, target, macro, micro, target_keys)

    def rows(
        self, clustering: LeveledClustering, target: np.ndarray, macro: int, micro: int, target_keys: np.ndarray | None
    ) -> TableRows:
        """The rows from the primary's clustering: its shades matched one to one to the target's."""
        target_clustering = leveled_clustering(target, macro, micro, target_keys)
        return matched_rows(clustering, target_clustering, macro, micro, self.skip_disjoint)


class QuantileSetting(PaperSetting):
    """``setting=quantile``: a shade's row holds the mean target of its own voxels
    (:func:`shade_mean_rows`); the primary source is on a robust z-score scale (median and IQR of the
    brain: ``standardisation=zscore``, its default), on which patients' keys line up; rows merge into
    ``micro`` key bins per tissue, weighted by their voxels; the target is on its percentile scale; and
    the looked-up image takes the training targets' distribution."""

    bins_rows = True
    matches_target_distribution = True
    standardisation = "zscore"
    target_scale = staticmethod(percentile_scale_values)

    def rows(
        self, clustering: LeveledClustering, target: np.ndarray, macro: int, micro: int, target_keys: np.ndarray | None
    ) -> TableRows:
        """The rows from the primary's clustering: each shade's mean target (:func:`shade_mean_rows`)."""
        return shade_mean_rows(clustering, target.astype(np.float64), macro, micro)


def target_quantiles(prepared: Prepared) -> np.ndarray:
    """A training patient's target distribution: its :data:`TARGET_QUANTILES` evenly spaced quantiles."""
    levels = np.linspace(0, 1, TARGET_QUANTILES)
    return np.quantile(prepared.target[prepared.training].astype(np.float64), levels)
