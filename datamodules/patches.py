"""Training data for the neural methods: decoded, normalised volumes cached on disk, and the TorchIO
LightningDataModule that samples random patches from them.

Each case is decoded and normalised once and written as ``.npy`` arrays (each contrast in float16
on the network scale [-1, 1], brain and tumour masks in uint8), cropped to the brain's bounding box
plus a margin. Workers then read patches' volumes from the page cache instead of decompressing
``.nii.gz`` files, and several patches are drawn from each loaded volume (TorchIO ``Queue``), so
that loading keeps up with the GPU.

Intensities are scaled once per whole volume (:func:`network_inputs`). The reference scaled every
random training crop by its own min-max but the test volume as a whole, so a tissue's value
changed between training and inference; that was a bug, fixed here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torchio as tio
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from common.checks import check_choice
from common.files import current_umask
from datamodules.dataset import Subject
from datamodules.preprocessing import bounding_box, percentile_scale

#: Bump when the cached arrays change meaning, so old caches are not reused.
CACHE_VERSION = 2
#: How a cached channel is stored and batched: images float16 -> float32 (background -1), masks
#: uint8 -> bool, labels (class indices) uint8 -> int64.
IMAGE, MASK, LABEL = "image", "mask", "label"
Flip = Literal["lr_ap", "lr", "none"]
FLIPS = ("lr_ap", "lr", "none")


def to_network_scale(unit: np.ndarray) -> np.ndarray:
    """[0, 1] -> [-1, 1] (the generator's tanh range); the background 0 becomes -1."""
    return (unit * 2 - 1).astype(np.float32)


def from_network_scale(network: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1], clipped."""
    return np.clip((network + 1) / 2, 0, 1).astype(np.float32)


def kind_of(array: np.ndarray) -> str:
    if array.dtype == bool:
        return MASK
    return IMAGE if np.issubdtype(array.dtype, np.floating) else LABEL


def percentile_scaled(subject: Subject, contrast: str) -> np.ndarray:
    """A contrast of the subject on its brain percentile scale, 0 outside the brain."""
    return percentile_scale(subject[contrast].data, subject.brain)


def network_inputs(
    subject: Subject,
    contrasts: Sequence[str] = ("t1", "t2"),
    scaled: Callable[[Subject, str], np.ndarray] = percentile_scaled,
) -> dict[str, np.ndarray]:
    """The arrays a synthesis network trains on: each of ``contrasts`` the subject has (sources and,
    when present, the target), each on its [0, 1] scale (``scaled``: by default its brain percentile
    scale, robust to bright outliers; a method's sources on its standardisation) mapped to [-1, 1]
    with background -1; the brain mask; and the whole-tumour mask (empty without a segmentation)."""
    brain = subject.brain
    arrays: dict[str, np.ndarray] = {
        contrast: to_network_scale(scaled(subject, contrast))
        for contrast in contrasts
        if subject.get(contrast) is not None
    }
    arrays["brain"] = brain
    tumour = subject.tumour
    arrays["tumour"] = np.zeros(brain.shape, dtype=bool) if tumour is None else tumour & brain
    return arrays


def segmentation_inputs(
    subject: Subject, label_values: Sequence[int], modalities: Sequence[str]
) -> dict[str, np.ndarray]:
    """The arrays a segmenter trains on: each modality on the network scale (as in
    :func:`network_inputs`), the brain mask, and ``label``: the class index of each voxel (the
    position of its label in ``label_values``, whose first entry is the background 0)."""
    brain = subject.brain
    arrays: dict[str, np.ndarray] = {}
    for modality in modalities:
        if subject.get(modality) is None:
            raise ValueError(f"{subject.case_id}: the segmenter needs {modality}")
        arrays[modality] = to_network_scale(percentile_scale(subject[modality].data, brain))
    arrays["brain"] = brain
    if subject.segmentation is not None:
        lookup = np.zeros(max(label_values) + 1, dtype=np.uint8)
        lookup[list(label_values)] = np.arange(len(label_values), dtype=np.uint8)
        arrays["label"] = lookup[subject.segmentation.data.astype(np.int64)]
    return arrays


@dataclass(frozen=True)
class CachedCase:
    """One cached case: a folder holding ``<channel>.npy`` and ``affine.npy`` (the affine of the
    cropped array, so the crop keeps its place in the world)."""

    case_id: str
    folder: Path

    @property
    def kinds(self) -> dict[str, str]:
        """Channel name -> kind (:data:`IMAGE`, :data:`MASK` or :data:`LABEL`)."""
        return json.loads((self.folder / "channels.json").read_text())

    def array(self, channel: str) -> np.ndarray:
        return np.load(self.folder / f"{channel}.npy", mmap_mode="r")


def _digest(subject: Subject, margin: int, min_shape: Sequence[int], purpose: str) -> str:
    hasher = hashlib.blake2b(digest_size=12)
    header = [CACHE_VERSION, subject.case_id, subject.anchor, margin, list(min_shape), purpose]
    hasher.update(json.dumps(header).encode())
    for volume in (*subject.volumes.values(), subject.segmentation):
        if volume is not None:
            hasher.update(np.ascontiguousarray(volume.data).view(np.uint8).ravel())
            hasher.update(np.ascontiguousarray(volume.affine, dtype=np.float64).tobytes())
    return hasher.hexdigest()


def crop_box(
    brain: np.ndarray, margin: int, min_shape: Sequence[int]
) -> tuple[tuple[slice, ...], list[tuple[int, int]]]:
    """The brain's bounding box grown by ``margin`` (inside the volume) and the padding that then
    brings each axis to at least ``min_shape`` (a training patch must fit)."""
    box = bounding_box(brain, margin)
    padding = []
    for axis_box, minimum in zip(box, min_shape, strict=True):
        missing = max(minimum - (axis_box.stop - axis_box.start), 0)
        padding.append((missing // 2, missing - missing // 2))
    return box, padding


Inputs = Callable[[Subject], dict[str, np.ndarray]]


def cache_case(
    subject: Subject,
    root: Path,
    margin: int = 4,
    min_shape: Sequence[int] = (1, 1, 1),
    inputs: Inputs = network_inputs,
    purpose: str = "synthesis",
) -> CachedCase:
    """Write ``inputs(subject)`` (which holds ``brain``) under ``root``, once: an entry with the
    same content and ``purpose`` is reused. Safe for concurrent writers (written aside, renamed)."""
    folder = root / f"{subject.case_id}-{_digest(subject, margin, min_shape, purpose)}"
    if folder.is_dir():
        return CachedCase(subject.case_id, folder)
    arrays = inputs(subject)
    box, padding = crop_box(arrays["brain"], margin, min_shape)
    affine = subject.reference.affine.copy()
    start = np.array([axis_box.start - before for axis_box, (before, _) in zip(box, padding, strict=True)], float)
    affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        kinds = {channel: kind_of(array) for channel, array in arrays.items()}
        for channel, array in arrays.items():
            image = kinds[channel] == IMAGE
            data = np.pad(array[box], padding, constant_values=-1 if image else 0)
            np.save(partial / f"{channel}.npy", data.astype(np.float16 if image else np.uint8))
        np.save(partial / "affine.npy", affine)
        (partial / "channels.json").write_text(json.dumps(kinds))
        os.chmod(partial, 0o777 & ~current_umask())  # mkdtemp creates 0700
        partial.rename(folder)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not folder.is_dir():  # another process did not win the race either
            raise
    return CachedCase(subject.case_id, folder)


def cache_cases(
    subjects: Iterable[Subject],
    root: Path,
    margin: int = 4,
    min_shape: Sequence[int] = (1, 1, 1),
    inputs: Inputs = network_inputs,
    purpose: str = "synthesis",
) -> list[CachedCase]:
    return [cache_case(subject, root, margin, min_shape, inputs, purpose) for subject in subjects]


def read_cached(path: str | os.PathLike) -> tuple[torch.Tensor, np.ndarray]:
    """TorchIO reader for a cached channel: (1, X, Y, Z) float32 tensor and the crop's affine."""
    path = Path(path)
    data = torch.from_numpy(np.load(path).astype(np.float32))[None]
    return data, np.load(path.parent / "affine.npy")


def torchio_subject(case: CachedCase) -> tio.Subject:
    """A lazily loaded TorchIO subject over a cached case."""
    images: dict[str, Any] = {}
    for channel, kind in case.kinds.items():
        image_type = tio.ScalarImage if kind == IMAGE else tio.LabelMap
        images[channel] = image_type(case.folder / f"{channel}.npy", reader=read_cached)
    return tio.Subject(case_id=case.case_id, **images)


def flip_transform(flip: Flip) -> tio.Transform | None:
    """The reference's augmentation: left-right and anterior-posterior flipped together with
    probability 0.5 (``lr_ap``), left-right only (``lr``), or none."""
    if flip == "none":
        return None
    axes = ("LR", "AP") if flip == "lr_ap" else ("LR",)
    return tio.RandomFlip(axes=axes, flip_probability=1.0, p=0.5)


#: ``augmentation`` keys: TorchIO's transform for each, with the ranges it draws from. ``affine`` moves
#: every channel together (images linearly, masks by nearest neighbour); the others change the
#: network's inputs only (:class:`OnUnitScaleInBrain`).
AUGMENTATIONS: dict[str, Callable[[], tio.Transform]] = {
    "affine": lambda: tio.RandomAffine(scales=(0.9, 1.1), degrees=10, translation=0),
    "bias_field": lambda: tio.RandomBiasField(coefficients=0.3),
    "gamma": lambda: tio.RandomGamma(log_gamma=(-0.3, 0.3)),
    "noise": lambda: tio.RandomNoise(std=(0, 0.03)),
}
SPATIAL_AUGMENTATIONS = ("affine",)


def check_augmentation(augmentation: Mapping[str, float]) -> None:
    """Raises ValueError for an unknown key or a probability outside [0, 1]."""
    for name, probability in augmentation.items():
        check_choice("augmentation", name, AUGMENTATIONS)
        if not 0 <= probability <= 1:
            raise ValueError(f"augmentation.{name} is a probability, got {probability}")


class OnUnitScaleInBrain(tio.Transform):
    """An intensity transform applied to the ``channels`` as to a scan: on their [0, 1] scale (the
    network's [-1, 1] mapped back), then clipped, mapped to [-1, 1] again and -1 restored outside the
    ``brain`` mask, so that a bias field or a gamma acts on intensities and noise stays in the brain."""

    def __init__(self, transform: tio.Transform, channels: Sequence[str]) -> None:
        super().__init__()
        self.transform, self.channels = transform, list(channels)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for name in self.channels:
            subject[name].set_data((subject[name].data + 1) / 2)
        subject = self.transform(subject)
        brain = subject["brain"].data.bool()
        for name in self.channels:
            scaled = subject[name].data.clamp(0, 1) * 2 - 1
            subject[name].set_data(torch.where(brain, scaled, torch.tensor(-1.0)))
        return subject


def training_transform(
    flip: Flip, augmentation: Mapping[str, float], intensity_channels: Sequence[str]
) -> tio.Transform | None:
    """The flips (:func:`flip_transform`), then each augmentation with its probability (spatial ones
    first); None when there is nothing to do."""
    transforms = [flip_transform(flip)]
    spatial = [name for name in augmentation if name in SPATIAL_AUGMENTATIONS]
    intensity = [name for name in augmentation if name not in SPATIAL_AUGMENTATIONS]
    for name in spatial:
        if augmentation[name] > 0:
            transforms.append(tio.OneOf({AUGMENTATIONS[name](): 1.0}, p=augmentation[name]))
    for name in intensity:
        if augmentation[name] > 0:
            inner = AUGMENTATIONS[name]()
            inner.include = list(intensity_channels)
            transforms.append(tio.OneOf({OnUnitScaleInBrain(inner, intensity_channels): 1.0}, p=augmentation[name]))
    transforms = [t for t in transforms if t is not None]
    return tio.Compose(transforms) if transforms else None


def as_kind(data: torch.Tensor, kind: str) -> torch.Tensor:
    return {IMAGE: data.float, MASK: data.bool, LABEL: data.long}[kind]()


def collate_patches(
    patches: list[dict[str, Any]], kinds: dict[str, str], spatial_dims: int = 3
) -> dict[str, torch.Tensor]:
    """TorchIO patches -> {channel: (N, 1, *P)} typed by kind; 2-D drops the unit last axis."""
    batch = {}
    for channel, kind in kinds.items():
        data = torch.stack([patch[channel][tio.DATA] for patch in patches])
        if spatial_dims == 2:
            data = data.squeeze(-1)
        batch[channel] = as_kind(data, kind)
    return batch


class WholeVolumes(Dataset):
    """Cached cases as whole (brain-cropped) volumes: {channel: (1, X, Y, Z)}, for validation."""

    def __init__(self, cases: Sequence[CachedCase]) -> None:
        self.cases = list(cases)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, Any]:
        case = self.cases[index]
        item: dict[str, Any] = {"case_id": case.case_id}
        for channel, kind in case.kinds.items():
            item[channel] = as_kind(torch.from_numpy(np.array(case.array(channel)))[None], kind)
        return item


class PatchDataModule(pl.LightningDataModule):
    """Random patches from cached training cases (TorchIO ``Queue`` with a uniform sampler), and
    whole validation volumes.

    Args:
        training, validation: cached cases (:func:`cache_cases`).
        patch_size: patch shape in voxels; with ``spatial_dims=2`` the last entry is ignored and
            patches are single axial slices.
        spatial_dims: 3 for volumes, 2 for axial slices.
        samples_per_volume: patches drawn from each loaded volume.
        queue_length: patches held by the queue (shuffled among each other).
        batch_size: patches per training step.
        num_workers: processes loading volumes for the queue.
        flip: augmentation, see :func:`flip_transform`.
        augmentation: probability of each of :data:`AUGMENTATIONS` per loaded volume (missing or 0: off).
        intensity_channels: the image channels intensity augmentations change (the network's inputs);
            None: every image channel.
    """

    def __init__(
        self,
        training: Sequence[CachedCase],
        validation: Sequence[CachedCase] = (),
        patch_size: Sequence[int] = (128, 128, 128),
        spatial_dims: int = 3,
        samples_per_volume: int = 8,
        queue_length: int = 64,
        batch_size: int = 1,
        num_workers: int = 2,
        flip: Flip = "lr_ap",
        augmentation: Mapping[str, float] | None = None,
        intensity_channels: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        check_choice("flip", flip, FLIPS)
        self.augmentation = dict(augmentation or {})
        check_augmentation(self.augmentation)
        self.intensity_channels = None if intensity_channels is None else list(intensity_channels)
        if len(patch_size) != 3:
            raise ValueError(f"patch_size must have 3 entries (x, y, z), got {list(patch_size)}")
        self.training = list(training)
        self.validation = list(validation)
        self.spatial_dims = spatial_dims
        self.patch_size = (*patch_size[:2], 1) if spatial_dims == 2 else tuple(patch_size)
        self.samples_per_volume = samples_per_volume
        self.queue_length = max(queue_length, samples_per_volume)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.flip = flip
        self.subject_sampler: DistributedSampler | None = None

    def transform(self) -> tio.Transform | None:
        """What each loaded training volume goes through before its patches are drawn."""
        images = [channel for channel, kind in self.training[0].kinds.items() if kind == IMAGE]
        channels = images if self.intensity_channels is None else self.intensity_channels
        return training_transform(self.flip, self.augmentation, channels)

    def train_dataloader(self) -> DataLoader:
        subjects = tio.SubjectsDataset([torchio_subject(case) for case in self.training], transform=self.transform())
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        # Under DDP each rank loads its own share of the volumes (Lightning's sampler injection is
        # off for this loader: the queue, not the loader, decides what is loaded).
        self.subject_sampler = DistributedSampler(subjects, shuffle=True) if distributed else None
        queue = tio.Queue(
            subjects,
            max_length=self.queue_length,
            samples_per_volume=self.samples_per_volume,
            sampler=tio.UniformSampler(self.patch_size),
            subject_sampler=self.subject_sampler,
            num_workers=self.num_workers,
            shuffle_subjects=self.subject_sampler is None,
        )
        return DataLoader(
            queue,
            batch_size=self.batch_size,
            num_workers=0,  # the queue's own workers load the volumes
            pin_memory=torch.cuda.is_available(),  # page-locked, so Lightning's copy to the GPU is asynchronous
            collate_fn=functools.partial(collate_patches, kinds=self.training[0].kinds, spatial_dims=self.spatial_dims),
        )

    def val_dataloader(self) -> DataLoader | list:
        if not self.validation:
            return []
        return DataLoader(WholeVolumes(self.validation), batch_size=1, num_workers=0)
