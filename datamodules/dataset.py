"""A data set on disk: its cases, label convention and split, and loading of validated subjects."""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from common.cores import usable_cores
from common.errors import InvalidInputError
from common.progress import track
from datamodules.labels import LabelConvention, get_label_convention
from datamodules.layouts import Case, Layout, detect_layout, get_layout
from datamodules.nifti import Volume, check_same_geometry, load_volume, read_geometry
from datamodules.preprocessing import brain_mask
from datamodules.splits import PAPER_PROPORTIONS, TRAIN, Split, load_split, make_split, save_split

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subject:
    """One loaded, validated case: its volumes by contrast name (``t1``, ``t1ce``, ``t2``, ``flair``),
    and its segmentation, or None when it has none (its tumour metrics are then n/a).

    ``anchor`` is the contrast whose brain mask every method and metric uses and whose geometry
    outputs take: a synthesis task's primary source (T1 for the paper's task), by default the first
    volume given.
    """

    case_id: str
    volumes: dict[str, Volume]
    segmentation: Volume | None = None
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.volumes:
            raise ValueError(f"case {self.case_id}: a subject needs at least one volume")
        self.anchor = self.anchor or next(iter(self.volumes))
        if self.anchor not in self.volumes:
            raise ValueError(f"case {self.case_id}: anchor {self.anchor} is not among {list(self.volumes)}")

    def __getitem__(self, contrast: str) -> Volume:
        if contrast not in self.volumes:
            raise KeyError(f"case {self.case_id} was loaded without {contrast} (it has {list(self.volumes)})")
        return self.volumes[contrast]

    def get(self, contrast: str) -> Volume | None:
        return self.volumes.get(contrast)

    @property
    def reference(self) -> Volume:
        """The anchor volume: outputs take its affine and header."""
        return self.volumes[self.anchor]

    def volume_like(self, data: np.ndarray) -> Volume:
        """``data`` as a volume with the subject's geometry (the anchor's affine and header)."""
        return self.reference.with_data(data)

    def replace(self, contrast: str, volume: Volume) -> Subject:
        """A copy with ``contrast`` set to ``volume`` (e.g. a synthetic one); the brain mask, once
        computed, is kept unless the anchor itself is replaced."""
        copy = Subject(self.case_id, {**self.volumes, contrast: volume}, self.segmentation, self.anchor)
        if "brain" in self.__dict__ and contrast != self.anchor:
            copy.__dict__["brain"] = self.brain
        return copy

    @cached_property
    def brain(self) -> np.ndarray:
        """The brain mask, derived from the anchor (see :func:`datamodules.preprocessing.brain_mask`)."""
        return brain_mask(self.reference)

    @property
    def tumour(self) -> np.ndarray | None:
        """Whole-tumour mask (every non-zero label), or None without a segmentation."""
        return None if self.segmentation is None else self.segmentation.data > 0


