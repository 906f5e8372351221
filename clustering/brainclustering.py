"""BrainClustering (Baldini et al., section 2): T1 -> T2 through per-tissue tables of matched clusters.

Training, per patient: cluster the T1 and the T2 intensities into ``macro`` tissues by exact 1-D
k-means, and each tissue into micro clusters (its shades); match T2 tissues to T1 tissues, then T2
shades to T1 shades, by maximum voxel overlap (the Hungarian method); add one table row per matched
shade pair (mean T1 of the T1 shade -> mean T2 of the T2 shade) to the table of the T1 tissue, with
the moving average of eq. (1) when a key repeats. Query: cluster the query's T1 into ``macro``
tissues, look each voxel up in its tissue's table (exact hit, else linear interpolation between the
two nearest rows), and apply a 3x3 median per axial slice.

Two settings (see the README for the side-by-side table):

- ``paper`` (default): ``micro`` shades per tissue, eq. (1) as written, the data layer's brain mask
  (works with any background), matched pairs without a common voxel skipped, every tissue
  guaranteed a table, and values clamped to the end rows outside a table's range.
- ``reference``: the authors' code: ``micro`` is the total split evenly across tissues, the update
  is f += |a2 - f| / n, the foreground is "greater than the volume minimum" after their outlier
  removal, and a table extrapolates through the origin (f(x_k) x / x_k) beyond its end rows.

Search mode builds, per query, a model from the ``w`` training patients whose preprocessed T1 is
nearest in mean squared difference over the whole volume. Every patient's table rows and
preprocessed T1 are cached by ``fit``, so a query never re-reads or re-clusters the training set.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from clustering.kmeans import cluster_values, weighted_kmeans_1d
from datamodules.dataset import Subject
from datamodules.nifti import Volume
from datamodules.preprocessing import bounding_box, brain_mask, median_per_axial_slice, percentile_scale, unit_scale
from pipeline.contract import FitContext, SynthesisMethod

MODES = ("train", "search")
SETTINGS = ("paper", "reference")


# -- preprocessing -------------------------------------------------------------------------------


def reference_t1(data: np.ndarray) -> np.ndarray:
    """The reference code's T1 preprocessing: z-score on the voxels above the minimum, voxels above
    Q75 + 1.5 IQR (of those) set to the minimum, then a whole-volume min-max to [0, 1]."""
    volume = data.astype(np.float64)
    foreground = volume > volume.min()
    volume = (volume - volume[foreground].mean()) / volume[foreground].std()
    q25, q75 = np.percentile(volume[foreground], [25, 75])
    volume[volume > q75 + 1.5 * (q75 - q25)] = volume.min()
    return (volume - volume.min()) / (volume.max() - volume.min())


def reference_t2(data: np.ndarray) -> np.ndarray:
    """The reference code's T2 preprocessing: a whole-volume min-max to [0, 1]."""
    volume = data.astype(np.float64)
    return (volume - volume.min()) / (volume.max() - volume.min())


@dataclass(frozen=True)
class Prepared:
    """A subject on the method's scales: T1 (and T2) in [0, 1], and which voxels take part."""

    t1: np.ndarray
    t2: np.ndarray | None
    training_voxels: np.ndarray | None  # T1 and T2 foreground (training only)
    query_voxels: np.ndarray


# -- clustering and matching ---------------------------------------------------------------------


@dataclass(frozen=True)
class LeveledClustering:
    """Macro (tissue) and micro (shade) labels per voxel, and each shade's mean intensity."""

    macro: np.ndarray  # (voxels,) tissue index, 0 = darkest
    micro: np.ndarray  # (voxels,) shade index within its tissue, 0 = darkest
    means: np.ndarray  # (macro, micro) mean intensity of each shade; NaN when empty


def leveled_clustering(values: np.ndarray, macro: int, micro: int) -> LeveledClustering:
    """Exact k-means with ``macro`` clusters, then with ``micro`` clusters inside each, on the distinct
    values weighted by their counts (labels ordered by intensity at both levels)."""
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    tissue = weighted_kmeans_1d(distinct, counts, macro).labels
    shade = np.zeros(distinct.size, dtype=np.int64)
    means = np.full((macro, micro), np.nan)
    for t in range(macro):
        members = np.flatnonzero(tissue == t)  # a contiguous run of the sorted distinct values
        if members.size == 0:
            continue
        result = weighted_kmeans_1d(distinct[members], counts[members], micro)
        shade[members] = result.labels
        means[t] = result.centroids
    return LeveledClustering(macro=tissue[inverse], micro=shade[inverse], means=means)


