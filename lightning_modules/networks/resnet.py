"""The pix2pix ResNet generator (Johnson et al., 2016), as used for the paper's ResNet-6."""

from __future__ import annotations

import torch
from torch import nn

from common.checks import check_choice
from lightning_modules.networks.layers import (
    NORMS,
    PADDINGS,
    UPSAMPLINGS,
    LinearAdditiveUpsample,
    Norm,
    Padding,
    Upsampling,
    check_spatial_dims,
    convolution,
    convolution_bias,
    initialise_weights,
    normalisation,
    pad_to_multiple,
    padded_convolution,
    transposed_convolution,
)


class ResidualBlock(nn.Module):
    """x + [conv 3 -> norm -> ReLU -> (dropout 0.5) -> conv 3 -> norm](x), reflection- (or
    symmetric-) padded."""

    def __init__(
        self, spatial_dims: int, channels: int, norm: Norm, dropout: bool, padding: Padding = "reflect"
    ) -> None:
        super().__init__()
        bias = convolution_bias(norm)
        layers: list[nn.Module] = [
            padded_convolution(spatial_dims, padding, channels, channels, 3, bias),
            normalisation(norm, spatial_dims, channels),
            nn.ReLU(),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            padded_convolution(spatial_dims, padding, channels, channels, 3, bias),
            normalisation(norm, spatial_dims, channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetGenerator(nn.Module):
    """7x7 convolution, two stride-2 downsamplings, ``blocks`` residual blocks at 4 x
    ``base_filters`` channels, two upsamplings and a 7x7 convolution to a tanh image in [-1, 1].

    The paper's model is ``blocks=6`` (22.7 M parameters at 3-D with 64 base filters, as the
    reference); the pix2pix default is 9. Upsampling is :class:`LinearAdditiveUpsample` followed by
    a 3x3 convolution (the reference's default) or a 3x3 stride-2 transposed convolution.

    Unlike the reference, inputs whose size is not a multiple of 4 (155 axial slices) are padded and
    the output cropped back, so the output has the input's shape exactly: the reference returned
    156 slices and its centre crop shifted the prediction by one slice.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels.
        base_filters: channels after the first convolution (the reference's ``ngf``).
        blocks: number of residual blocks.
        norm: ``batch`` or ``instance``.
        upsampling: ``linear_additive`` or ``deconvolution``.
        dropout: dropout 0.5 inside each residual block (the reference's default: on).
        padding: how the 7x7 and the residual blocks' 3x3 convolutions pad the border: ``reflect``
            (default: PyTorch's reflection, as pix2pix and the reference's 2-D ResNet) or
            ``symmetric`` (the edge voxel repeated, as the reference's own 3-D padding: with it the
            3-D ResNet matches the reference's outputs exactly on the same weights).

    Shapes: (N, in_channels, *S) -> (N, out_channels, *S).
    """

    stride = 4

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        base_filters: int = 64,
        blocks: int = 6,
        norm: Norm = "batch",
        upsampling: Upsampling = "linear_additive",
        dropout: bool = True,
        padding: Padding = "reflect",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_choice("norm", norm, NORMS)
        check_choice("upsampling", upsampling, UPSAMPLINGS)
        check_choice("padding", padding, PADDINGS)
        if blocks < 0:
            raise ValueError(f"blocks must be non-negative, got {blocks}")
        conv = convolution(spatial_dims)
        bias = convolution_bias(norm)
        f = base_filters
        layers: list[nn.Module] = [
            padded_convolution(spatial_dims, padding, in_channels, f, 7, bias),
            normalisation(norm, spatial_dims, f),
            nn.ReLU(),
        ]
        for width in (f, 2 * f):
            layers += [
                conv(width, 2 * width, 3, stride=2, padding=1, bias=bias),
                normalisation(norm, spatial_dims, 2 * width),
                nn.ReLU(),
            ]
        layers += [ResidualBlock(spatial_dims, 4 * f, norm, dropout, padding) for _ in range(blocks)]
        for width in (4 * f, 2 * f):
            if upsampling == "linear_additive":
                # The reference gives these convolutions a bias even before a norm; kept for parity.
                layers += [LinearAdditiveUpsample(spatial_dims), conv(width // 4, width // 2, 3, padding=1)]
            else:
                layers.append(
                    transposed_convolution(spatial_dims)(
                        width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
                    )
                )
            layers += [normalisation(norm, spatial_dims, width // 2), nn.ReLU()]
        layers += [padded_convolution(spatial_dims, padding, f, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        initialise_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, crop = pad_to_multiple(x, self.stride)
        return self.model(padded)[crop]
