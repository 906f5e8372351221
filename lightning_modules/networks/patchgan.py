"""The PatchGAN discriminator of pix2pix (Isola et al., 2017)."""

from __future__ import annotations

import torch
from torch import nn

from common.checks import check_choice
from lightning_modules.networks.layers import (
    NORMS,
    Norm,
    check_spatial_dims,
    convolution,
    convolution_bias,
    initialise_weights,
    normalisation,
)


class PatchDiscriminator(nn.Module):
    """Classifies overlapping patches as real or synthetic: one logit per patch.

    ``layers`` stride-2 4x4 convolutions (channels ``base_filters`` doubling up to 8x), one stride-1
    convolution and a stride-1 convolution to one channel; LeakyReLU 0.2, a norm after every
    convolution but the first and the last. With 3 layers a 128^3 input gives a 14^3 logit map
    (a 70-voxel receptive field) and, at 3-D with 64 base filters, 11.1 M parameters as the reference.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the concatenated (T1, T2) input.
        base_filters: channels of the first convolution (the reference's ``ndf``).
        layers: number of stride-2 convolutions.
        norm: ``batch`` or ``instance``.

    Shapes: (N, in_channels, *S) -> (N, 1, *S'), S' = S / 2^layers - 2.
    """

    def __init__(
        self, spatial_dims: int = 3, in_channels: int = 2, base_filters: int = 64, layers: int = 3, norm: Norm = "batch"
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_choice("norm", norm, NORMS)
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        conv = convolution(spatial_dims)
        bias = convolution_bias(norm)
        modules: list[nn.Module] = [conv(in_channels, base_filters, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = base_filters
        for index in range(1, layers + 1):
            next_width = base_filters * min(2**index, 8)
            stride = 2 if index < layers else 1
            modules += [
                conv(width, next_width, 4, stride=stride, padding=1, bias=bias),
                normalisation(norm, spatial_dims, next_width),
                nn.LeakyReLU(0.2),
            ]
            width = next_width
        modules.append(conv(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*modules)
        initialise_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
