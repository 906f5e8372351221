"""Pix2Pix (Isola et al., 2017) as the paper trains it: a conditional GAN from T1 to T2 (or from any
source contrasts, one input channel each, to a target) with a brain-masked L1 and a tumour-weighted
MSE (paper section 3, eqs. (2)-(4))."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from common.checks import check_choice
from datamodules.patches import from_network_scale
from lightning_modules.inference import InferenceSettings, finished_outputs, synthesise
from lightning_modules.losses import (
    GAN_MODES,
    GanMode,
    discriminator_loss,
    generator_adversarial_loss,
    masked_l1,
    masked_mse,
    masked_structural_dissimilarity,
)
from lightning_modules.panels import log_panel
from lightning_modules.schedules import linear_decay

TumourLoss = Literal["masked_output", "masked_input"]
TUMOUR_LOSSES = ("masked_output", "masked_input")


class Pix2Pix(pl.LightningModule):
    """A generator G (sources -> target, T1 -> T2 in the paper) and a PatchGAN discriminator D on
    (sources..., target) channels, trained with manual optimisation: per batch, one D step then one
    G step (D frozen), as the reference. A batch holds one (N, 1, *S) tensor per contrast, by name;
    the sources are stacked as channels in the order given.

    G's loss = GAN + ``lambda_l1`` * L1 over the target's brain voxels + ``gamma_tumour`` * MSE over
    the tumour voxels (+ ``lambda_ssim`` * (1 - SSIM) over the brain, not in the paper). The tumour term
    (``tumour_loss``):

    - ``masked_output`` (default, the reference code): sum (T G(x) - T y)^2 / sum T;
    - ``masked_input`` (the paper's eq. (4) as written): sum (T y - G(T x))^2 / sum T, a second
      generator pass on the tumour-masked sources (voxels outside the tumour set to 0).

    ``forward`` is inference only: (N, sources, *S) on the network scale -> the target on the
    network scale.

    Args:
        generator, discriminator: the networks (:mod:`lightning_modules.networks`), with
            ``len(sources)`` and ``len(sources) + 1`` input channels.
        sources, target: the contrasts' names in the batch.
        channels_last: keep weights and inputs in the channels-last memory format (cuDNN's fast
            layout for 3-D convolutions); None: on a GPU. The method's config keeps it off until it
            has been measured on one.
        fused_adam: Adam's fused implementation (one kernel per step instead of a loop); None: on a GPU.
        compile: ``torch.compile`` both networks (``True``: the default backend, or a backend's name);
            the first steps then pay for compilation.
        spatial_dims: 2 or 3, as the networks.
        lambda_l1, gamma_tumour: the loss weights (the config's top-level ``lambda`` and ``gamma``).
        lambda_ssim: the weight of the structural term, 1 - the evaluation's SSIM over the brain's voxels
            (0: the paper's loss, and the term is not computed).
        gan_mode: ``vanilla`` (the reference), ``lsgan`` or ``hinge``.
        learning_rate, betas: Adam's, for both networks.
        constant_iterations, decay_iterations: learning-rate schedule, in training iterations.
        inference: how validation volumes are synthesised.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        spatial_dims: int = 3,
        lambda_l1: float = 100.0,
        gamma_tumour: float = 0.0,
        lambda_ssim: float = 0.0,
        gan_mode: GanMode = "vanilla",
        tumour_loss: TumourLoss = "masked_output",
        learning_rate: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
        constant_iterations: int = 50_000,
        decay_iterations: int = 50_000,
        inference: InferenceSettings | None = None,
        sources: Sequence[str] = ("t1",),
        target: str = "t2",
        channels_last: bool | None = None,
        fused_adam: bool | None = None,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        check_choice("gan_mode", gan_mode, GAN_MODES)
        check_choice("tumour_loss", tumour_loss, TUMOUR_LOSSES)
        if lambda_l1 < 0 or gamma_tumour < 0:
            raise ValueError(f"lambda ({lambda_l1}) and gamma ({gamma_tumour}) must be non-negative")
        if lambda_ssim < 0:
            raise ValueError(f"lambda_ssim ({lambda_ssim}) must be non-negative")
        self.save_hyperparameters(ignore=["generator", "discriminator", "inference"])
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.spatial_dims = spatial_dims
        self.inference = inference or InferenceSettings()
        self.sources, self.target = list(sources), target

    #: Logged values shown in the training progress.
    progress_metrics = ("train/g_total", "train/g_l1_brain", "train/d_loss")

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        return self.generator(sources)

    def source_channels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, sources, *S): the batch's source contrasts stacked in order (channels last if set)."""
        return torch.cat([batch[contrast] for contrast in self.sources], 1).contiguous(memory_format=self.memory_format)

    def on_gpu_or(self, setting: bool | None) -> bool:
        """A performance setting's value: as given, or (None) whether training runs on a GPU."""
        return self.device.type == "cuda" if setting is None else bool(setting)

    @property
    def memory_format(self) -> torch.memory_format:
        if not self.on_gpu_or(self.hparams.channels_last):
            return torch.contiguous_format
        return torch.channels_last_3d if self.spatial_dims == 3 else torch.channels_last

    def prepare_networks(self) -> None:
        """Memory format and compilation; Lightning creates the optimisers (below) once the networks
        are on their device, so this is done there, before the optimisers see the parameters."""
        for network in (self.generator, self.discriminator):
            network.to(memory_format=self.memory_format)
            if self.hparams.compile:
                backend = self.hparams.compile if isinstance(self.hparams.compile, str) else "inductor"
                network.compile(backend=backend)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        self.prepare_networks()
        schedule = linear_decay(hp.constant_iterations, hp.decay_iterations)
        fused = self.on_gpu_or(hp.fused_adam)
        optimisers = [
            torch.optim.Adam(network.parameters(), lr=hp.learning_rate, betas=tuple(hp.betas), fused=fused or None)
            for network in (self.generator, self.discriminator)
        ]
        schedulers = [torch.optim.lr_scheduler.LambdaLR(optimiser, schedule) for optimiser in optimisers]
        return optimisers, schedulers

    def generator_losses(self, batch: dict[str, torch.Tensor], fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term of G's loss, unweighted, and the weighted ``total``."""
        hp = self.hparams
        sources, real, tumour = self.source_channels(batch), batch[self.target], batch["tumour"]
        terms = {
            "adversarial": generator_adversarial_loss(self.discriminator(torch.cat([sources, fake], 1)), hp.gan_mode),
            "l1_brain": masked_l1(fake, real, batch["brain"]),
        }
        if hp.tumour_loss == "masked_output":
            terms["mse_tumour"] = masked_mse(fake, real, tumour)
        elif hp.gamma_tumour > 0:  # zero without tumour voxels, with no `if` that waits for the accelerator
            fake_on_tumour = self.generator(sources * tumour)
            count = tumour.sum()
            terms["mse_tumour"] = (fake_on_tumour - real * tumour).square().sum() / count.clamp_min(1) * (count > 0)
        else:
            terms["mse_tumour"] = fake.sum() * 0
        terms["total"] = terms["adversarial"] + hp.lambda_l1 * terms["l1_brain"] + hp.gamma_tumour * terms["mse_tumour"]
        if hp.lambda_ssim > 0:
            terms["dssim_brain"] = masked_structural_dissimilarity(fake, real, batch["brain"])
            terms["total"] = terms["total"] + hp.lambda_ssim * terms["dssim_brain"]
        return terms

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        generator_optimiser, discriminator_optimiser = self.optimizers()
        sources, real = self.source_channels(batch), batch[self.target]
        fake = self.generator(sources)

        # Discriminator step on a real and a synthetic pair.
        real_logits = self.discriminator(torch.cat([sources, real], 1))
        fake_logits = self.discriminator(torch.cat([sources, fake.detach()], 1))
        loss_d = discriminator_loss(real_logits, fake_logits, self.hparams.gan_mode)
        discriminator_optimiser.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        discriminator_optimiser.step()

        # Generator step with the discriminator frozen (and unfrozen again even if the step fails).
        with self.toggled_optimizer(generator_optimiser):
            terms = self.generator_losses(batch, fake)
            generator_optimiser.zero_grad(set_to_none=True)
            self.manual_backward(terms["total"])
            generator_optimiser.step()

        for scheduler in self.lr_schedulers():
            scheduler.step()
        logged = {f"train/g_{name}": value.detach() for name, value in terms.items()}
        logged["train/d_loss"] = loss_d.detach()
        logged["train/lr"] = torch.tensor(generator_optimiser.param_groups[0]["lr"])
        self.log_dict(logged, batch_size=sources.shape[0])

    def on_train_epoch_start(self) -> None:
        sampler = getattr(self.trainer.datamodule, "subject_sampler", None)
        if sampler is not None:
            sampler.set_epoch(self.current_epoch)

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        sources = self.source_channels(batch)[0].cpu().numpy()
        real = from_network_scale(batch[self.target][0, 0].cpu().numpy())
        brain = batch["brain"][0, 0].cpu().numpy()
        output = synthesise(self.generator, sources, self.spatial_dims, self.inference, self.device)
        synthetic = finished_outputs(from_network_scale(output), brain, self.inference)[""]  # what predict writes
        error = np.abs(synthetic - real)
        self.log_dict(
            {"val/mae_brain": float(error[brain].mean()), "val/mse_brain": float((error[brain] ** 2).mean())},
            batch_size=1,
            sync_dist=True,
        )
        if batch_index == 0:
            log_panel(
                self.logger,
                from_network_scale(sources[0]),
                real,
                synthetic,
                self.global_step,
                batch["case_id"][0],
                Path(self.trainer.default_root_dir) / "panels",
            )
