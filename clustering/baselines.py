"""The paper's baselines (Complementary, Random), Zeros (the contrast absent), ClosestSource (the most
alike source contrast, for any target) and an intensity lookup table.

Inputs: source contrasts on the method's standardisation (:meth:`~pipeline.contract.SynthesisMethod.scaled`;
by default the percentile scale, robust to bright outliers). Outputs: the target's unit scale of the
method contract, 0 outside the brain.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from datamodules.dataset import Subject
from datamodules.nifti import Volume
from datamodules.preprocessing import unit_scale
from pipeline.contract import FitContext, SynthesisMethod, TaskNotSupportedError


class Zeros(SynthesisMethod):
    """The target absent: a volume of zeros (what a segmenter sees when the contrast is missing)."""

    learns = False
    constant_by_design = True

    def _predict(self, subject: Subject) -> Volume:
        return subject.volume_like(np.zeros(subject.reference.shape, dtype=np.float32))


class RandomNoise(SynthesisMethod):
    """The paper's Random baseline: uniform noise in [0, 1) inside the brain.

    Args:
        seed: the noise of a case depends on (seed, case id) only, not on the order of cases.
    """

    learns = False

    def __init__(self, seed: int = 0, source: Sequence[str] = ("t1",), target: str = "t2") -> None:
        super().__init__(source, target)
        self.seed = seed

    def _predict(self, subject: Subject) -> Volume:
        rng = np.random.default_rng([self.seed, zlib.crc32(subject.case_id.encode())])
        noise = rng.random(subject.reference.shape, dtype=np.float32)
        return subject.volume_like(np.where(subject.brain, noise, np.float32(0)))


def inverted(values: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """min + max - x over the brain (1 - x on the [0, 1] percentile scale), 0 outside."""
    result = np.zeros_like(values)
    inside = values[brain]
    result[brain] = inside.min() + inside.max() - inside
    return result


class Complementary(SynthesisMethod):
    """The paper's Complementary baseline: min + max - x over the brain of the standardised T1.

    T1 and T2 order the main tissues oppositely (CSF dark on T1, bright on T2), so inverting the T1
    is a one-line guess at the T2. It needs the T1 among the sources (for other tasks see
    :class:`ClosestSource`).
    """

    learns = False

    def __init__(
        self, source: Sequence[str] = ("t1",), target: str = "t2", standardisation: str | None = "percentile"
    ) -> None:
        super().__init__(source, target, standardisation)
        if "t1" not in self.source:
            raise TaskNotSupportedError(f"Complementary inverts the T1, which is not among the sources {self.source}")

    def _predict(self, subject: Subject) -> Volume:
        return subject.volume_like(inverted(self.scaled(subject, "t1"), subject.brain))


#: For each target, the contrasts that look most like it, best first: FLAIR shares T2's bright
#: oedema and grey-over-white order (but nulls the CSF), and T1CE is T1 with an enhancing rim.
CLOSEST_CONTRASTS: dict[str, tuple[str, ...]] = {
    "t2": ("flair",),
    "flair": ("t2",),
    "t1": ("t1ce",),
    "t1ce": ("t1",),
}


class ClosestSource(SynthesisMethod):
    """A baseline for any target: the source contrast that looks most like the target
    (:data:`CLOSEST_CONTRASTS`: FLAIR for T2, T1 for T1CE, ...), copied on the standardisation's scale.
    Without such a source (T1 alone for T2) the run skips it: inverting the T1 is Complementary."""

    learns = False

    def __init__(
        self, source: Sequence[str] = ("flair",), target: str = "t2", standardisation: str | None = "percentile"
    ) -> None:
        super().__init__(source, target, standardisation)
        alike = [c for c in CLOSEST_CONTRASTS[self.target] if c in self.source]
        if not alike:
            raise TaskNotSupportedError(
                f"ClosestSource copies {' or '.join(CLOSEST_CONTRASTS[self.target])} for {self.target}; "
                f"the sources are {self.source}"
            )
        self.copied = alike[0]

    def _predict(self, subject: Subject) -> Volume:
        return subject.volume_like(self.scaled(subject, self.copied))


class IntensityLookup(SynthesisMethod):
    """The mean training target for each bin of the standardised (single) source's intensity.

    A one-tissue, clustering-free ablation of BrainClustering: one table for the whole brain, rows
    at fixed intensity bins instead of matched micro clusters. Empty bins take the value linearly
    interpolated from the nearest filled bins.

    Args:
        bins: number of equal-width bins over the [0, 1] T1 scale.
    """

    def __init__(
        self,
        bins: int = 256,
        source: Sequence[str] = ("t1",),
        target: str = "t2",
        standardisation: str | None = "percentile",
    ) -> None:
        super().__init__(source, target, standardisation)
        if len(self.source) != 1:
            raise TaskNotSupportedError(f"IntensityLookup maps one source contrast, got {self.source}")
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
            bins = self._bin_of(self.scaled(subject, self.contrasts.primary)[brain])
            target = unit_scale(subject[self.target].data, brain)[brain]
            sums += np.bincount(bins, weights=target, minlength=self.bins)
            counts += np.bincount(bins, minlength=self.bins)
        if not counts.any():
            raise ValueError("no training voxels: every training brain mask is empty")
        filled = counts > 0
        centres = (np.arange(self.bins) + 0.5) / self.bins
        self.table_ = np.interp(centres, centres[filled], sums[filled] / counts[filled]).astype(np.float32)
        self.counts_ = counts.astype(np.int64)

    def _predict(self, subject: Subject) -> Volume:
        brain = subject.brain
        prediction = np.zeros(subject.reference.shape, dtype=np.float32)
        prediction[brain] = self.table_[self._bin_of(self.scaled(subject, self.contrasts.primary)[brain])]
        return subject.volume_like(prediction)

    def state(self) -> dict[str, np.ndarray]:
        return {"table": self.table_, "counts": self.counts_}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.table_, self.counts_ = arrays["table"], arrays["counts"]
