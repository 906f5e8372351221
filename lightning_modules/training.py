"""What the neural methods share when they train: the cached patch data and the Lightning Trainer
with periodic checkpoints, validation and resuming."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from datamodules.dataset import Subject
from datamodules.patches import Inputs, PatchDataModule, cache_cases
from lightning_modules.inference import InferenceSettings

#: Voxels kept around the brain's bounding box when a volume is cropped for a network.
BRAIN_MARGIN = 4
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def plain(value: Any) -> Any:
    """Hydra/OmegaConf containers -> plain dicts and lists (JSON-ready hyper-parameters)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def build_network(config: Mapping[str, Any], **arguments: Any) -> torch.nn.Module:
    """A network from its config (``_target_``, a class path, and its arguments) plus ``arguments``."""
    options = dict(config)
    network_class = get_class(options.pop("_target_"))
    return network_class(**arguments, **options)


class LightningSettings:
    """The settings every neural method takes besides its own, stored as given (they are
    constructor arguments, hence hyper-parameters): ``data`` (DataModule arguments and
    ``cache_dir``), ``trainer`` (``pytorch_lightning.Trainer`` arguments), ``inference``
    (:class:`lightning_modules.inference.InferenceSettings` fields and ``device``), the checkpoint
    and validation intervals in iterations, and the seed."""

    def store_lightning_settings(
        self,
        data: Mapping[str, Any] | None,
        trainer: Mapping[str, Any] | None,
        inference: Mapping[str, Any] | None,
        checkpoint_every: int,
        validate_every: int,
        seed: int,
    ) -> None:
        self.data = dict(plain(data) or {})
        self.trainer = dict(plain(trainer) or {})
        self.inference = dict(plain(inference) or {})
        self.checkpoint_every = int(checkpoint_every)
        self.validate_every = int(validate_every)
        self.seed = seed
        self.inference_settings = InferenceSettings(**{k: v for k, v in self.inference.items() if k != "device"})

    @property
    def device(self) -> torch.device:
        """Where inference runs: ``inference.device``, ``auto`` meaning a GPU when there is one."""
        device = self.inference.get("device", "auto")
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(device)


@dataclass
class TrainingData:
    """The DataModule over cached cases, and the cache to remove after training (or None)."""

    datamodule: PatchDataModule
    temporary_cache: Path | None

    def clean_up(self) -> None:
        if self.temporary_cache is not None:
            shutil.rmtree(self.temporary_cache, ignore_errors=True)


def prepare_data(
    training: Sequence[Subject],
    validation: Sequence[Subject],
    workdir: Path,
    data: Mapping[str, Any],
    spatial_dims: int,
    inputs: Inputs,
    purpose: str,
) -> TrainingData:
    """Cache the subjects (``data["cache_dir"]``, or a temporary ``cache/`` in ``workdir``) and
    build the DataModule from the other ``data`` entries."""
    options = dict(data)
    shared_cache = options.pop("cache_dir", None)
    cache = Path(shared_cache).expanduser() if shared_cache else workdir / "cache"
    patch_size = options.get("patch_size", (128, 128, 128))
    min_shape = (*patch_size[:2], 1) if spatial_dims == 2 else tuple(patch_size)
    datamodule = PatchDataModule(
        training=cache_cases(training, cache, BRAIN_MARGIN, min_shape, inputs, purpose),
        validation=cache_cases(validation, cache, BRAIN_MARGIN, (1, 1, 1), inputs, purpose),
        spatial_dims=spatial_dims,
        **options,
    )
    return TrainingData(datamodule, None if shared_cache else cache)


def train(
    system: pl.LightningModule,
    data: TrainingData,
    workdir: Path,
    trainer_options: Mapping[str, Any],
    max_steps: int,
    checkpoint_every_steps: int,
    validate_every_batches: int,
    logger: Any = None,
    seed: int = 0,
) -> pl.Trainer:
    """Fit ``system`` with Lightning, resuming from ``workdir/checkpoints/last.ckpt`` when it exists.

    Steps are Lightning's optimiser steps (two per batch for a GAN); validation runs every
    ``validate_every_batches`` batches when there are validation cases. The final state is saved as
    ``last.ckpt`` too, and the temporary cache is removed.
    """
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

    pl.seed_everything(seed, workers=True, verbose=False)
    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=workdir / LAST_CHECKPOINT.parent,
            every_n_train_steps=checkpoint_every_steps,
            save_top_k=0,
            save_last=True,
        )
    ]
    if logger is not None:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer = pl.Trainer(
        **trainer_options,
        max_steps=max_steps,
        max_epochs=-1,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=workdir,
        val_check_interval=validate_every_batches,
        check_val_every_n_epoch=None,
        limit_val_batches=None if data.datamodule.validation else 0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # the TorchIO queue shards volumes itself
    )
    last = workdir / LAST_CHECKPOINT
    # Lightning warns that a checkpoint written from a manual-optimisation step holds the weights
    # after that step's update; that is the state a resumed run continues from, as intended.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    trainer.fit(system, datamodule=data.datamodule, ckpt_path=last if last.exists() else None)
    trainer.save_checkpoint(last)  # the final state too, not only every checkpoint_every iterations
    if trainer.is_global_zero:
        data.clean_up()
    return trainer
