"""Intensity standardisation: how a synthesis method puts each source contrast's brain intensities on a
[0, 1] scale, so that scans of different scanners and patients line up (``standardisation=`` of every
synthesis model config).

- ``percentile``: the brain's 0.5th-99.5th percentiles mapped to [0, 1], clipped
  (:func:`~datamodules.preprocessing.percentile_scale_values`; the project's scale so far).
- ``zscore``: a robust z-score, (x - median) / IQR of the brain, clipped to +-5 IQR and mapped to
  [0, 1] (:func:`~datamodules.preprocessing.robust_scale_values`): anchored at the bulk of the tissue
  rather than at the extremes, which a lesion or a vessel moves.
- ``nyul``: Nyúl and Udupa's piecewise-linear histogram standardisation, TorchIO's
  ``HistogramStandardization``: per contrast, landmarks (the 1st, 10th, ..., 90th, 99th percentiles and
  the quartiles of the brain) learned from the training cases at fit and saved with the model; each
  volume's landmarks are mapped onto them, and TorchIO's 0-100 scale onto [0, 1], clipped. It is the
  only one of the three that changes a histogram's shape, not just its offset and width.

The target of training is not standardised: each method keeps the target's scale it is defined on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from common.checks import check_choice
from datamodules.dataset import Subject
from datamodules.preprocessing import percentile_scale_values, put_values_at, robust_scale_values, values_at

KINDS = ("percentile", "zscore", "nyul")
#: Nyúl's cutoff: the brain's 1st and 99th percentiles (TorchIO's default) are the scale's ends.
NYUL_CUTOFF = (1.0, 99.0)
STATE_PREFIX = "standardisation_"


class Standardisation:
    """One of :data:`KINDS`; ``nyul`` learns its landmarks per contrast (:meth:`fit`).

    Raises:
        ValueError: an unknown kind.
    """

    def __init__(self, kind: str = "percentile") -> None:
        check_choice("standardisation", kind, KINDS)
        self.kind = kind
        self.landmarks: dict[str, np.ndarray] = {}

    @property
    def learns(self) -> bool:
        return self.kind == "nyul"

    def fit(self, subjects: Iterable[Subject], contrasts: Sequence[str]) -> Standardisation:
        """Learn each contrast's Nyúl landmarks from the subjects' brains (nothing for the other kinds)."""
        if not self.learns:
            return self
        # TorchIO's HistogramStandardization.train reads its images from files; these are in memory,
        # so its landmarks are learned here with the two functions train() uses: TorchIO's own rule.
        from torchio.transforms.preprocessing.intensity.histogram_standardization import (
            _get_average_mapping,
            _get_percentiles,
        )

        landmark_percentiles = _get_percentiles(NYUL_CUTOFF)
        percentiles: dict[str, list[np.ndarray]] = {contrast: [] for contrast in contrasts}
        for subject in subjects:
            for contrast in contrasts:
                values = values_at(subject[contrast].data, subject.brain).astype(np.float64)
                percentiles[contrast].append(np.percentile(values, landmark_percentiles))
        if not any(percentiles.values()):
            raise ValueError("standardisation=nyul needs at least one training case to learn its landmarks")
        self.landmarks = {c: _get_average_mapping(np.vstack(found)) for c, found in percentiles.items()}
        return self

    def values(self, contrast: str, values: np.ndarray) -> np.ndarray:
        """A contrast's brain values (all of them, one subject's) on the [0, 1] scale, float32."""
        if self.kind == "percentile":
            return percentile_scale_values(values)
        if self.kind == "zscore":
            return robust_scale_values(values)
        if contrast not in self.landmarks:
            raise ValueError(
                f"standardisation=nyul has no landmarks for {contrast} (learned: {sorted(self.landmarks)})"
            )
        import torch
        import torchio as tio
        from torchio.transforms.preprocessing.intensity.histogram_standardization import STANDARD_RANGE

        image = tio.ScalarImage(tensor=torch.from_numpy(values.astype(np.float32).reshape(1, -1, 1, 1)))
        transform = tio.HistogramStandardization({"image": self.landmarks[contrast]})
        standardised = transform(tio.Subject(image=image))["image"].data.numpy().ravel()
        low, high = STANDARD_RANGE
        return np.clip((standardised - low) / (high - low), 0, 1).astype(np.float32)

    def volume(self, subject: Subject, contrast: str) -> np.ndarray:
        """A contrast of the subject on the [0, 1] scale, 0 outside the subject's brain, float32."""
        brain = subject.brain
        scaled = np.zeros(brain.shape, dtype=np.float32)
        put_values_at(scaled, brain, self.values(contrast, values_at(subject[contrast].data, brain)))
        return scaled

    def fingerprint(self) -> str:
        """A short text that differs between standardisations that scale differently (for caches)."""
        landmarks = ";".join(f"{c}:{np.round(v, 6).tolist()}" for c, v in sorted(self.landmarks.items()))
        return f"{self.kind}[{landmarks}]" if landmarks else self.kind

    def state(self) -> dict[str, np.ndarray]:
        return {f"{STATE_PREFIX}{contrast}": landmarks for contrast, landmarks in self.landmarks.items()}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.landmarks = {key.removeprefix(STATE_PREFIX): value for key, value in arrays.items()}
