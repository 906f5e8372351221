"""The one module that reads and writes NIfTI files.

Nothing else in the project imports nibabel. A :class:`Volume` carries its voxels together with the
affine and header they came with, so geometry travels with the data and every file we write carries
the input's affine, qform/sform codes and pixel dimensions.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from common.errors import InvalidInputError
from common.files import atomic_write

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image with its geometry.

    Attributes:
        data: voxel array of shape (X, Y, Z), in the file's voxel order.
        affine: 4x4 voxel-to-world matrix (mm).
        header: the NIfTI-1 header it was read with (or that it inherits).
        path: where it was read from, if anywhere; used in error messages.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: Path | None = field(default=None)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<in-memory volume>"

    def with_data(self, data: np.ndarray) -> Volume:
        """A new volume with the same geometry and header and other voxels."""
        if data.shape != self.data.shape:
            raise ValueError(f"shape {data.shape} does not match the volume's shape {self.data.shape}")
        return Volume(data=data, affine=self.affine, header=self.header, path=None)


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


#: Voxel kinds a scan may hold (numpy's dtype kinds): booleans, integers, floating point. RGB
#: (structured) and complex images are not MR magnitude images.
SUPPORTED_KINDS = "biuf"


@dataclass(frozen=True)
class Geometry:
    """What a NIfTI header says about its volume, read without decoding the voxels."""

    path: Path
    shape: tuple[int, ...]
    affine: np.ndarray

    @property
    def name(self) -> str:
        """The file, as :class:`Volume` names it (for :func:`check_same_geometry`)."""
        return str(self.path)


def _open(path: Path) -> tuple[nib.Nifti1Image | nib.Nifti2Image, tuple[int, ...]]:
    """The lazily loaded image (header only) and its 3-D shape, with the header-level checks."""
    if not path.exists():
        reason = "dangling symbolic link" if path.is_symlink() else "file not found"
        raise InvalidInputError(path, reason)
    try:
        image = nib.load(path)
    except Exception as error:  # nibabel raises many types for a bad file
        raise InvalidInputError(path, f"not a readable NIfTI file ({error})") from error
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise InvalidInputError(path, f"not a NIfTI image ({type(image).__name__})")
    dtype = image.get_data_dtype()
    if dtype.kind not in SUPPORTED_KINDS:
        what = "RGB" if dtype.names else "complex" if dtype.kind == "c" else str(dtype)
        raise InvalidInputError(path, f"{what} voxels ({dtype}) are not supported: expected a real-valued scan")
    shape = image.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InvalidInputError(path, f"expected a 3-D volume, found shape {image.shape}")
    return image, shape


def _check_complete(path: Path, image: nib.Nifti1Image | nib.Nifti2Image) -> None:
    """Raise if the file is shorter than its header says, without decompressing it: an uncompressed
    file by its size, a gzip file by the uncompressed size its trailer records (modulo 2^32)."""
    offset = int(image.dataobj.offset)  # the header's vox_offset, or where the data really start when it is 0
    needed = offset + int(np.prod(image.shape)) * image.get_data_dtype().itemsize
    if path.name.endswith(".gz"):
        with path.open("rb") as stream:
            stream.seek(0, os.SEEK_END)
            if stream.tell() < 18:
                raise InvalidInputError(path, "truncated gzip file")
            stream.seek(-4, os.SEEK_END)
            recorded = int.from_bytes(stream.read(4), "little")
        if recorded != needed % 2**32:
            raise InvalidInputError(
                path, f"truncated or corrupt: the header needs {needed} bytes, the file holds another size"
            )
    elif path.stat().st_size < needed:
        raise InvalidInputError(path, f"truncated: the header needs {needed} bytes, the file has {path.stat().st_size}")


def read_geometry(path: str | os.PathLike) -> Geometry:
    """Check a NIfTI file from its header and its length only (milliseconds, however large): it
    exists, is readable, 3-D, of a supported voxel type, and as long as its header says.

    Raises:
        InvalidInputError: naming the file and the problem.
    """
    path = Path(path)
    image, shape = _open(path)
    _check_complete(path, image)
    return Geometry(path=path, shape=tuple(int(n) for n in shape), affine=image.affine.copy())


def load_volume(path: str | os.PathLike, *, label_map: bool = False) -> Volume:
    """Read a 3-D NIfTI volume, checking what real scans get wrong.

    Intensity images keep their on-disk dtype (int16 stays int16) unless the header asks for
    scaling, in which case nibabel returns floats. Label maps must hold integer values and are
    returned as int16.

    Raises:
        InvalidInputError: the file is missing (or a dangling link), unreadable or truncated, not
            3-D (a trailing axis of length 1 is accepted), of RGB or complex voxels, or holds NaN/Inf
            voxels or non-integer labels.
    """
    path = Path(path)
    image, shape = _open(path)
    try:
        data = np.asanyarray(image.dataobj).reshape(shape)
    except (EOFError, OSError, zlib.error, ValueError) as error:
        raise InvalidInputError(path, f"truncated or corrupt image data ({error})") from error
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise InvalidInputError(path, f"{bad} voxels are NaN or Inf")
    if label_map:
        if np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.round(data)):
            raise InvalidInputError(path, "segmentation holds non-integer labels")
        data = data.astype(np.int16)
    header = nib.Nifti1Header.from_header(image.header)
    return Volume(data=data, affine=image.affine.copy(), header=header, path=path)


def save_volume(volume: Volume, path: str | os.PathLike, dtype: np.dtype | type = np.float32) -> Path:
    """Write ``volume`` atomically with its affine and header; returns the path.

    The data are written as ``dtype`` (float32 for synthetic images) with no intensity scaling;
    qform and sform keep their codes. The file appears under its final name only when complete:
    it is written to a temporary name in the same folder and renamed, so an interrupted run never
    leaves a half-written image behind.
    """
    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"{path}: output name must end in .nii or .nii.gz")
    header = volume.header.copy()
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(np.asarray(volume.data, dtype=dtype), volume.affine, header)
    image.set_qform(volume.affine, code=int(volume.header["qform_code"]))
    image.set_sform(volume.affine, code=int(volume.header["sform_code"]))
    image.header.set_slope_inter(np.nan, np.nan)
    with atomic_write(path) as temporary:
        nib.save(image, temporary)
    return path


def new_header(affine: np.ndarray, qform_code: int = 1, sform_code: int = 1) -> nib.Nifti1Header:
    """A fresh NIfTI-1 header for generated data (the phantom, tests) with the given affine."""
    header = nib.Nifti1Header()
    header.set_qform(affine, code=qform_code)
    header.set_sform(affine, code=sform_code)
    header.set_xyzt_units("mm", "sec")
    return header


def check_same_geometry(volumes: dict[str, Volume] | dict[str, Geometry], case_id: str, atol_mm: float = 1e-3) -> None:
    """Raise if the volumes of one case (decoded, or read from their headers) differ in shape or
    affine (tolerance in mm)."""
    names = list(volumes)
    first = volumes[names[0]]
    for name in names[1:]:
        other = volumes[name]
        if other.shape != first.shape:
            raise InvalidInputError(
                other.name, f"shape {other.shape} differs from {names[0]}'s {first.shape} in case {case_id}"
            )
        if not np.allclose(other.affine, first.affine, atol=atol_mm):
            raise InvalidInputError(other.name, f"affine differs from {names[0]}'s in case {case_id}")
