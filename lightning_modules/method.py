"""Pix2Pix behind the method contract: ``fit`` trains with the Lightning Trainer, ``predict`` runs
whole-volume or sliding-window inference, ``save``/``load`` keep the generator's weights as arrays.

Training writes, under the run's ``model/`` folder: ``checkpoints/last.ckpt`` (every
``checkpoint_every`` iterations; a rerun in the same folder resumes from it: weights, both
optimisers' moments, the learning-rate schedule and the step counter), ``panels/`` (the validation
image panels) and, while training, ``cache/`` (the decoded volumes; see :mod:`datamodules.patches`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.dataset import Subject
from datamodules.nifti import Volume
from datamodules.patches import from_network_scale, network_inputs
from evaluation.run_folder import RunFolder
from lightning_modules.inference import finished_outputs, synthesise
from lightning_modules.pix2pix import Pix2Pix
from lightning_modules.training import LightningMethod, build_network, load_weights, plain, weights_as_arrays
from pipeline.contract import FitContext, SynthesisMethod, load_from_run


class Pix2PixMethod(LightningMethod, SynthesisMethod):
    """The paper's Pix2Pix as a synthesis method (see :class:`lightning_modules.pix2pix.Pix2Pix`).

    Args:
        generator, discriminator: network configs (``_target_`` plus arguments, without
            ``spatial_dims``), e.g. the ``generator`` config group.
        spatial_dims: 3 (volumes, the paper) or 2 (axial slices).
        lambda_l1, gamma_tumour, lambda_ssim, gan_mode, tumour_loss, learning_rate, betas: see ``Pix2Pix``.
        constant_iterations, decay_iterations: training length, in iterations (batches).
        data: :class:`datamodules.patches.PatchDataModule` arguments (``patch_size``,
            ``samples_per_volume``, ``queue_length``, ``batch_size``, ``num_workers``, ``flip``,
            ``augmentation``: intensity ones change the sources only) and
            ``cache_dir`` (null: a ``cache/`` folder in the run, removed after training; a path:
            a cache shared by runs, kept).
        trainer: ``pytorch_lightning.Trainer`` arguments (accelerator, devices, strategy,
            num_nodes, precision, ...); the training length, logger and callbacks are set here.
        inference: :class:`lightning_modules.inference.InferenceSettings` fields, plus ``device``
            (``auto``: a GPU when there is one).
        checkpoint_every, validate_every: in iterations.
        seed: seeds Python, NumPy and torch before training.
        source, target: the task: one generator input channel per source (each on the
            standardisation's scale), the discriminator judging (sources..., target).
        standardisation: how the sources are scaled (:mod:`datamodules.standardisation`); the target
            is on its brain percentile scale.
        init_from: a Pix2Pix run (or its model folder) whose weights training starts from: its saved
            generator, and its discriminator from the run's last checkpoint when it has one (else a
            new one). The networks must have the same shapes (generator, size, number of sources).
            A rerun that resumes from its own checkpoint ignores it.
        fused_adam, channels_last, compile: training speed only (the same losses to rounding), see
            :class:`lightning_modules.pix2pix.Pix2Pix`; ``None``: on a GPU.
    """

    steps_per_iteration = 2  # a D step, then a G step

    def __init__(
        self,
        generator: Mapping[str, Any],
        discriminator: Mapping[str, Any],
        spatial_dims: int = 3,
        lambda_l1: float = 100.0,
        gamma_tumour: float = 0.0,
        lambda_ssim: float = 0.0,
        gan_mode: str = "vanilla",
        tumour_loss: str = "masked_output",
        learning_rate: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
        constant_iterations: int = 50_000,
        decay_iterations: int = 50_000,
        data: Mapping[str, Any] | None = None,
        trainer: Mapping[str, Any] | None = None,
        inference: Mapping[str, Any] | None = None,
        checkpoint_every: int = 1000,
        validate_every: int = 1000,
        seed: int = 0,
        source: Sequence[str] = ("t1",),
        target: str = "t2",
        fused_adam: bool | None = None,
        channels_last: bool | None = False,
        compile: bool | str = False,
        standardisation: str | None = "percentile",
        init_from: str | None = None,
    ) -> None:
        super().__init__(source, target, standardisation)
        self.init_from = None if init_from is None else str(init_from)
        self.fused_adam, self.channels_last, self.compile = fused_adam, channels_last, compile
        self.generator = plain(generator)
        self.discriminator = plain(discriminator)
        self.spatial_dims = spatial_dims
        self.lambda_l1 = float(lambda_l1)
        self.gamma_tumour = float(gamma_tumour)
        self.lambda_ssim = float(lambda_ssim)
        self.gan_mode = gan_mode
        self.tumour_loss = tumour_loss
        self.learning_rate = float(learning_rate)
        self.betas = list(plain(betas))
        self.constant_iterations = int(constant_iterations)
        self.decay_iterations = int(decay_iterations)
        self.store_lightning_settings(data, trainer, inference, checkpoint_every, validate_every, seed)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if self.constant_iterations + self.decay_iterations < 1:
            raise ValueError("constant_iterations + decay_iterations must be at least 1")
        # Bad network or loss arguments fail now, before any data is read (the system checks the
        # loss settings; on the meta device nothing is allocated). The weights are drawn in fit.
        with torch.device("meta"):
            self.system()

    def build(self, network: str) -> torch.nn.Module:
        """The generator or the discriminator, from its config, with freshly drawn initial weights and
        an input channel per source (and the target, for the discriminator)."""
        channels = len(self.source) + (network == "discriminator")
        return build_network(getattr(self, network), spatial_dims=self.spatial_dims, in_channels=channels)

    @property
    def iterations(self) -> int:
        return self.constant_iterations + self.decay_iterations

    def check_networks(self) -> None:
        super().check_networks()
        if self.init_from is not None:
            self.weights_to_start_from()

    def weights_to_start_from(self) -> dict[str, dict[str, torch.Tensor]]:
        """``init_from``'s weights by network (generator; discriminator when its run has a checkpoint),
        checked to fit this method's networks.

        Raises:
            InvalidInputError: ``init_from`` holds no saved model.
            ValueError: it is not a Pix2Pix, or a network's parameters have other names or shapes.
        """
        folder = Path(self.init_from)
        source = load_from_run(folder, SynthesisMethod)
        if not isinstance(source, Pix2PixMethod):
            raise ValueError(f"init_from: {folder} holds a {type(source).__name__}, not a Pix2Pix")
        weights = {"generator": source.generator_.state_dict()}
        checkpoints = [f / "checkpoints" / "last.ckpt" for f in (folder, RunFolder(folder).model)]
        if checkpoint := next((path for path in checkpoints if path.is_file()), None):
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
            weights["discriminator"] = {
                name.removeprefix("discriminator."): value
                for name, value in state.items()
                if name.startswith("discriminator.")
            }
        for network, theirs in weights.items():
            ours = {name: tuple(value.shape) for name, value in self.build(network).state_dict().items()}
            found = {name: tuple(value.shape) for name, value in theirs.items()}
            if found != ours:
                name = next(iter(sorted(set(ours) ^ set(found)) or [n for n in ours if ours[n] != found[n]]))
                raise ValueError(
                    f"init_from: {folder}: its {network} does not fit this one ({network}.{name}: "
                    f"{found.get(name, 'absent')} there, {ours.get(name, 'absent')} here); the networks, their "
                    "sizes and the number of sources must be the same"
                )
        return weights

    def initial_system(self) -> Pix2Pix:
        """A new system (:meth:`system`) that starts from ``init_from``'s weights when it is set."""
        system = self.system()
        if self.init_from is not None:
            for network, weights in self.weights_to_start_from().items():
                getattr(system, network).load_state_dict(weights)
        return system

    # -- training --------------------------------------------------------------------------------

    def system(self) -> Pix2Pix:
        """A new LightningModule with freshly initialised networks (seed first for reproducible ones)."""
        return Pix2Pix(
            generator=self.build("generator"),
            discriminator=self.build("discriminator"),
            spatial_dims=self.spatial_dims,
            lambda_l1=self.lambda_l1,
            gamma_tumour=self.gamma_tumour,
            lambda_ssim=self.lambda_ssim,
            gan_mode=self.gan_mode,  # type: ignore[arg-type]
            tumour_loss=self.tumour_loss,  # type: ignore[arg-type]
            learning_rate=self.learning_rate,
            betas=self.betas,
            constant_iterations=self.constant_iterations,
            decay_iterations=self.decay_iterations,
            inference=self.inference_settings,
            sources=self.source,
            target=self.target,
            fused_adam=self.fused_adam,
            channels_last=self.channels_last,
            compile=self.compile,
        )

    def _fit(self, subjects: Sequence[Subject], context: FitContext) -> None:
        inputs = functools.partial(network_inputs, contrasts=self.training_modalities, scaled=self.scaled)
        purpose = f"pix2pix {self.contrasts} {self.scales.fingerprint()}"  # a cache entry per standardisation
        system = self.train_system(subjects, context.validation, context, inputs, purpose, self.source)
        self.generator_: torch.nn.Module = system.generator.cpu()

    # -- inference -------------------------------------------------------------------------------

    def _predict(self, subject: Subject) -> Volume:
        return self.predict_all(subject)[""]

    def predict_all(self, subject: Subject) -> dict[str, Volume]:
        """The generator's target on the unit scale, 0 outside the brain (the reference reset the
        background from the T1 too), finished as the inference settings say."""
        self.check_fitted()
        crop = self.on_brain(subject, network_inputs(subject, self.source, self.scaled), self.source)
        self.generator_.to(self.device)
        output = synthesise(self.generator_, crop.images, self.spatial_dims, self.inference_settings, self.device)
        synthetic = crop.placed(from_network_scale(output), np.float32)
        outputs = finished_outputs(synthetic, subject.brain, self.inference_settings)
        return {suffix: subject.volume_like(volume) for suffix, volume in outputs.items()}

    # -- persistence -----------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        return weights_as_arrays(self.generator_)

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.generator_ = load_weights(self.build("generator"), arrays)
