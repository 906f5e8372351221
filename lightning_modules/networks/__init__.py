"""The networks as plain ``nn.Module``s, 2-D or 3-D (``spatial_dims``), injected into the systems."""

from lightning_modules.networks.patchgan import PatchDiscriminator
from lightning_modules.networks.resnet import ResNetGenerator
from lightning_modules.networks.unet import UNetGenerator

__all__ = ["PatchDiscriminator", "ResNetGenerator", "UNetGenerator"]
