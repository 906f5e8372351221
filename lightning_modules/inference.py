"""Whole-volume and sliding-window synthesis with a trained generator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torchio as tio
from torch import nn

from common.checks import check_choice
from datamodules.preprocessing import median_per_axial_slice, smooth_across_slices

InferenceMode = Literal["whole", "sliding_window"]
INFERENCE_MODES = ("whole", "sliding_window")
PRECISIONS = ("32", "16-mixed", "bf16-mixed")


@dataclass
class InferenceSettings:
    """How a generator turns a volume into a volume.

    Attributes:
        mode: ``whole``: the whole (brain-cropped) volume in one pass, padded to a multiple of the
            network's stride and cropped back exactly; ``sliding_window``: overlapping patches
            (TorchIO ``GridSampler``) blended with Hann weights (``GridAggregator``), for volumes too
            large for the accelerator's memory. In 2-D both work slice by slice.
        patch_size, overlap: sliding-window patch and overlap, in voxels (x, y, z).
        batch_size: patches or slices per forward pass.
        stochastic: run the generator in training mode (dropout on, batch statistics), as the
            reference's test script did; default ``eval()`` (deterministic).
        median_filter: apply the 3x3 per-axial-slice median to the output (as the reference's
            ``_median`` outputs).
        slice_sigma: a Gaussian of this many voxels across axial slices, inside the brain (0: none):
            for a 2-D generator, whose slices are made one by one, against their jitter from slice
            to slice.
        precision: ``32``, ``16-mixed`` or ``bf16-mixed`` (autocast on the accelerator).
    """

    mode: InferenceMode = "whole"
    patch_size: Sequence[int] = (128, 128, 128)
    overlap: Sequence[int] = (32, 32, 32)
    batch_size: int = 1
    stochastic: bool = False
    median_filter: bool = False
    slice_sigma: float = 0.0
    precision: str = "32"

    def __post_init__(self) -> None:
        check_choice("inference mode", self.mode, INFERENCE_MODES)
        check_choice("inference precision", str(self.precision), PRECISIONS)
        if self.slice_sigma < 0:
            raise ValueError(f"slice_sigma must be non-negative, got {self.slice_sigma}")
        if any(o >= p for o, p in zip(self.overlap, self.patch_size, strict=True)):
            raise ValueError(f"overlap {list(self.overlap)} must be smaller than patch_size {list(self.patch_size)}")


@contextlib.contextmanager
def generator_mode(generator: nn.Module, stochastic: bool) -> Iterator[None]:
    """eval() (or train() for the reference's stochastic inference) for the duration, then restore."""
    was_training = generator.training
    generator.train(stochastic)
    try:
        yield
    finally:
        generator.train(was_training)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if str(precision) == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if str(precision).startswith("bf16") else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _run(generator: nn.Module, batch: torch.Tensor, device: torch.device, precision: str) -> torch.Tensor:
    with autocast(device, precision):
        return generator(batch.to(device)).float().cpu()


def _whole(
    network: nn.Module, volume: torch.Tensor, spatial_dims: int, settings: InferenceSettings, device: torch.device
) -> torch.Tensor:
    if spatial_dims == 3:
        return _run(network, volume[None], device, settings.precision)[0]
    slices = volume.permute(3, 0, 1, 2)  # (Z, C, X, Y): axial slices as a batch
    outputs = [
        _run(network, slices[start : start + settings.batch_size], device, settings.precision)
        for start in range(0, slices.shape[0], settings.batch_size)
    ]
    return torch.cat(outputs).permute(1, 2, 3, 0)


def _sliding_window(
    network: nn.Module, volume: torch.Tensor, spatial_dims: int, settings: InferenceSettings, device: torch.device
) -> torch.Tensor:
    patch_size = (*settings.patch_size[:2], 1) if spatial_dims == 2 else tuple(settings.patch_size)
    overlap = (*settings.overlap[:2], 0) if spatial_dims == 2 else tuple(settings.overlap)
    subject = tio.Subject(volume=tio.ScalarImage(tensor=volume))
    # Patches beyond the border are padded with the background value -1.
    sampler = tio.GridSampler(subject, patch_size, overlap, padding_mode=-1.0)
    aggregator = tio.GridAggregator(sampler, overlap_mode="hann")
    loader = torch.utils.data.DataLoader(sampler, batch_size=settings.batch_size)
    for patches in loader:
        batch = patches["volume"][tio.DATA]
        if spatial_dims == 2:
            output = _run(network, batch[..., 0], device, settings.precision)[..., None]
        else:
            output = _run(network, batch, device, settings.precision)
        aggregator.add_batch(output, patches[tio.LOCATION])
    return aggregator.get_output_tensor()


@torch.no_grad()
def infer(
    network: nn.Module,
    volume: np.ndarray,
    spatial_dims: int,
    settings: InferenceSettings,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The network's output for a (C, X, Y, Z) volume: (K, X, Y, Z) float32, K output channels."""
    device = torch.device(device)
    tensor = torch.as_tensor(np.ascontiguousarray(volume), dtype=torch.float32)
    run = _whole if settings.mode == "whole" else _sliding_window
    with generator_mode(network, settings.stochastic):
        output = run(network, tensor, spatial_dims, settings, device)
    if tuple(output.shape[1:]) != tuple(volume.shape[1:]):  # a broken invariant, not bad input
        raise AssertionError(f"network output {tuple(output.shape)} does not match input {volume.shape}")
    return output.numpy().astype(np.float32)


def synthesise(
    generator: nn.Module,
    sources: np.ndarray,
    spatial_dims: int,
    settings: InferenceSettings,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The generator's output for the source contrasts on the network scale [-1, 1]: (C, X, Y, Z),
    or one (X, Y, Z) volume; returns (X, Y, Z) float32."""
    volume = sources[None] if sources.ndim == 3 else sources
    return infer(generator, volume, spatial_dims, settings, device)[0]


def finished_outputs(synthetic: np.ndarray, brain: np.ndarray, settings: InferenceSettings) -> dict[str, np.ndarray]:
    """What inference writes from a generator's output on the unit scale, 0 outside ``brain``,
    smoothed across slices when ``slice_sigma`` is set: under ``""``, median-filtered when
    ``median_filter`` is set (the unfiltered volume then under ``"unfiltered"``)."""
    synthetic = np.where(brain, synthetic, 0).astype(np.float32)
    if settings.slice_sigma > 0:
        synthetic = smooth_across_slices(synthetic, settings.slice_sigma, brain)
    if not settings.median_filter:
        return {"": synthetic}
    return {"": median_per_axial_slice(synthetic, inside=brain), "unfiltered": synthetic}
