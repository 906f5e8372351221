"""The neural systems (Pix2Pix, the segmentation model) as LightningModules, with their networks as
plain ``nn.Module``s. Filled in by the Pix2Pix and segmentation issues."""
