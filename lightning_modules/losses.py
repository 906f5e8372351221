"""The Pix2Pix losses (paper section 3; reference ``Pix2PixModel.backward_D`` / ``backward_G``)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812 -- the usual alias
from monai.metrics.regression import compute_ssim_and_cs

GanMode = Literal["vanilla", "lsgan", "hinge"]
GAN_MODES = ("vanilla", "lsgan", "hinge")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, mode: GanMode = "vanilla") -> torch.Tensor:
    """The discriminator's loss on a real and a synthetic pair.

    ``vanilla``: 0.5 [BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)] with logits (the reference's, forced
    for 3-D training); ``lsgan``: the same with squared errors; ``hinge``: mean relu(1 - real) +
    mean relu(1 + fake).
    """
    if mode == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    criterion = F.binary_cross_entropy_with_logits if mode == "vanilla" else F.mse_loss
    real = criterion(real_logits, torch.ones_like(real_logits))
    fake = criterion(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def generator_adversarial_loss(fake_logits: torch.Tensor, mode: GanMode = "vanilla") -> torch.Tensor:
    """The generator's adversarial term: the discriminator should call its output real."""
    if mode == "hinge":
        return -fake_logits.mean()
    criterion = F.binary_cross_entropy_with_logits if mode == "vanilla" else F.mse_loss
    return criterion(fake_logits, torch.ones_like(fake_logits))


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum |M (output - target)| / sum M: the mean absolute error over the mask's voxels, 0 for an
    empty mask (the paper's eq. (3) restricted to the brain, as its modification 4)."""
    weight = mask.to(output.dtype)
    # Mask counts are whole numbers: clamping to 1 changes only the empty case (0 / 1 = 0), with no
    # `if`, which would wait for the accelerator at every step.
    return (weight * (output - target)).abs().sum() / weight.sum().clamp_min(1)


def masked_mse(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum (M (output - target))^2 / sum M: the mean squared error over the mask's voxels, 0 for an
    empty mask (a crop without tumour). With the tumour mask this is the reference's tumour loss."""
    weight = mask.to(output.dtype)
    return (weight * (output - target)).square().sum() / weight.sum().clamp_min(1)


def masked_structural_dissimilarity(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, window: int = 7
) -> torch.Tensor:
    """1 - the mean local SSIM over the mask's voxels, 0 for an empty mask.

    Inputs are on the network's [-1, 1] scale; the SSIM is the evaluation's, on [0, 1] (SSIM is not
    shift-invariant): a uniform ``window``^d window, data range 1, K1 0.01, K2 0.03 (MONAI's, with the
    population covariance), in 2-D or 3-D as the (N, C, *S) tensors are. Only voxels half a window
    inside the patch count.
    """
    spatial_dims = output.dim() - 2
    local, _ = compute_ssim_and_cs(
        (output + 1) / 2, (target + 1) / 2, spatial_dims, [window] * spatial_dims, [1.5] * spatial_dims, 1.0, "uniform"
    )
    half = window // 2
    inner = mask[(..., *[slice(half, size - half) for size in mask.shape[2:]])].to(local.dtype)
    return (inner * (1 - local)).sum() / inner.sum().clamp_min(1)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """1 - the mean soft Dice of the foreground classes (all but class 0) over the batch.

    Args:
        logits: (N, K, *S) class scores.
        target: (N, *S) class indices in [0, K).
    """
    classes = logits.shape[1]
    probabilities = logits.softmax(dim=1)[:, 1:]
    one_hot = F.one_hot(target, classes).movedim(-1, 1)[:, 1:].to(probabilities.dtype)
    axes = (0, *range(2, logits.dim()))
    overlap = (probabilities * one_hot).sum(axes)
    total = probabilities.sum(axes) + one_hot.sum(axes)
    return 1 - ((2 * overlap + smooth) / (total + smooth)).mean()