def contingency(rows: np.ndarray, columns: np.ndarray, size: int) -> np.ndarray:
    """(size, size) counts of voxels with each (row label, column label)."""
    return np.bincount(rows * size + columns, minlength=size * size).reshape(size, size)


def match_labels(overlap: np.ndarray) -> np.ndarray:
    """For each row label, the column label matched to it by maximum total overlap (Hungarian)."""
    rows, columns = linear_sum_assignment(overlap, maximize=True)
    matched = np.empty(overlap.shape[0], dtype=np.int64)
    matched[rows] = columns
    return matched


@dataclass(frozen=True)
class TableRows:
    """Rows one training patient adds to the tables: tissue, key (T1 mean), value (T2 mean)."""

    tissue: np.ndarray
    key: np.ndarray
    value: np.ndarray

    @staticmethod
    def concatenate(parts: Sequence[TableRows]) -> TableRows:
        return TableRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("tissue", "key", "value")))


def patient_rows(t1: np.ndarray, t2: np.ndarray, macro: int, micro: int, skip_disjoint: bool) -> TableRows:
    """The table rows of one patient from the T1 and T2 values of the same voxels (training steps 1-3)."""
    c1, c2 = leveled_clustering(t1, macro, micro), leveled_clustering(t2, macro, micro)
    tissue_match = match_labels(contingency(c1.macro, c2.macro, macro))
    tissues, keys, values = [], [], []
    for t1_tissue, t2_tissue in enumerate(tissue_match):
        common = (c1.macro == t1_tissue) & (c2.macro == t2_tissue)
        overlap = contingency(c1.micro[common], c2.micro[common], micro)
        shade_match = match_labels(overlap)
        for t1_shade, t2_shade in enumerate(shade_match):
            key, value = c1.means[t1_tissue, t1_shade], c2.means[t2_tissue, t2_shade]
            if np.isnan(key) or np.isnan(value) or (skip_disjoint and overlap[t1_shade, t2_shade] == 0):
                continue
            tissues.append(t1_tissue)
            keys.append(key)
            values.append(value)
    return TableRows(np.array(tissues, dtype=np.int64), np.array(keys), np.array(values))


# -- tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    """One sorted table per tissue, stored flat: rows of tissue t are ``offsets[t]:offsets[t+1]``."""

    keys: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray

    def table(self, tissue: int) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(self.offsets[tissue], self.offsets[tissue + 1])
        return self.keys[rows], self.values[rows]


def build_tables(rows: TableRows, macro: int, absolute_update: bool) -> Tables:
    """Merge rows (in patient order) into per-tissue tables keyed by T1 mean.

    A repeated key is averaged by eq. (1), f <- f + (a2 - f) / n (the running mean), or with the
    reference's f <- f + |a2 - f| / n. A tissue left without rows takes the rows of all tissues, so
    no query voxel meets an empty table (the reference dereferences an empty map there).
    """
    keys_out, values_out, counts_out, offsets = [], [], [], [0]
    for tissue in range(macro):
        selected = rows.tissue == tissue
        if not selected.any():
            selected = np.ones_like(selected)
        key, value = rows.key[selected], rows.value[selected]
        order = np.argsort(key, kind="stable")  # equal keys stay in patient order
        key, value = key[order], value[order]
        unique_keys, starts, counts = np.unique(key, return_index=True, return_counts=True)
        merged = value[starts].copy()
        for index in np.flatnonzero(counts > 1):  # repeats are rare: keys are exact per-patient means
            f = value[starts[index]]
            for n, a2 in enumerate(value[starts[index] + 1 : starts[index] + counts[index]], start=2):
                f += (abs(a2 - f) if absolute_update else a2 - f) / n
            merged[index] = f
        keys_out.append(unique_keys)
        values_out.append(merged)
        counts_out.append(counts)
        offsets.append(offsets[-1] + unique_keys.size)
    return Tables(
        np.concatenate(keys_out),
        np.concatenate(values_out),
        np.concatenate(counts_out),
        np.array(offsets, dtype=np.int64),
    )


