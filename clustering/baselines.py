"""The paper's baselines (Complementary, Random), Zeros (T2 absent) and an intensity lookup table.

Inputs: the T1 on the percentile scale (:func:`datamodules.preprocessing.percentile_scale`, robust to
bright outliers). Outputs: the unit T2 scale of the method contract, 0 outside the brain.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from datamodules.dataset import Subject
from datamodules.nifti import Volume
from datamodules.preprocessing import percentile_scale, unit_scale
from pipeline.contract import FitContext, SynthesisMethod


def normalised_t1(subject: Subject) -> np.ndarray:
    """The subject's T1 on the percentile scale, 0 outside the brain."""
    return percentile_scale(subject.t1.data, subject.brain)


class Zeros(SynthesisMethod):
    """T2 absent: a volume of zeros (what a segmenter sees when the contrast is missing)."""

    learns = False
    constant_by_design = True

    def _predict(self, subject: Subject) -> Volume:
        return subject.t1.with_data(np.zeros(subject.t1.shape, dtype=np.float32))


class RandomNoise(SynthesisMethod):
    """The paper's Random baseline: uniform noise in [0, 1) inside the brain.

    Args:
        seed: the noise of a case depends on (seed, case id) only, not on the order of cases.
    """

    learns = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _predict(self, subject: Subject) -> Volume:
        rng = np.random.default_rng([self.seed, zlib.crc32(subject.case_id.encode())])
        noise = rng.random(subject.t1.shape, dtype=np.float32)
        return subject.t1.with_data(np.where(subject.brain, noise, np.float32(0)))


class Complementary(SynthesisMethod):
    """The paper's Complementary baseline: min + max - x over the brain of the normalised T1.

    T1 and T2 order the main tissues oppositely (CSF dark on T1, bright on T2), so inverting the T1
    is a one-line guess at the T2. On the [0, 1] percentile scale min + max - x is 1 - x.
    """

    learns = False

    def _predict(self, subject: Subject) -> Volume:
        t1 = normalised_t1(subject)
        brain = subject.brain
        inverted = np.zeros_like(t1)
        inverted[brain] = t1[brain].min() + t1[brain].max() - t1[brain]
        return subject.t1.with_data(inverted)


class IntensityLookup(SynthesisMethod):
    """The mean training T2 for each bin of normalised T1 intensity.

    A one-tissue, clustering-free ablation of BrainClustering: one table for the whole brain, rows
    at fixed intensity bins instead of matched micro clusters. Empty bins take the value linearly
    interpolated from the nearest filled bins.

    Args:
        bins: number of equal-width bins over the [0, 1] T1 scale.
    """

    def __init__(self, bins: int = 256) -> None:
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        self.bins = bins

    def _bin_of(self, t1: np.ndarray) -> np.ndarray:
        return np.minimum((t1 * self.bins).astype(np.int64), self.bins - 1)

    def _fit(self, subjects: Sequence[Subject], context: FitContext) -> None:
        sums = np.zeros(self.bins)
        counts = np.zeros(self.bins)
        for subject in subjects:
            brain = subject.brain
            bins = self._bin_of(normalised_t1(subject)[brain])
            t2 = unit_scale(subject.t2.data, brain)[brain]
            sums += np.bincount(bins, weights=t2, minlength=self.bins)
            counts += np.bincount(bins, minlength=self.bins)
        if not counts.any():
            raise ValueError("no training voxels: every training brain mask is empty")
        filled = counts > 0
        centres = (np.arange(self.bins) + 0.5) / self.bins
        self.table_ = np.interp(centres, centres[filled], sums[filled] / counts[filled]).astype(np.float32)
        self.counts_ = counts.astype(np.int64)

    def _predict(self, subject: Subject) -> Volume:
        brain = subject.brain
        prediction = np.zeros(subject.t1.shape, dtype=np.float32)
        prediction[brain] = self.table_[self._bin_of(normalised_t1(subject)[brain])]
        return subject.t1.with_data(prediction)

    def state(self) -> dict[str, np.ndarray]:
        return {"table": self.table_, "counts": self.counts_}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.table_, self.counts_ = arrays["table"], arrays["counts"]
