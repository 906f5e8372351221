"""The segmentation model of the segmentation-based evaluation (evaluation protocol, section 2): a
3-D UNet on T1, T1CE, T2 and FLAIR predicting the data set's tumour labels, standing in for the
paper's DeepMedic. Trained with ``python train.py model=segmenter`` on the training split."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812 -- the usual alias
from torch import nn

from common.contrasts import CONTRASTS
from datamodules.dataset import Subject
from datamodules.nifti import Volume
from datamodules.patches import segmentation_inputs
from evaluation.segmentation_metrics import dice
from lightning_modules.inference import InferenceSettings, infer
from lightning_modules.losses import soft_dice_loss
from lightning_modules.schedules import linear_decay
from lightning_modules.training import LightningMethod, build_network, load_weights, plain, weights_as_arrays
from pipeline.contract import FitContext, SegmentationMethod


class SegmenterSystem(pl.LightningModule):
    """Cross-entropy + soft Dice on random patches; AdamW with a linearly decaying rate.

    ``forward`` is inference only: (N, len(modalities), *S) -> (N, classes, *S) logits.
    """

    def __init__(
        self,
        network: nn.Module,
        modalities: Sequence[str],
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        iterations: int = 20_000,
        spatial_dims: int = 3,
        inference: InferenceSettings | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network", "inference"])
        self.network = network
        self.modalities = list(modalities)
        self.spatial_dims = spatial_dims
        self.inference = inference or InferenceSettings()

    #: Logged values shown in the training progress.
    progress_metrics = ("train/loss", "train/dice_loss")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)

    def configure_optimizers(self) -> Any:
        optimiser = torch.optim.AdamW(
            self.network.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, linear_decay(0, self.hparams.iterations))
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        images = torch.cat([batch[m] for m in self.modalities], dim=1)
        target = batch["label"][:, 0]
        logits = self.network(images)
        cross_entropy = F.cross_entropy(logits, target)
        dice = soft_dice_loss(logits, target)
        loss = cross_entropy + dice
        size = images.shape[0]
        self.log_dict(
            {"train/cross_entropy": cross_entropy, "train/dice_loss": dice, "train/loss": loss}, batch_size=size
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        images = torch.cat([batch[m] for m in self.modalities], dim=1)[0].cpu().numpy()
        logits = infer(self.network, images, self.spatial_dims, self.inference, self.device)
        predicted, target = logits.argmax(0) > 0, batch["label"][0, 0].cpu().numpy() > 0
        self.log("val/dice_whole_tumour", dice(predicted, target), batch_size=1, sync_dist=True)


class SegmenterMethod(LightningMethod, SegmentationMethod):
    """The segmenter behind the method contract: ``fit`` trains on the training cases that have a
    segmentation; ``predict`` returns a label map in the data set's convention (int16, the T1's
    geometry, background outside the brain).

    Args:
        network: network config (``_target_`` and arguments, without ``spatial_dims``,
            ``in_channels`` and ``out_channels``, which follow from the modalities and labels).
        modalities: input contrasts, in order.
        learning_rate, weight_decay: AdamW's; the rate decays linearly to 0 over ``iterations``.
        iterations: training batches.
        data, trainer, inference, checkpoint_every, validate_every, seed: as for Pix2Pix
            (:class:`lightning_modules.method.Pix2PixMethod`).
    """

    def __init__(
        self,
        network: Mapping[str, Any],
        modalities: Sequence[str] = CONTRASTS,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        iterations: int = 20_000,
        data: Mapping[str, Any] | None = None,
        trainer: Mapping[str, Any] | None = None,
        inference: Mapping[str, Any] | None = None,
        checkpoint_every: int = 1000,
        validate_every: int = 1000,
        seed: int = 0,
    ) -> None:
        self.network = plain(network)
        self.modalities = list(plain(modalities))
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.iterations = int(iterations)
        self.store_lightning_settings(data, trainer, inference, checkpoint_every, validate_every, seed)
        if not self.modalities:
            raise ValueError("modalities must name at least one contrast")
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        self.training_modalities = self.inference_modalities = tuple(self.modalities)

    def build(self, classes: int) -> nn.Module:
        return build_network(self.network, spatial_dims=3, in_channels=len(self.modalities), out_channels=classes)

    def system(self) -> SegmenterSystem:
        """A new LightningModule with a freshly initialised network (the label values must be known)."""
        return SegmenterSystem(
            self.build(len(self.label_values_)),
            self.modalities,
            self.learning_rate,
            self.weight_decay,
            self.iterations,
            inference=self.inference_settings,
        )

    def check_networks(self) -> None:
        """The network for two classes: the label values, hence the real count, are known at fit."""
        self.build(2)

    def _fit(self, subjects: Sequence[Subject], context: FitContext) -> None:
        if context.labels is None:
            raise ValueError("the segmenter needs the data set's label convention (FitContext.labels)")
        self.label_values_ = np.array([0, *sorted(context.labels.labels)], dtype=np.int64)
        with_labels = [s for s in subjects if s.segmentation is not None]
        if not with_labels:
            raise ValueError("no training case has a segmentation")
        inputs = functools.partial(
            segmentation_inputs, label_values=self.label_values_.tolist(), modalities=self.modalities
        )
        validation = [s for s in context.validation if s.segmentation is not None]
        system = self.train_system(with_labels, validation, context, inputs, f"segmentation-{context.labels.name}")
        self.network_ = system.network.cpu()

    def _predict(self, subject: Subject) -> Volume:
        arrays = segmentation_inputs(subject, self.label_values_.tolist(), self.modalities)
        crop = self.on_brain(subject, arrays, self.modalities)
        self.network_.to(self.device)
        logits = infer(self.network_, crop.images, 3, self.inference_settings, self.device)
        return subject.volume_like(crop.placed(self.label_values_[logits.argmax(0)], np.int16))

    def state(self) -> dict[str, np.ndarray]:
        return {"label_values": self.label_values_, **weights_as_arrays(self.network_, prefix="network.")}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.label_values_ = arrays["label_values"]
        self.network_ = load_weights(self.build(len(self.label_values_)), arrays, prefix="network.")
