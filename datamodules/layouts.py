"""Data set layouts on disk, detected from a root path.

Three layouts are understood, each mapping its own file names onto the project's modality names
``t1, t1ce, t2, flair, seg``:

- ``brats2019``: ``[HGG|LGG/]<case>/<case>_{t1,t1ce,t2,flair,seg}.nii[.gz]``
- ``brats2023``: ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii[.gz]``
- ``per_modality`` (the reference code's): ``<split>/{t1,t2,truth}/<case>.nii[.gz]``; here the split
  folders are the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from common.checks import check_choice
from common.contrasts import CONTRASTS
from common.errors import InvalidInputError
from datamodules.nifti import NIFTI_SUFFIXES, strip_nifti_suffix

MODALITIES = (*CONTRASTS, "seg")


@dataclass(frozen=True)
class Case:
    """One subject on disk: where each modality is, or would be.

    Attributes:
        case_id: the subject's name, unique within the data set.
        expected: modality -> path stem (without ``.nii[.gz]``) where the file belongs.
        group: the folder grouping the case (``HGG``/``LGG``, or the per-modality split folder).
    """

    case_id: str
    expected: dict[str, Path]
    group: str | None = None

    def find(self, modality: str) -> Path | None:
        """The file of ``modality`` if there is one (``.nii.gz`` or ``.nii``; a dangling link counts,
        so that reading it names the problem), else None.

        Raises:
            InvalidInputError: both ``.nii.gz`` and ``.nii`` exist (which one is meant is unclear).
        """
        stem = self.expected.get(modality)
        if stem is None:
            return None
        found = [stem.with_name(stem.name + suffix) for suffix in NIFTI_SUFFIXES]
        found = [path for path in found if path.exists() or path.is_symlink()]
        if len(found) > 1:
            raise InvalidInputError(found[0], f"both {found[0].name} and {found[1].name} exist: remove one")
        return found[0] if found else None

    def has(self, modality: str) -> bool:
        return self.find(modality) is not None

    def path(self, modality: str) -> Path:
        """The file of ``modality``; raises a clear error naming the expected file when it is missing."""
        found = self.find(modality)
        if found is None:
            stem = self.expected.get(modality)
            where = f"{stem}.nii.gz" if stem is not None else "(this layout has no such modality)"
            raise InvalidInputError(where, f"missing {modality} for case {self.case_id}")
        return found


class Layout:
    """A way of arranging cases on disk."""

    name: str
    default_label_convention: str

    def matches(self, root: Path) -> bool:
        raise NotImplementedError

    def find_cases(self, root: Path) -> list[Case]:
        raise NotImplementedError


def _nifti_files(folder: Path) -> list[Path]:
    """NIfTI files in ``folder``, dangling links included (reading one names the problem)."""
    return sorted(p for p in folder.iterdir() if (p.is_file() or p.is_symlink()) and p.name.endswith(NIFTI_SUFFIXES))


class _PerCaseFolderLayout(Layout):
    """Layouts with one folder per case and ``<case><separator><suffix>.nii[.gz]`` files."""

    separator: str
    suffixes: dict[str, str]  # modality -> file-name suffix
    group_folders: tuple[str, ...] = ()

    def _case_folders(self, root: Path) -> list[tuple[Path, str | None]]:
        folders: list[tuple[Path, str | None]] = []
        for group in self.group_folders:
            if (root / group).is_dir():
                folders += [(p, group) for p in sorted((root / group).iterdir()) if p.is_dir()]
        folders += [(p, None) for p in sorted(root.iterdir()) if p.is_dir() and p.name not in self.group_folders]
        return folders

    def _is_case(self, folder: Path) -> bool:
        """A folder holding any file named as this layout names a case's files (a case missing its
        T1 is still a case, so that a role needing the T1 names the missing file)."""
        names = {
            f"{folder.name}{self.separator}{suffix}{ext}" for suffix in self.suffixes.values() for ext in NIFTI_SUFFIXES
        }
        return any(path.name in names for path in folder.iterdir())

    def matches(self, root: Path) -> bool:
        return any(self._is_case(folder) for folder, _ in self._case_folders(root))

    def case_at(self, folder: Path, group: str | None = None) -> Case | None:
        """The case whose files ``folder`` holds, or None when it holds none named so."""
        if not self._is_case(folder):
            return None
        expected = {m: folder / f"{folder.name}{self.separator}{s}" for m, s in self.suffixes.items()}
        return Case(case_id=folder.name, expected=expected, group=group)

    def find_cases(self, root: Path) -> list[Case]:
        found = (self.case_at(folder, group) for folder, group in self._case_folders(root))
        return [case for case in found if case is not None]


class BraTS2019Layout(_PerCaseFolderLayout):
    name = "brats2019"
    default_label_convention = "brats2019"
    separator = "_"
    suffixes: ClassVar[dict[str, str]] = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"}
    group_folders = ("HGG", "LGG")


class BraTS2023Layout(_PerCaseFolderLayout):
    name = "brats2023"
    default_label_convention = "brats2023"
    separator = "-"
    suffixes: ClassVar[dict[str, str]] = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"}


class PerModalityLayout(Layout):
    """``<split>/<modality folder>/<case>.nii[.gz]``; the reference code calls the segmentation ``truth``."""

    name = "per_modality"
    default_label_convention = "brats2019"
    folders: ClassVar[dict[str, str]] = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "truth"}

    def _split_folders(self, root: Path) -> list[Path]:
        return [p for p in sorted(root.iterdir()) if p.is_dir() and (p / "t1").is_dir()]

    def matches(self, root: Path) -> bool:
        return any(_nifti_files(split / "t1") for split in self._split_folders(root))

    def find_cases(self, root: Path) -> list[Case]:
        """Every case named in any modality folder of a split (a case missing its T1 is still a case)."""
        cases = []
        for split in self._split_folders(root):
            names = {
                strip_nifti_suffix(path.name)
                for folder in self.folders.values()
                if (split / folder).is_dir()
                for path in _nifti_files(split / folder)
            }
            for name in sorted(names):
                expected = {m: split / folder / name for m, folder in self.folders.items()}
                cases.append(Case(case_id=name, expected=expected, group=split.name))
        return cases


LAYOUTS: dict[str, Layout] = {
    layout.name: layout for layout in (BraTS2019Layout(), BraTS2023Layout(), PerModalityLayout())
}


def find_layout(root: str | Path) -> Layout | None:
    """The layout of the data set at ``root``, or None when no layout matches.

    Raises:
        InvalidInputError: ``root`` is not a folder, or more than one layout matches (named).
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(root, "data root is not a directory")
    matching = [layout for layout in LAYOUTS.values() if layout.matches(root)]
    if len(matching) > 1:
        names = ", ".join(layout.name for layout in matching)
        raise InvalidInputError(root, f"ambiguous layout (matches {names}); set data.layout explicitly")
    return matching[0] if matching else None


def find_case_folder(folder: str | Path) -> Case | None:
    """The case of a single case's folder (``.../BraTS-GLI-00001-000/``) in a per-case layout, or
    None when the folder is not one."""
    folder = Path(folder)
    for layout in LAYOUTS.values():
        if isinstance(layout, _PerCaseFolderLayout) and (case := layout.case_at(folder)) is not None:
            return case
    return None


def detect_layout(root: str | Path) -> Layout:
    """The layout of the data set at ``root``; raises if none or more than one matches."""
    layout = find_layout(root)
    if layout is None:
        raise InvalidInputError(
            root,
            "no known data set layout found (expected BraTS 2019 <case>/<case>_t1.nii.gz, "
            "BraTS 2023 <case>/<case>-t1n.nii.gz, or <split>/t1/<case>.nii.gz)",
        )
    return layout


def get_layout(name: str) -> Layout:
    check_choice("layout", name, sorted(LAYOUTS))
    return LAYOUTS[name]
