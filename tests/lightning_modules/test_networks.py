"""Generators and discriminator: shapes (odd sizes included), parameter counts, building blocks."""

import numpy as np
import pytest
import torch

from lightning_modules.networks import PatchDiscriminator, ResNetGenerator, UNetGenerator
from lightning_modules.networks.layers import LinearAdditiveUpsample, pad_to_multiple


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("upsampling", ["linear_additive", "deconvolution"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize(("spatial_dims", "shape"), [(3, (17, 24, 9)), (3, (32, 32, 32)), (2, (31, 20)), (2, (64, 64))])
def test_unet_returns_the_input_shape(spatial_dims, shape, norm, upsampling):
    generator = UNetGenerator(spatial_dims, base_filters=4, downsamplings=5, norm=norm, upsampling=upsampling).eval()
    output = generator(torch.randn(2, 1, *shape))
    assert output.shape == (2, 1, *shape)
    assert output.abs().max() <= 1  # tanh


@pytest.mark.parametrize("upsampling", ["linear_additive", "deconvolution"])
@pytest.mark.parametrize(("spatial_dims", "shape"), [(3, (13, 10, 7)), (3, (12, 12, 155 // 10)), (2, (15, 9))])
def test_resnet_returns_the_input_shape(spatial_dims, shape, upsampling):
    generator = ResNetGenerator(spatial_dims, base_filters=4, blocks=2, upsampling=upsampling).eval()
    assert generator(torch.randn(1, 1, *shape)).shape == (1, 1, *shape)


@pytest.mark.parametrize("factory", [ResNetGenerator, UNetGenerator])
def test_odd_depth_output_is_aligned_with_the_input(factory):
    """The reference's ResNet returned 156 slices for 155 and its centre crop shifted the output by
    one slice. Here 15 slices are padded to 16 by repeating the last one: when the 16-slice input's
    last two slices are equal, the 15-slice output must be the 16-slice output's first 15 slices."""
    torch.manual_seed(0)
    kwargs = {"blocks": 1} if factory is ResNetGenerator else {"downsamplings": 5}
    generator = factory(3, base_filters=4, **kwargs).eval()
    volume = torch.randn(1, 1, 32, 32, 16)
    volume[..., 15] = volume[..., 14]
    with torch.no_grad():
        full, odd = generator(volume), generator(volume[..., :15])
    assert odd.shape[-1] == 15
    torch.testing.assert_close(odd, full[..., :15])


def test_parameter_counts_match_the_reference():
    assert round(parameters(UNetGenerator(3)) / 1e6, 1) == 72.5
    assert round(parameters(ResNetGenerator(3, blocks=6)) / 1e6, 1) == 22.7
    assert round(parameters(PatchDiscriminator(3)) / 1e6, 1) == 11.1


def test_discriminator_patch_map_size():
    discriminator = PatchDiscriminator(3, base_filters=4)
    assert discriminator(torch.randn(1, 2, 128, 128, 128)).shape == (1, 1, 14, 14, 14)
    assert PatchDiscriminator(2, base_filters=4)(torch.randn(3, 2, 64, 64)).shape == (3, 1, 6, 6)


def test_linear_additive_upsample_sums_groups_of_four_channels():
    x = torch.arange(8, dtype=torch.float32).view(1, 8, 1, 1, 1).expand(1, 8, 2, 2, 2)
    output = LinearAdditiveUpsample(3)(x.contiguous())
    assert output.shape == (1, 2, 4, 4, 4)
    # Constant channels interpolate to themselves: 0+1+2+3 and 4+5+6+7.
    assert torch.allclose(output[0, 0], torch.full((4, 4, 4), 6.0))
    assert torch.allclose(output[0, 1], torch.full((4, 4, 4), 22.0))


def test_pad_to_multiple_crops_back_exactly():
    x = torch.randn(1, 1, 5, 8, 3)
    padded, crop = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 8, 8, 4)
    assert torch.equal(padded[crop], x)


@pytest.mark.parametrize(
    ("factory", "kwargs", "argument"),
    [
        (UNetGenerator, {"downsamplings": 3}, "downsamplings"),
        (UNetGenerator, {"norm": "layer"}, "norm"),
        (UNetGenerator, {"spatial_dims": 1}, "spatial_dims"),
        (ResNetGenerator, {"upsampling": "nearest"}, "upsampling"),
        (PatchDiscriminator, {"layers": 0}, "layers"),
    ],
)
def test_bad_arguments_name_the_argument(factory, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        factory(**kwargs)


def test_symmetric_padding_repeats_the_edge_voxel_as_the_reference_3d_resnet():
    from lightning_modules.networks.layers import SymmetricPad

    line = torch.arange(6.0).reshape(1, 1, 6, 1, 1).expand(1, 1, 6, 3, 3)
    padded = SymmetricPad(3)(line)
    assert padded[0, 0, :, 0, 0].tolist() == [2, 1, 0, 0, 1, 2, 3, 4, 5, 5, 4, 3]  # 2,1,0 | 0...5 | 5,4,3
    volume = torch.randn(2, 3, 5, 4, 6)
    expected = np.pad(volume.numpy(), [(0, 0), (0, 0), (2, 2), (2, 2), (2, 2)], mode="symmetric")
    np.testing.assert_array_equal(SymmetricPad(2)(volume).numpy(), expected)


def test_resnet_padding_option_keeps_shapes_and_refuses_unknown_modes():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 12, 12, 8)
    reflect = ResNetGenerator(3, base_filters=2, blocks=1).eval()
    symmetric = ResNetGenerator(3, base_filters=2, blocks=1, padding="symmetric").eval()
    assert sum(p.numel() for p in symmetric.parameters()) == sum(p.numel() for p in reflect.parameters())
    assert symmetric(x).shape == reflect(x).shape == x.shape
    with pytest.raises(ValueError, match="padding must be one of"):
        ResNetGenerator(3, padding="zeros")
