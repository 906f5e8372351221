"""The embedded phantom data set: brain-tumour subjects in the BraTS 2023 layout, made on the fly.

Each subject is the MNI152 2009c nonlinear symmetric grey- and white-matter probability maps (shipped
inside the nilearn wheel, so nothing is downloaded), warped by a random affine and a smooth random
displacement, with one tumour (necrotic core, enhancing rim, oedema; BraTS 2023 labels 1, 3, 2).
Intensities come from MR signal equations applied to per-tissue relaxation times and proton density,
with partial volumes, a smooth bias field per contrast, Rician noise, and integer scanner-like values;
the background is 0 outside the brain, as in skull-stripped BraTS data.

The healthy-tissue values at 1.5 T are BrainWeb's (Kwan, Evans & Pike, "MRI simulation-based
evaluation of image-processing and classification methods", IEEE TMI 18(11), 1999; Collins et al.,
IEEE TMI 17(3), 1998): CSF T1 2569 ms, T2 329 ms, PD 1.0; grey matter 833 / 83 / 0.86; white matter
500 / 70 / 0.77. The tumour values are illustrative, chosen so that each compartment behaves as
reported in the glioma literature: necrosis fluid-like (long T1 and T2), oedema with raised water
content (longer T1 and T2 than white matter, bright on T2 and FLAIR), the enhancing rim with a T1 that
gadolinium shortens to 350 ms on T1CE.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy import ndimage

from common.cores import usable_cores
from common.files import cache_root, write_json_atomic
from common.progress import track
from datamodules.dataset import SynthesisDataset
from datamodules.nifti import Volume, load_volume, new_header, save_volume
from datamodules.phantom_randomisation import RANDOMISED_CONTRASTS, PhantomRandomisation

log = logging.getLogger(__name__)

FIELD_OF_VIEW_MM = (240.0, 240.0, 155.0)  # BraTS (SRI24) space: 240 x 240 x 155 voxels of 1 mm
BRAIN_CENTRE_MNI_MM = (0.0, -18.0, 8.0)  # centre of the MNI152 brain, placed at the field of view's centre


@dataclass(frozen=True)
class Tissue:
    t1_ms: float
    t2_ms: float
    proton_density: float


TISSUES: dict[str, Tissue] = {
    "csf": Tissue(2569.0, 329.0, 1.00),
    "grey_matter": Tissue(833.0, 83.0, 0.86),
    "white_matter": Tissue(500.0, 70.0, 0.77),
    "necrosis": Tissue(2300.0, 260.0, 0.95),
    "enhancing": Tissue(1300.0, 120.0, 0.90),
    "oedema": Tissue(1150.0, 170.0, 0.92),
}
ENHANCING_T1_POST_CONTRAST_MS = 350.0

# Sequence timings (ms). FLAIR's inversion time nulls CSF: 1 - 2 exp(-TI/T1) + exp(-TR/T1) = 0.
SPIN_ECHO_T1 = {"repetition": 500.0, "echo": 15.0}
SPIN_ECHO_T2 = {"repetition": 4000.0, "echo": 100.0}
FLAIR = {"repetition": 9000.0, "echo": 100.0, "inversion": 1704.0}
# Multiplies the [0, 1] signal into scanner-like integer ranges (white matter ~1000 on T1, CSF ~2300 on T2).
SCANNER_GAIN = {"t1n": 2500.0, "t1c": 2500.0, "t2w": 4000.0, "t2f": 4000.0}
NOISE_FRACTION = 0.012  # Rician noise sigma as a fraction of the mean brain signal
BRATS2023_SUFFIXES = ("t1n", "t1c", "t2w", "t2f", "seg")


def spin_echo(tissue: Tissue, repetition: float, echo: float, t1_ms: float | None = None) -> float:
    """S = PD (1 - exp(-TR/T1)) exp(-TE/T2)."""
    t1 = tissue.t1_ms if t1_ms is None else t1_ms
    return tissue.proton_density * (1 - np.exp(-repetition / t1)) * np.exp(-echo / tissue.t2_ms)


def inversion_recovery(tissue: Tissue, repetition: float, echo: float, inversion: float) -> float:
    """Magnitude IR: S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)."""
    longitudinal = 1 - 2 * np.exp(-inversion / tissue.t1_ms) + np.exp(-repetition / tissue.t1_ms)
    return tissue.proton_density * abs(longitudinal) * np.exp(-echo / tissue.t2_ms)


def tissue_signals(tissues: dict[str, Tissue]) -> dict[str, dict[str, float]]:
    """Contrast -> tissue -> noise-free signal."""
    signals: dict[str, dict[str, float]] = {"t1n": {}, "t1c": {}, "t2w": {}, "t2f": {}}
    for name, tissue in tissues.items():
        signals["t1n"][name] = spin_echo(tissue, **SPIN_ECHO_T1)
        post_contrast = ENHANCING_T1_POST_CONTRAST_MS if name == "enhancing" else None
        signals["t1c"][name] = spin_echo(tissue, **SPIN_ECHO_T1, t1_ms=post_contrast)
        signals["t2w"][name] = spin_echo(tissue, **SPIN_ECHO_T2)
        signals["t2f"][name] = inversion_recovery(tissue, **FLAIR)
    return signals


@cache
def _mni_tissue_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(grey, white, csf probability maps, MNI affine) on the 1 mm MNI152 2009 grid."""
    import nilearn  # only its packaged data files are used

    folder = Path(nilearn.__file__).parent / "datasets" / "data"
    grey = load_volume(folder / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")
    white = load_volume(folder / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")
    grey_p = grey.data.astype(np.float32) / 255.0
    white_p = white.data.astype(np.float32) / 255.0
    # CSF: inside the closed, hole-filled brain envelope but neither grey nor white matter
    # (ventricles are enclosed by white matter, sulci by the closing).
    envelope = ndimage.binary_fill_holes(ndimage.binary_closing(grey_p + white_p > 0.3, iterations=4))
    envelope_p = ndimage.gaussian_filter(envelope.astype(np.float32), 0.8)
    csf_p = np.clip(envelope_p - grey_p - white_p, 0.0, 1.0)
    return grey_p, white_p, csf_p, grey.affine


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], coarse: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-ish smooth random field: coarse Gaussian noise upsampled with cubic splines."""
    # Cubic splines to a quarter-resolution grid, then linear to full size: smooth, and 10x cheaper
    # than cubic splines at full size.
    grid = rng.standard_normal(coarse)
    middle = tuple(max(c, -(-s // 4)) for s, c in zip(shape, coarse, strict=True))
    grid = ndimage.zoom(
        grid, [m / c for m, c in zip(middle, coarse, strict=True)], order=3, grid_mode=True, mode="nearest"
    )
    return ndimage.zoom(
        grid.astype(np.float32),
        [s / m for s, m in zip(shape, middle, strict=True)],
        order=1,
        grid_mode=True,
        mode="nearest",
    )


def phantom_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """RAS affine mapping ``shape`` voxels onto the BraTS field of view (spacing = FOV / shape)."""
    spacing = np.array(FIELD_OF_VIEW_MM) / np.array(shape)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = np.array(BRAIN_CENTRE_MNI_MM) - spacing * (np.array(shape) - 1) / 2
    return affine


def _warped_tissues(
    rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(brain mask, healthy tissue fractions): the MNI152 maps warped by a random affine and a smooth
    displacement of a few mm onto the output grid."""
    grey_p, white_p, csf_p, mni_affine = _mni_tissue_maps()
    # Where each output voxel samples the template: x_mni = c + A (x - c) + displacement(x).
    centre = np.array(BRAIN_CENTRE_MNI_MM)
    angle = np.deg2rad(rng.uniform(-6, 6))
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    linear = rotation @ np.diag(rng.uniform(0.92, 1.08, size=3))
    to_mni_voxels = np.linalg.inv(mni_affine)
    matrix = to_mni_voxels[:3, :3] @ linear @ affine[:3, :3]
    offset = to_mni_voxels[:3, :3] @ (centre + linear @ (affine[:3, 3] - centre)) + to_mni_voxels[:3, 3]
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coordinates = (matrix.astype(np.float32) @ grid + offset.astype(np.float32)[:, None]).reshape(3, *shape)
    for axis in range(3):
        coordinates[axis] += 3.0 * _smooth_noise(rng, shape, (5, 6, 5))
    grey, white, csf = (
        ndimage.map_coordinates(p, coordinates, order=1, mode="constant", cval=0.0) for p in (grey_p, white_p, csf_p)
    )
    total = grey + white + csf
    brain = ndimage.binary_fill_holes(total > 0.5)
    fractions = {
        name: np.where(brain, p / np.maximum(total, 1e-6), 0.0).astype(np.float32)
        for name, p in (("csf", csf), ("grey_matter", grey), ("white_matter", white))
    }
    return brain, fractions


def _add_tumour(
    rng: np.random.Generator, brain: np.ndarray, fractions: dict[str, np.ndarray], shape: tuple[int, int, int]
) -> np.ndarray:
    """Put an irregular ball of tumour, centred in white matter, into ``fractions`` (in place: its
    compartments displace the healthy tissue); returns the segmentation (BraTS 2023 labels)."""
    spacing = np.array(FIELD_OF_VIEW_MM) / np.array(shape)
    candidates = np.flatnonzero((fractions["white_matter"] > 0.7).ravel())
    centre_voxel = np.array(np.unravel_index(candidates[rng.integers(len(candidates))], shape))
    radius_mm = rng.uniform(12.0, 22.0)
    axes_mm = [np.arange(n, dtype=np.float32) * s - c * s for n, s, c in zip(shape, spacing, centre_voxel, strict=True)]
    distance = np.sqrt(axes_mm[0][:, None, None] ** 2 + axes_mm[1][None, :, None] ** 2 + axes_mm[2][None, None, :] ** 2)
    relative = distance / radius_mm * (1.0 + 0.22 * _smooth_noise(rng, shape, (6, 6, 5)))
    necrosis = brain & (relative < 0.35)
    enhancing = brain & (relative < 0.6) & ~necrosis
    oedema = (
        brain
        & (relative < 1.6)
        & ~necrosis
        & ~enhancing
        & (fractions["white_matter"] + 0.3 * fractions["grey_matter"] > 0.3)
    )
    segmentation = np.zeros(shape, dtype=np.int16)
    segmentation[necrosis], segmentation[oedema], segmentation[enhancing] = 1, 2, 3
    for name, region, share in (("necrosis", necrosis, 1.0), ("enhancing", enhancing, 1.0), ("oedema", oedema, 0.85)):
        for healthy in ("csf", "grey_matter", "white_matter"):
            fractions[healthy][region] *= 1.0 - share
        fractions[name] = np.where(region, share, 0.0).astype(np.float32)
    return segmentation


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """A smooth multiplicative field: the exponential of a random quadratic in the normalised axes."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    c = rng.normal(0.0, 0.08, size=6).astype(np.float32)
    return np.exp(c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * x * x + c[5] * z * z)


def make_subject(
    seed: int,
    index: int,
    shape: tuple[int, int, int] = (240, 240, 155),
    randomise: PhantomRandomisation | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One phantom subject: ({t1n, t1c, t2w, t2f: int16, seg: int16}, affine). Deterministic in
    (seed, index); ``randomise`` changes only the source contrasts (the T2 and the segmentation are
    the plain subject's)."""
    randomise = randomise or PhantomRandomisation()
    rng = np.random.default_rng([seed, index])
    affine = phantom_affine(shape)
    brain, fractions = _warped_tissues(rng, shape, affine)
    segmentation = _add_tumour(rng, brain, fractions, shape)

    # Per-subject biological variation of relaxation times (about 4 %).
    tissues = {
        name: Tissue(t.t1_ms * rng.normal(1, 0.04), t.t2_ms * rng.normal(1, 0.04), t.proton_density)
        for name, t in TISSUES.items()
    }
    images: dict[str, np.ndarray] = {}
    for number, (contrast, per_tissue) in enumerate(tissue_signals(tissues).items()):
        signal = sum(fractions[name] * np.float32(value) for name, value in per_tissue.items())
        signal = signal * _bias_field(rng, shape)  # drawn for every contrast, so that the T2 stays the same
        if randomise.active and contrast in RANDOMISED_CONTRASTS:
            signal = randomise.source_image(fractions, per_tissue, affine, (seed, index, number))
        sigma = NOISE_FRACTION * float(signal[brain].mean())
        real = signal + rng.normal(0.0, sigma, size=shape).astype(np.float32)
        imaginary = rng.normal(0.0, sigma, size=shape).astype(np.float32)
        magnitude = np.sqrt(real * real + imaginary * imaginary)  # Rician
        scanner = np.rint(magnitude * SCANNER_GAIN[contrast])
        images[contrast] = np.where(brain, np.clip(scanner, 1, 32767), 0).astype(np.int16)
    images["seg"] = segmentation
    return images, affine


def case_name(index: int) -> str:
    return f"PHANTOM-{index:05d}-000"


def _write_subject(
    folder: Path, seed: int, index: int, shape: tuple[int, int, int], randomise: PhantomRandomisation
) -> str:
    name = case_name(index)
    case_folder = folder / name
    if all((case_folder / f"{name}-{suffix}.nii.gz").exists() for suffix in BRATS2023_SUFFIXES):
        return name
    images, affine = make_subject(seed, index, shape, randomise)
    header = new_header(affine)
    for suffix, data in images.items():
        volume = Volume(data=data, affine=affine, header=header)
        save_volume(volume, case_folder / f"{name}-{suffix}.nii.gz", dtype=np.int16)
    return name


def generate_phantom(
    folder: str | Path,
    n_subjects: int = 20,
    shape: tuple[int, int, int] = (240, 240, 155),
    seed: int = 0,
    workers: int | None = None,
    randomise: Mapping[str, float] | PhantomRandomisation | None = None,
) -> Path:
    """Write the phantom data set into ``folder`` (BraTS 2023 layout). Subjects already there are kept,
    so an interrupted generation resumes. ``randomise``: see :class:`PhantomRandomisation`."""
    randomise = PhantomRandomisation.of(randomise)
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    workers = min(workers or usable_cores(), n_subjects)
    description = f"Generating phantom ({n_subjects} subjects, {workers} process(es))"
    if workers > 1:
        # spawn, not fork: the randomisation runs torch, which a forked child of a process that has
        # used it can deadlock in
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            jobs = [pool.submit(_write_subject, folder, seed, i, shape, randomise) for i in range(n_subjects)]
            for job in track(as_completed(jobs), description, total=n_subjects, every=1):
                job.result()
    else:
        for i in track(range(n_subjects), description, every=1):
            _write_subject(folder, seed, i, shape, randomise)
    record = {"generator": "datamodules.phantom", "n_subjects": n_subjects, "shape": list(shape), "seed": seed}
    if randomise.active:
        record["randomise"] = randomise.changed()
    write_json_atomic(record, folder / "phantom.json")
    return folder


def default_cache_folder(
    n_subjects: int, shape: tuple[int, int, int], seed: int, randomise: PhantomRandomisation | None = None
) -> Path:
    """``<cache root>/phantom_n<subjects>_<shape>_seed<seed>``, with ``_random-<hash of the options>``
    for a randomised phantom."""
    name = f"phantom_n{n_subjects}_{'x'.join(map(str, shape))}_seed{seed}"
    if randomise is not None and randomise.active:
        options = json.dumps(randomise.changed(), sort_keys=True)
        name += f"_random-{hashlib.sha256(options.encode()).hexdigest()[:10]}"
    return cache_root() / name


def phantom_dataset(
    n_subjects: int = 20,
    shape: tuple[int, int, int] | list[int] = (240, 240, 155),
    seed: int = 0,
    root: str | Path | None = None,
    split_seed: int = 0,
    randomise: Mapping[str, float] | None = None,
) -> SynthesisDataset:
    """The phantom as a :class:`SynthesisDataset`, generated once into ``root`` (default: a cache
    folder named by its parameters, under :func:`common.files.cache_root`); ``randomise``: the
    per-subject randomisation of the source contrasts (:class:`PhantomRandomisation`; None: off)."""
    options = PhantomRandomisation.of(randomise)
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes of at least 8 voxels, got {shape}")
    folder = Path(root).expanduser() if root is not None else default_cache_folder(n_subjects, shape, seed, options)
    if not (folder / "phantom.json").exists():
        generate_phantom(folder, n_subjects, shape, seed, randomise=options)
    return SynthesisDataset(folder, layout="brats2023", label_convention="brats2023", split_seed=split_seed)
