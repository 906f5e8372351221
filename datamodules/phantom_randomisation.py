"""Randomised source contrasts for the phantom, so that what a model learns from it holds across the
protocols of real scans: per generated subject, each source contrast (T1, T1CE, FLAIR) gets its own
tissue intensities, contrast curve, bias field, slice thickness, blur and noise, drawn by TorchIO's
random transforms, while the target (T2) and the segmentation stay exactly the plain phantom's.

Each option is the upper end of its range (0, or 1 for ``slice_thickness``, turns it off); all off,
the default, leaves the phantom as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

#: The contrasts that are randomised: every one the phantom writes but the target it teaches (T2).
RANDOMISED_CONTRASTS = ("t1n", "t1c", "t2f")


@dataclass(frozen=True)
class PhantomRandomisation:
    """Ranges of the per-subject randomisation of the source contrasts.

    ``contrast``: each tissue's mean intensity drawn within ± this fraction of its signal-equation
    value (RandomLabelsToImage over the partial-volume tissue maps). ``texture``: the within-tissue
    sd, up to this fraction of the tissue's value. ``gamma``: log-gamma within ± this (RandomGamma: a
    nonlinear contrast curve). ``bias_field``: the coefficients of an order-3 polynomial bias field
    within ± this (RandomBiasField). ``slice_thickness``: slices along the last axis up to this many
    times thicker (RandomAnisotropy). ``blur``: Gaussian blur sd up to this many mm (RandomBlur).
    ``noise``: Gaussian noise sd up to this fraction of the mean brain intensity (RandomNoise).
    """

    contrast: float = 0.0
    texture: float = 0.0
    gamma: float = 0.0
    bias_field: float = 0.0
    slice_thickness: float = 1.0
    blur: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
                raise ValueError(f"randomise.{field.name} must be a number, got {value!r}")
        negative = [f.name for f in fields(self) if getattr(self, f.name) < 0]
        if negative:
            raise ValueError(f"randomise.{negative[0]} must be >= 0, got {getattr(self, negative[0])}")
        if self.contrast >= 1:
            raise ValueError(f"randomise.contrast must be below 1 (a fraction), got {self.contrast}")
        if self.slice_thickness < 1:
            raise ValueError(f"randomise.slice_thickness must be >= 1 (1: off), got {self.slice_thickness}")

    @classmethod
    def of(cls, options: Mapping[str, float] | PhantomRandomisation | None) -> PhantomRandomisation:
        """From a config mapping (unknown keys refused), an instance, or None (off)."""
        if isinstance(options, PhantomRandomisation):
            return options
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"randomise: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")
        numbers = {
            name: float(value) if isinstance(value, int) and not isinstance(value, bool) else value
            for name, value in options.items()
        }  # 4 and 4.0 are one randomisation, with one cache folder
        return cls(**numbers)

    @property
    def active(self) -> bool:
        return self != PhantomRandomisation()

    def changed(self) -> dict[str, float]:
        """The options that differ from the default (off), for names and records."""
        default = asdict(PhantomRandomisation())
        return {name: value for name, value in asdict(self).items() if value != default[name]}

    def source_image(
        self,
        fractions: Mapping[str, np.ndarray],
        tissue_signals: Mapping[str, float],
        affine: np.ndarray,
        seed: Sequence[int],
    ) -> np.ndarray:
        """One source contrast's noise-free-scale image from the tissues' partial-volume ``fractions``
        and their signal-equation values, randomised; deterministic in ``seed`` (the global torch
        generator is left as it was)."""
        import torchio as tio

        names = list(tissue_signals)
        channels = np.stack([fractions[name] for name in names]).astype(np.float32)
        background = np.clip(1.0 - channels.sum(axis=0, keepdims=True), 0.0, 1.0)
        label_map = tio.LabelMap(tensor=torch.from_numpy(np.concatenate([background, channels])), affine=affine)
        values = [float(tissue_signals[name]) for name in names]
        to_image = tio.RandomLabelsToImage(
            label_key="tissues",
            image_key="image",
            mean=[(0.0, 0.0)] + [(v * (1 - self.contrast), v * (1 + self.contrast)) for v in values],
            std=[(0.0, 0.0)] + [(0.0, v * self.texture) for v in values],
            ignore_background=True,
        )
        brain_mean = float(np.mean(values))
        degrade = [
            tio.RandomGamma(log_gamma=(-self.gamma, self.gamma), include=["image"]),
            tio.RandomBlur(std=(0.0, self.blur), include=["image"]),
            tio.RandomNoise(std=(0.0, self.noise * brain_mean), include=["image"]),
        ]
        if self.slice_thickness > 1:
            thicker = tio.RandomAnisotropy(axes=(2,), downsampling=(1.0, self.slice_thickness), include=["image"])
            degrade.insert(1, thicker)
        state = np.random.SeedSequence(list(seed)).generate_state(1)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(state))
            image = to_image(tio.Subject(tissues=label_map))["image"]
            data = image.data.clamp(min=0.0)  # gamma needs non-negative values
            if self.bias_field > 0:
                data = data * self.bias(data.shape[1:])
            image.set_data(data)
            image = tio.Compose(degrade)(tio.Subject(image=image))["image"]
        return image.data[0].numpy().astype(np.float32)

    def bias(self, shape: Sequence[int]) -> torch.Tensor:
        """A multiplicative field from RandomBiasField, drawn on a grid 4 times coarser (the field is
        a polynomial in coordinates normalised to the grid, so the coarse one is the same field; at full
        size it costs 10 s a volume) and interpolated linearly to ``shape``."""
        import torchio as tio
        from scipy import ndimage

        coarse = tuple(max(2, -(-size // 4)) for size in shape)
        ones = tio.ScalarImage(tensor=torch.ones(1, *coarse))
        field = tio.RandomBiasField(coefficients=self.bias_field, order=3)(ones).data[0].numpy()
        zoom = [size / c for size, c in zip(shape, coarse, strict=True)]
        return torch.from_numpy(ndimage.zoom(field, zoom, order=1, grid_mode=True, mode="nearest"))
