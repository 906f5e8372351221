"""Building blocks shared by the generators and the discriminator, 2-D or 3-D from one code path."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812 -- the usual alias
from torch import nn

Norm = Literal["batch", "instance"]
Upsampling = Literal["linear_additive", "deconvolution"]
NORMS = ("batch", "instance")
UPSAMPLINGS = ("linear_additive", "deconvolution")


def check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


def convolution(spatial_dims: int) -> type[nn.Module]:
    return nn.Conv3d if spatial_dims == 3 else nn.Conv2d


def transposed_convolution(spatial_dims: int) -> type[nn.Module]:
    return nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d


def normalisation(norm: Norm, spatial_dims: int, channels: int) -> nn.Module:
    """BatchNorm (affine, running statistics) or InstanceNorm (no affine, no running statistics),
    as in the reference's ``get_norm_layer``."""
    if norm == "batch":
        return (nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d)(channels)
    return (nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d)(channels)


def convolution_bias(norm: Norm) -> bool:
    """A convolution followed by BatchNorm needs no bias (BatchNorm's shift replaces it)."""
    return norm == "instance"


class LinearAdditiveUpsample(nn.Module):
    """Upsampling by 2 of Wojna et al. (2019): (bi/tri)linear interpolation, then every four
    consecutive channels summed into one. (N, C, *S) -> (N, C / 4, *2S); C must be divisible by 4."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.mode = "trilinear" if spatial_dims == 3 else "bilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=False)
        batch, channels, *spatial = upsampled.shape
        return upsampled.view(batch, channels // 4, 4, *spatial).sum(dim=2)


def initialise_weights(module: nn.Module, gain: float = 0.02) -> None:
    """The pix2pix initialisation: convolution weights from N(0, gain), zero biases, BatchNorm
    scales from N(1, gain) and zero shifts."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.conv._ConvNd):
            nn.init.normal_(layer.weight, 0.0, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(layer.weight, 1.0, gain)
            nn.init.zeros_(layer.bias)


PADDINGS = ("reflect", "symmetric")
Padding = Literal["reflect", "symmetric"]


class SymmetricPad(nn.Module):
    """Pads every spatial axis by ``width`` mirrored voxels, the edge voxel included: 2 1 0 | 0 1 2 ...
    (NumPy's ``symmetric``), where reflection gives 3 2 1 | 0 1 2 .... The reference's 3-D ResNet
    padded so."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.width
        for axis in range(2, x.dim()):
            before = x.narrow(axis, 0, w).flip(axis)
            after = x.narrow(axis, x.shape[axis] - w, w).flip(axis)
            x = torch.cat([before, x, after], axis)
        return x


def padded_convolution(
    spatial_dims: int, padding: Padding, in_channels: int, out_channels: int, kernel: int, bias: bool = True
) -> nn.Module:
    """A stride-1 convolution keeping the size, its border ``reflect``-padded (PyTorch's
    ``padding_mode``) or ``symmetric``-padded (:class:`SymmetricPad`)."""
    conv = convolution(spatial_dims)
    if padding == "reflect":
        return conv(in_channels, out_channels, kernel, padding=kernel // 2, padding_mode="reflect", bias=bias)
    return nn.Sequential(SymmetricPad(kernel // 2), conv(in_channels, out_channels, kernel, bias=bias))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the spatial axes of (N, C, *S) at both ends (replicated borders) to multiples of
    ``multiple``; returns the padded tensor and the slices that crop a same-sized output back."""
    spatial = x.shape[2:]
    before, after = [], []
    for size in spatial:
        missing = -size % multiple
        before.append(missing // 2)
        after.append(missing - missing // 2)
    if not any(before) and not any(after):
        return x, tuple(slice(None) for _ in x.shape)
    # F.pad lists (before, after) pairs from the last axis backwards.
    padding = [amount for axis in reversed(range(len(spatial))) for amount in (before[axis], after[axis])]
    padded = F.pad(x, padding, mode="replicate")
    crop = (slice(None), slice(None), *(slice(b, b + s) for b, s in zip(before, spatial, strict=True)))
    return padded, crop