class SynthesisDataset:
    """Cases found under ``root``, with their label convention and split.

    Args:
        root: data set folder.
        layout: ``auto`` (detect), ``brats2019``, ``brats2023`` or ``per_modality``.
        label_convention: ``brats2019`` or ``brats2023``; default: the layout's.
        split_file: a split JSON to use. Default: ``<root>/split_seed<seed>.json``, made on first use
            with the paper's proportions (or the per-modality layout's own split folders).
        split_seed: seed of a newly made split.
        proportions: role -> weight for a newly made split (default: the paper's Table 1).
        write_split: save a newly made split as ``<root>/split_seed<seed>.json`` (training does, so
            that every run on the data set shares it; scoring and reporting tools only read).
    """

    def __init__(
        self,
        root: str | Path,
        layout: str = "auto",
        label_convention: str | None = None,
        split_file: str | Path | None = None,
        split_seed: int = 0,
        proportions: Mapping[str, float] | None = None,
        write_split: bool = True,
    ) -> None:
        self.root = Path(root).expanduser()
        self.layout: Layout = detect_layout(self.root) if layout == "auto" else get_layout(layout)
        self.labels: LabelConvention = get_label_convention(label_convention or self.layout.default_label_convention)
        found = self.layout.find_cases(self.root)
        self.cases: dict[str, Case] = {}
        for case in found:
            if case.case_id in self.cases:
                raise InvalidInputError(self.root, f"case name {case.case_id!r} appears twice")
            self.cases[case.case_id] = case
        if not self.cases:
            raise InvalidInputError(self.root, f"no cases found for the {self.layout.name} layout")
        self.split_seed = split_seed
        self.write_split = write_split
        self.split, self.split_file = self._resolve_split(split_file, proportions or PAPER_PROPORTIONS)

    def _resolve_split(
        self, split_file: str | Path | None, proportions: Mapping[str, float]
    ) -> tuple[Split, Path | None]:
        ids = list(self.cases)
        if split_file is not None:
            return load_split(Path(split_file), ids), Path(split_file)
        if self.layout.name == "per_modality":
            split: Split = {}
            for case in self.cases.values():
                split.setdefault(str(case.group), []).append(case.case_id)
            if TRAIN not in split:
                raise InvalidInputError(self.root, "per-modality layout without a 'train' folder")
            return split, None
        default = self.root / f"split_seed{self.split_seed}.json"
        if default.exists():
            split = load_split(default, ids)
            missing = sorted(set(ids) - {c for role in split.values() for c in role})
            if missing:
                raise InvalidInputError(
                    default, f"cases {missing[:5]} are in no role; delete the file to make a new split"
                )
            return split, default
        has_segmentation = {case_id: case.has("seg") for case_id, case in self.cases.items()}
        split = make_split(ids, has_segmentation, self.split_seed, proportions)
        if not self.write_split:
            return split, None
        # Write bits, not os.access: root may write anywhere, but a folder marked read-only stays so.
        if self.root.stat().st_mode & 0o222:
            try:
                save_split(split, default, self.split_seed)
                return split, default
            except OSError:
                pass
        log.info("data folder %s is read-only: the split is saved with the run only", self.root)
        return split, None

    @property
    def roles(self) -> list[str]:
        return [role for role, ids in self.split.items() if ids]

    def cases_in(self, role: str) -> list[Case]:
        if role not in self.split:
            raise KeyError(f"split has no role {role!r}; roles: {sorted(self.split)}")
        return [self.cases[case_id] for case_id in self.split[role]]

    def check(self, case: Case, modalities: Sequence[str]) -> int:
        """Check ``case``'s files for ``modalities`` (each required) and its segmentation when it has
        one from their headers only (:func:`datamodules.nifti.read_geometry`), and that they agree
        in shape and affine. Voxel checks (NaN/Inf, all background, labels) wait for :meth:`load`.
        Returns the number of files checked.

        Raises:
            InvalidInputError: naming the file and the problem.
        """
        names = [*modalities, *(["seg"] if case.has("seg") else [])]
        check_same_geometry({m: read_geometry(case.path(m)) for m in names}, case.case_id)
        return len(names)

    def load(self, case: Case, modalities: Sequence[str] = ("t1", "t2")) -> Subject:
        """Load ``case``: the given modalities (each required; the first is the subject's anchor,
        see :class:`Subject`) plus its segmentation when it has one.

        Raises:
            InvalidInputError: a modality is missing or bad, the volumes' shapes or affines differ,
                or the segmentation holds labels outside the convention.
        """
        volumes = {m: load_volume(case.path(m)) for m in modalities}
        segmentation = load_volume(case.path("seg"), label_map=True) if case.has("seg") else None
        check_same_geometry(volumes | ({"seg": segmentation} if segmentation else {}), case.case_id)
        if segmentation is not None:
            self.labels.validate(segmentation)
        subject = Subject(case.case_id, volumes, segmentation)
        subject.brain  # noqa: B018 -- validate now: an all-background anchor fails here, naming its file
        return subject


class LazySubjects(Sequence[Subject]):
    """A sequence of subjects loaded from disk on access, with progress when iterated.

    Iteration reads ahead with a thread per core (``workers``; decompression and the brain mask
    run outside Python's lock), yielding the subjects in order and holding at most ``workers`` of
    them besides the one being used.
    """

    def __init__(
        self, loader: Any, cases: Sequence[Any], description: str = "Loading subjects", workers: int | None = None
    ) -> None:
        self._loader = loader
        self._cases = list(cases)
        self.description = description
        self.workers = workers if workers is not None else usable_cores()

    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, index: int) -> Subject:  # type: ignore[override]
        return self._loader(self._cases[index])

    def __iter__(self) -> Iterator[Subject]:
        return track(self._read_ahead(), self.description, total=len(self._cases))

    def _read_ahead(self) -> Iterator[Subject]:
        if self.workers <= 1:
            yield from map(self._loader, self._cases)
            return
        cases = iter(self._cases)
        with ThreadPoolExecutor(self.workers) as pool:
            pending = deque(pool.submit(self._loader, case) for case in itertools.islice(cases, self.workers))
            while pending:
                subject = pending.popleft().result()
                if (case := next(cases, None)) is not None:
                    pending.append(pool.submit(self._loader, case))
                yield subject