def look_up(keys: np.ndarray, values: np.ndarray, x: np.ndarray, through_origin: bool) -> np.ndarray:
    """Table value at ``x``: the row's value on an exact hit, linear interpolation between the two
    nearest rows inside the table; outside, the end row's value (clamped), or with ``through_origin``
    the reference's proportional extrapolation f(x_k) x / x_k from the nearest end row."""
    result = np.interp(x, keys, values)
    if through_origin:
        below, above = x < keys[0], x > keys[-1]
        result[below] = values[0] * x[below] / keys[0]
        result[above] = values[-1] * x[above] / keys[-1]
    return result


# -- the method ----------------------------------------------------------------------------------


class BrainClustering(SynthesisMethod):
    """BrainClustering in Train&Test (``mode="train"``) or Search (``mode="search"``) mode.

    Args:
        mode: ``train`` (one model from all training patients) or ``search`` (per query, a model from
            the ``w`` nearest training patients).
        w: number of neighbours in Search mode.
        macro: macro clusters (tissues), 3 to 6 as in the paper.
        micro: micro clusters per tissue (``paper``) or in total (``reference``, divisible by macro).
        setting: ``paper`` or ``reference`` (see the module docstring).
        median_filter: whether the main output is the median-filtered image; both are always made
            (``predict_all``).
    """

    def __init__(
        self,
        mode: str = "train",
        w: int = 5,
        macro: int = 4,
        micro: int = 100,
        setting: str = "paper",
        median_filter: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
        if not 3 <= macro <= 6:
            raise ValueError(f"macro must be between 3 and 6 (the paper's range), got {macro}")
        if micro < 1:
            raise ValueError(f"micro must be positive, got {micro}")
        if setting == "reference" and micro % macro:
            raise ValueError(
                f"with setting=reference, micro ({micro}) is a total and must be divisible by macro ({macro})"
            )
        if w < 1:
            raise ValueError(f"w must be positive, got {w}")
        self.mode, self.w, self.macro, self.micro = mode, w, macro, micro
        self.setting, self.median_filter = setting, median_filter

    @property
    def micro_per_tissue(self) -> int:
        return self.micro // self.macro if self.setting == "reference" else self.micro

    def prepare(self, subject: Subject, with_t2: bool) -> Prepared:
        """Put a subject on the method's scales (see the two settings)."""
        if self.setting == "reference":
            t1 = reference_t1(subject.t1.data)
            t2 = reference_t2(subject.t2.data) if with_t2 else None
            training = (t1 > 0) & (t2 > 0) if with_t2 else None
            return Prepared(t1, t2, training, t1 != 0)
        brain = subject.brain
        t1 = percentile_scale(subject.t1.data, brain).astype(np.float64)
        t2 = unit_scale(subject.t2.data, brain).astype(np.float64) if with_t2 else None
        training = brain & brain_mask(subject.t2) if with_t2 else None
        return Prepared(t1, t2, training, brain)

    def _fit(self, subjects: Sequence[Subject], context: FitContext) -> None:
        rows, boxes, crops, shape = [], [], [], None
        for subject in subjects:
            prepared = self.prepare(subject, with_t2=True)
            voxels = prepared.training_voxels
            if voxels.sum() < self.macro * self.micro_per_tissue:
                raise ValueError(
                    f"case {subject.case_id}: too few brain voxels ({voxels.sum()}) for "
                    f"{self.macro} x {self.micro_per_tissue} clusters"
                )
            rows.append(
                patient_rows(
                    prepared.t1[voxels],
                    prepared.t2[voxels],
                    self.macro,
                    self.micro_per_tissue,
                    skip_disjoint=self.setting == "paper",
                )
            )
            if self.mode == "search":
                if shape is not None and prepared.t1.shape != shape:
                    raise ValueError(
                        f"case {subject.case_id}: Search mode needs one volume shape, "
                        f"got {prepared.t1.shape} and {shape}"
                    )
                shape = prepared.t1.shape
                box = bounding_box(prepared.t1)
                boxes.append([(s.start, s.stop) for s in box])
                crops.append(prepared.t1[box].astype(np.float32))
        if not rows:
            raise ValueError("BrainClustering needs at least one training patient")
        self.patient_rows_ = rows
        self.tables_ = build_tables(TableRows.concatenate(rows), self.macro, self.setting == "reference")
        if self.mode == "search":
            self.search_shape_ = np.array(shape)
            self.search_boxes_ = np.array(boxes, dtype=np.int64)
            self.search_t1_ = crops

    # -- search --------------------------------------------------------------------------------

    def distances(self, t1: np.ndarray) -> np.ndarray:
        """Mean squared difference of a preprocessed query T1 to each training patient's, over the
        whole volume, background included (training T1s are zero outside their cached box)."""
        if tuple(t1.shape) != tuple(self.search_shape_):
            raise ValueError(
                f"Search mode: query shape {t1.shape} differs from the training shape {tuple(self.search_shape_)}"
            )
        query = t1.astype(np.float32)
        total_square = float(np.square(query, dtype=np.float64).sum())
        distances = np.empty(len(self.search_t1_))
        for index, (bounds, crop) in enumerate(zip(self.search_boxes_, self.search_t1_, strict=True)):
            box = tuple(slice(start, stop) for start, stop in bounds)
            inside = query[box]
            outside_square = total_square - float(np.square(inside, dtype=np.float64).sum())
            distances[index] = (outside_square + float(np.square(inside - crop, dtype=np.float64).sum())) / query.size
        return distances

    def neighbours(self, t1: np.ndarray) -> np.ndarray:
        """Indices of the ``w`` nearest training patients (ties broken by training order)."""
        return np.argsort(self.distances(t1), kind="stable")[: self.w]

    # -- query ---------------------------------------------------------------------------------

    def _tables_for(self, prepared: Prepared) -> Tables:
        if self.mode == "train":
            return self.tables_
        chosen = TableRows.concatenate([self.patient_rows_[i] for i in self.neighbours(prepared.t1)])
        return build_tables(chosen, self.macro, self.setting == "reference")

    def synthesise(self, subject: Subject) -> tuple[np.ndarray, np.ndarray]:
        """(unfiltered, median-filtered) T2 arrays, float32, 0 outside the query voxels."""
        self.check_fitted()
        prepared = self.prepare(subject, with_t2=False)
        tables = self._tables_for(prepared)
        values = prepared.t1[prepared.query_voxels]
        tissue = cluster_values(values, self.macro).labels
        synthetic = np.zeros(values.shape)
        for t in range(self.macro):
            selected = tissue == t
            keys, table_values = tables.table(t)
            synthetic[selected] = look_up(keys, table_values, values[selected], self.setting == "reference")
        unfiltered = np.zeros(prepared.t1.shape, dtype=np.float32)
        unfiltered[prepared.query_voxels] = synthetic
        return unfiltered, median_per_axial_slice(unfiltered, inside=prepared.query_voxels)

    def _predict(self, subject: Subject) -> Volume:
        unfiltered, filtered = self.synthesise(subject)
        return subject.t1.with_data(filtered if self.median_filter else unfiltered)

    def predict_all(self, subject: Subject) -> dict[str, Volume]:
        unfiltered, filtered = self.synthesise(subject)
        main, other, other_name = (
            (filtered, unfiltered, "unfiltered") if self.median_filter else (unfiltered, filtered, "median")
        )
        return {"": subject.t1.with_data(main), other_name: subject.t1.with_data(other)}

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        counts = [len(r.key) for r in self.patient_rows_]
        arrays = {
            "table_keys": self.tables_.keys,
            "table_values": self.tables_.values,
            "table_counts": self.tables_.counts,
            "table_offsets": self.tables_.offsets,
            "rows_per_patient": np.array(counts, dtype=np.int64),
            **{f"rows_{f}": getattr(TableRows.concatenate(self.patient_rows_), f) for f in ("tissue", "key", "value")},
        }
        if self.mode == "search":
            arrays |= {"search_shape": self.search_shape_, "search_boxes": self.search_boxes_}
            arrays |= {f"search_t1_{i:05d}": crop for i, crop in enumerate(self.search_t1_)}
        return arrays

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.tables_ = Tables(
            arrays["table_keys"], arrays["table_values"], arrays["table_counts"], arrays["table_offsets"]
        )
        bounds = np.concatenate([[0], np.cumsum(arrays["rows_per_patient"])])
        self.patient_rows_ = [
            TableRows(*(arrays[f"rows_{f}"][start:stop] for f in ("tissue", "key", "value")))
            for start, stop in itertools.pairwise(bounds)
        ]
        if self.mode == "search":
            self.search_shape_ = arrays["search_shape"]
            self.search_boxes_ = arrays["search_boxes"]
            self.search_t1_ = [arrays[f"search_t1_{i:05d}"] for i in range(len(self.patient_rows_))]
