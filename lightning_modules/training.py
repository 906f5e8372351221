"""What the neural methods share: the base of the methods trained with Lightning, the cached patch
data and the Lightning Trainer with periodic checkpoints, validation and resuming."""

from __future__ import annotations

import gc
import logging
import shutil
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from common.errors import RunInterruptedError
from common.progress import Progress
from common.signals import signals_to_lightning
from datamodules.dataset import Subject
from datamodules.patches import Inputs, PatchDataModule, cache_cases
from datamodules.preprocessing import bounding_box
from lightning_modules.inference import InferenceSettings
from pipeline.contract import FitContext

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


class LightningMethod:
    """What the methods trained with Lightning share: their common settings, fitting through the
    Trainer on cached patches, running a network on a subject's brain, and keeping weights as arrays.

    The settings besides a method's own are stored as given (they are constructor arguments, hence
    hyper-parameters): ``data`` (DataModule arguments and ``cache_dir``), ``trainer``
    (``pytorch_lightning.Trainer`` arguments), ``inference``
    (:class:`lightning_modules.inference.InferenceSettings` fields and ``device``), the checkpoint
    and validation intervals in iterations, and the seed. A subclass provides ``system()`` (a new
    LightningModule with freshly drawn weights), ``iterations``, ``spatial_dims`` and, for a GAN,
    ``steps_per_iteration``.
    """

    #: Lightning counts optimiser steps: a GAN's training iteration steps D and then G.
    steps_per_iteration: int = 1
    spatial_dims: int = 3
    iterations: int

    def system(self) -> pl.LightningModule:
        raise NotImplementedError

    def initial_system(self) -> pl.LightningModule:
        """The system training starts from: a new :meth:`system`, unless a subclass starts from weights."""
        return self.system()

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

    def check_settings(self) -> None:
        """The DataModule over no cases, the Trainer and the networks, built and dropped (a second or
        two at the paper's sizes; Lightning's device report is kept for the real Trainer)."""
        options = {key: value for key, value in self.data.items() if key != "cache_dir"}
        PatchDataModule(training=[], validation=[], spatial_dims=self.spatial_dims, **options)
        lightning_log = logging.getLogger("pytorch_lightning")
        level = lightning_log.level
        lightning_log.setLevel(logging.WARNING)
        try:
            pl.Trainer(**self.trainer, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        except (ValueError, TypeError, MisconfigurationException) as error:
            raise ValueError(f"trainer: {error}") from None
        finally:
            lightning_log.setLevel(level)
        self.check_networks()

    def check_networks(self) -> None:
        """Build the networks from the settings (:meth:`check_settings`): a new system by default."""
        self.system()

    @property
    def device(self) -> torch.device:
        """Where inference runs: ``inference.device``, ``auto`` meaning a GPU when there is one."""
        device = self.inference.get("device", "auto")
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(device)

    def train_system(
        self,
        training: Sequence[Subject],
        validation: Sequence[Subject],
        context: FitContext,
        inputs: Inputs,
        purpose: str,
        intensity_channels: Sequence[str] | None = None,
    ) -> pl.LightningModule:
        """Cache the subjects' network inputs and train a new :meth:`system` on them (:func:`train`),
        in ``context.workdir`` (default: a folder named after the class in the current directory);
        intensity augmentations change ``intensity_channels`` only (None: every image channel)."""
        workdir = Path(context.workdir) if context.workdir is not None else Path.cwd() / type(self).__name__.lower()
        options = {**self.data, "intensity_channels": intensity_channels}
        data = prepare_data(training, validation, workdir, options, self.spatial_dims, inputs, purpose)
        return train(
            self.initial_system,
            data,
            workdir,
            self.trainer,
            iterations=self.iterations,
            steps_per_iteration=self.steps_per_iteration,
            checkpoint_every_steps=self.checkpoint_every * self.steps_per_iteration,
            validate_every_batches=self.validate_every,
            logger=context.logger,
            seed=self.seed,
        )

    @staticmethod
    def on_brain(subject: Subject, arrays: Mapping[str, np.ndarray], channels: Sequence[str]) -> BrainCrop:
        """The ``channels`` of ``arrays`` stacked, cropped to the subject's brain (plus
        :data:`BRAIN_MARGIN`): what a network sees of a volume at inference."""
        box = bounding_box(subject.brain, BRAIN_MARGIN)
        return BrainCrop(np.stack([arrays[channel][box] for channel in channels]), box, subject.brain)


@dataclass(frozen=True)
class BrainCrop:
    """A network's input channels on a subject's brain box, and where that box lies."""

    images: np.ndarray  # (channels, *box)
    box: tuple[slice, ...]
    brain: np.ndarray

    def placed(self, output: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
        """``output`` on the box put back into a zeroed volume, kept only inside the brain."""
        volume = np.zeros(self.brain.shape, dtype=dtype)
        volume[self.box] = output
        volume[~self.brain] = 0
        return volume


def weights_as_arrays(network: torch.nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    return {f"{prefix}{name}": tensor.detach().cpu().numpy() for name, tensor in network.state_dict().items()}


def load_weights(network: torch.nn.Module, arrays: Mapping[str, np.ndarray], prefix: str = "") -> torch.nn.Module:
    """``network`` with the weights of :func:`weights_as_arrays` (the entries starting with ``prefix``)."""
    network.load_state_dict(
        {name[len(prefix) :]: torch.from_numpy(array) for name, array in arrays.items() if name.startswith(prefix)}
    )
    return network


class IterationProgress(pl.Callback):
    """Progress in the method's own schedule: iteration ``i / total``, the latest losses, iterations
    per second and the time left (see :class:`datamodules.progress.Progress`: a line redrawn in place
    on a terminal, a line every ``every`` iterations in a log). Replaces Lightning's bar, which
    counts epochs of an endless loader and optimiser steps. Losses are read from the device only
    when a line is printed.

    Args:
        total: training iterations (batches) in all.
        steps_per_iteration: Lightning's optimiser steps per iteration (2 for a GAN).
        metrics: logged names shown, from the system's ``progress_metrics``.
    """

    def __init__(self, total: int, steps_per_iteration: int, metrics: Sequence[str], every: int | None = None) -> None:
        self.total = total
        self.steps_per_iteration = steps_per_iteration
        self.metrics = tuple(metrics)
        self.every = every
        self.progress: Progress | None = None

    def iteration(self, trainer: pl.Trainer) -> int:
        return trainer.global_step // self.steps_per_iteration

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.progress = Progress(self.total, "iteration", every=self.every, start=self.iteration(trainer))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.progress is None:
            return
        self.progress.done = self.iteration(trainer)
        if not self.progress.due():
            return
        values = trainer.callback_metrics
        shown = [f"{name.rpartition('/')[2]} {float(values[name]):.4g}" for name in self.metrics if name in values]
        self.progress.update(self.progress.done, " ".join(shown))


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
    build the DataModule from the other ``data`` entries. Stopped part way (bad input, a signal), it
    removes the temporary cache."""
    if not training:
        raise ValueError("no training cases")
    options = dict(data)
    shared_cache = options.pop("cache_dir", None)
    cache = Path(shared_cache).expanduser() if shared_cache else workdir / "cache"
    patch_size = options.get("patch_size", (128, 128, 128))
    min_shape = (*patch_size[:2], 1) if spatial_dims == 2 else tuple(patch_size)
    try:
        datamodule = PatchDataModule(
            training=cache_cases(training, cache, BRAIN_MARGIN, min_shape, inputs, purpose),
            validation=cache_cases(validation, cache, BRAIN_MARGIN, (1, 1, 1), inputs, purpose),
            spatial_dims=spatial_dims,
            **options,
        )
    except BaseException:
        if not shared_cache:
            shutil.rmtree(cache, ignore_errors=True)
        raise
    return TrainingData(datamodule, None if shared_cache else cache)


def train(
    build_system: Callable[[], pl.LightningModule],
    data: TrainingData,
    workdir: Path,
    trainer_options: Mapping[str, Any],
    iterations: int,
    steps_per_iteration: int,
    checkpoint_every_steps: int,
    validate_every_batches: int,
    logger: Any = None,
    seed: int = 0,
) -> pl.LightningModule:
    """Seed everything, build the system (so that the networks' initial weights follow from
    ``seed``), and fit it with Lightning, resuming from ``workdir/checkpoints/last.ckpt`` when it exists.

    Progress is shown in ``iterations`` (batches); checkpoints count Lightning's optimiser steps
    (``steps_per_iteration`` per batch: two for a GAN); validation runs every
    ``validate_every_batches`` batches when there are validation cases. The final state is saved as
    ``last.ckpt`` too, and the temporary cache is removed, also when training is interrupted.
    Returns the fitted system, detached from the Trainer.

    Raises:
        RunInterruptedError: on SIGTERM or SIGINT, after saving the state to ``last.ckpt``.
    """
    warn_when_no_gpu(trainer_options)
    pl.seed_everything(seed, workers=True, verbose=False)
    system = build_system()
    progress = IterationProgress(iterations, steps_per_iteration, getattr(system, "progress_metrics", ()))
    trainer = pl.Trainer(
        **trainer_options,
        max_steps=iterations * steps_per_iteration,
        max_epochs=-1,
        enable_progress_bar=False,
        logger=logger if logger is not None else False,
        callbacks=training_callbacks(workdir, checkpoint_every_steps, progress, logged=logger is not None),
        default_root_dir=workdir,
        val_check_interval=validate_every_batches,
        check_val_every_n_epoch=None,
        limit_val_batches=None if data.datamodule.validation else 0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # the TorchIO queue shards volumes itself
    )
    fit_resuming(trainer, system, data, workdir / LAST_CHECKPOINT)
    # The Trainer's training loader (a TorchIO queue stopped part way) holds a worker process with
    # volumes loaded. Collected now, not at some later collection: otherwise it outlives the fit (one
    # more per job of a sequential multirun), and a collection inside a forked worker prints "can only
    # test a child process".
    system.trainer = data.datamodule.trainer = trainer = None
    gc.collect()
    return system


def warn_when_no_gpu(trainer_options: Mapping[str, Any]) -> None:
    if trainer_options.get("accelerator", "auto") != "cpu" and not torch.cuda.is_available():
        print(
            f"warning: no GPU found, so this trains on the CPU (trainer.accelerator="
            f"{trainer_options.get('accelerator', 'auto')}); networks of the paper's size take days there: "
            "+experiment=pix2pix_cpu and +experiment=segmenter_cpu are sized for a CPU",
            file=sys.stderr,
            flush=True,
        )


def training_callbacks(
    workdir: Path, checkpoint_every_steps: int, progress: pl.Callback, logged: bool
) -> list[pl.Callback]:
    """``last.ckpt`` every ``checkpoint_every_steps`` steps and on an exception, the progress, and
    the learning rate when a logger records it."""
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, OnExceptionCheckpoint

    folder = workdir / LAST_CHECKPOINT.parent
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=folder, every_n_train_steps=checkpoint_every_steps, save_top_k=0, save_last=True),
        # On SIGTERM (SLURM, timeout) or Ctrl-C: the state as it is, so that a rerun resumes there.
        OnExceptionCheckpoint(dirpath=folder, filename=LAST_CHECKPOINT.stem),
        progress,
    ]
    if logged:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return callbacks


def fit_resuming(trainer: pl.Trainer, system: pl.LightningModule, data: TrainingData, last: Path) -> None:
    """``trainer.fit``, resuming from ``last`` when it exists and saving the final state there; the
    temporary cache is removed however the fit ends.

    Raises:
        RunInterruptedError: on SIGTERM or SIGINT, after the state was saved to ``last``.
    """
    # Lightning warns that a checkpoint written from a manual-optimisation step holds the weights
    # after that step's update; that is the state a resumed run continues from, as intended.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    try:
        with signals_to_lightning():
            trainer.fit(system, datamodule=data.datamodule, ckpt_path=last if last.exists() else None)
        if trainer.received_sigterm or trainer.interrupted:
            raise SystemExit(1)
    except SystemExit as stop:  # Lightning's answer to SIGTERM (exit 0!) and to Ctrl-C (exit 1)
        received = "SIGTERM" if trainer.received_sigterm else "SIGINT"
        if last.exists():
            raise RunInterruptedError(received, last) from stop
        raise RunInterruptedError(received, None, "no checkpoint had been written yet") from stop
    finally:
        if trainer.is_global_zero:
            data.clean_up()
    trainer.save_checkpoint(last)  # the final state too, not only every checkpoint_every iterations
