"""The pix2pix UNet generator (Isola et al., 2017), as used for the paper's UNet-128."""

from __future__ import annotations

import torch
from torch import nn

from common.checks import check_choice
from lightning_modules.networks.layers import (
    NORMS,
    UPSAMPLINGS,
    LinearAdditiveUpsample,
    Norm,
    Upsampling,
    check_spatial_dims,
    convolution,
    convolution_bias,
    initialise_weights,
    normalisation,
    pad_to_multiple,
    transposed_convolution,
)


class UNetGenerator(nn.Module):
    """An encoder of ``downsamplings`` stride-2 convolutions and a mirrored decoder with skip
    connections; the output is a tanh image in [-1, 1].

    UNet-128 is ``downsamplings=7`` (a 128-voxel patch reaches a 1-voxel bottleneck). Channels double
    from ``base_filters`` up to 8 x ``base_filters``; the decoder blocks of the intermediate
    8 x ``base_filters`` levels (all but the innermost and the three outer ones) apply dropout 0.5.
    With ``upsampling="linear_additive"`` (the reference's default) each decoder block is
    ReLU -> :class:`LinearAdditiveUpsample` -> 3x3 convolution -> norm; with ``"deconvolution"`` it
    is ReLU -> 4x4 stride-2 transposed convolution -> norm. At 3-D with 64 base filters this has
    72.5 M parameters (linear additive), as the reference.

    Inputs of any size are padded to a multiple of ``2 ** downsamplings`` (replicated borders) and
    the output is cropped back, so the output has the input's shape exactly.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels.
        base_filters: channels after the first convolution (the reference's ``ngf``).
        downsamplings: number of stride-2 convolutions, at least 5.
        norm: ``batch`` or ``instance``.
        upsampling: ``linear_additive`` or ``deconvolution``.
        dropout: apply dropout 0.5 in the intermediate decoder blocks.
        tanh: end with tanh (an image in [-1, 1]); False gives raw outputs (segmentation logits).

    Shapes: (N, in_channels, *S) -> (N, out_channels, *S).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        base_filters: int = 64,
        downsamplings: int = 7,
        norm: Norm = "batch",
        upsampling: Upsampling = "linear_additive",
        dropout: bool = True,
        tanh: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_choice("norm", norm, NORMS)
        check_choice("upsampling", upsampling, UPSAMPLINGS)
        if downsamplings < 5:
            raise ValueError(f"downsamplings must be at least 5 (the outer four levels are fixed), got {downsamplings}")
        if base_filters % 4:
            raise ValueError(f"base_filters must be divisible by 4, got {base_filters}")
        self.stride = 2**downsamplings
        conv = convolution(spatial_dims)
        bias = convolution_bias(norm)

        # Channels at each level, outermost first: f, 2f, 4f, 8f, 8f, ... (downsamplings levels).
        widths = [base_filters * min(2**level, 8) for level in range(downsamplings)]
        self.encoder = nn.ModuleList()
        for level, width in enumerate(widths):
            if level == 0:
                self.encoder.append(conv(in_channels, width, 4, stride=2, padding=1, bias=bias))
                continue
            layers: list[nn.Module] = [
                nn.LeakyReLU(0.2),
                conv(widths[level - 1], width, 4, stride=2, padding=1, bias=bias),
            ]
            if level < downsamplings - 1:  # the innermost convolution has no norm
                layers.append(normalisation(norm, spatial_dims, width))
            self.encoder.append(nn.Sequential(*layers))

        # Decoder block `level` maps the features below it back to level - 1's resolution and width.
        self.decoder = nn.ModuleList()
        for level in reversed(range(downsamplings)):
            innermost, outermost = level == downsamplings - 1, level == 0
            in_width = widths[level] * (1 if innermost else 2)  # the innermost has no skip to concatenate
            out_width = out_channels if outermost else widths[level - 1]
            layers = [nn.ReLU()]
            if upsampling == "linear_additive":
                # The reference gives these convolutions a bias even before a norm; kept for parity.
                layers += [LinearAdditiveUpsample(spatial_dims), conv(in_width // 4, out_width, 3, padding=1)]
            else:
                layers.append(
                    transposed_convolution(spatial_dims)(
                        in_width, out_width, 4, stride=2, padding=1, bias=outermost or bias
                    )
                )
            if outermost:
                if tanh:
                    layers.append(nn.Tanh())
            else:
                layers.append(normalisation(norm, spatial_dims, out_width))
                if dropout and 3 < level < downsamplings - 1:
                    layers.append(nn.Dropout(0.5))
            self.decoder.append(nn.Sequential(*layers))
        initialise_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, crop = pad_to_multiple(x, self.stride)
        skips = []
        features = padded
        for block in self.encoder:
            features = block(features)
            skips.append(features)
        skips.pop()  # the bottleneck is the decoder's input, not a skip
        for block in self.decoder:
            features = block(features)
            if skips:
                features = torch.cat([skips.pop(), features], dim=1)
        return features[crop]
