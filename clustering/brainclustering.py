"""BrainClustering (Baldini et al., section 2): T1 -> T2 through per-tissue tables of matched clusters.

Training, per patient: cluster the T1 and the T2 intensities into ``macro`` tissues by exact 1-D
k-means, and each tissue into micro clusters (its shades); match T2 tissues to T1 tissues, then T2
shades to T1 shades, by maximum voxel overlap (the Hungarian method); add one table row per matched
shade pair (mean T1 of the T1 shade -> mean T2 of the T2 shade) to the table of the T1 tissue, with
the moving average of eq. (1) when a key repeats. Query: cluster the query's T1 into ``macro``
tissues, look each voxel up in its tissue's table (exact hit, else linear interpolation between the
two nearest rows), and apply a 3x3 median per axial slice.

Three settings (docs/brainclustering.md has them side by side, on the phantom and on real cases):

- ``paper`` (the class's default; the reproduction): ``micro`` shades per tissue, eq. (1) as written,
  the data layer's brain mask (works with any background), matched pairs without a common voxel
  skipped, every tissue guaranteed a table, and values clamped to the end rows outside a table's range.
- ``reference``: the authors' code: ``micro`` is the total split evenly across tissues, the update
  is f += |a2 - f| / n, the foreground is "greater than the volume minimum" after their outlier
  removal, and a table extrapolates through the origin (f(x_k) x / x_k) beyond its end rows.
- ``quantile`` (``conf/model/brainclustering.yaml``'s default): the same tissues and shades, made
  to hold on real scans, where the paper's setting turns a T1 into speckle. Three changes, each
  against a cause measured on real BraTS cases: (1) a shade's row holds the mean target of its own
  voxels (:func:`shade_mean_rows`) instead of the mean of the T2 shade matched to it one to one,
  which on real scans is close to a random pick among the tissue's shades; (2) the primary source is
  put on a robust z-score scale (median and IQR of the brain), on which the keys of different
  patients line up, and the patients' rows are merged, per tissue, into ``micro`` key bins weighted
  by their voxels (:func:`binned_rows`) instead of interleaving into a jagged table; (3) the looked-up
  image keeps its order of values but takes the training targets' distribution (the mean of their
  quantiles on the percentile scale, :func:`match_quantiles`): a mean per shade is shrunk towards the
  middle, which the evaluation's percentile scale and a segmenter read as lost contrast.

Search mode builds, per query, a model from the ``w`` training patients whose preprocessed T1 is
nearest in mean squared difference over the whole volume. Every patient's table rows and
preprocessed T1 are cached by ``fit``, so a query never re-reads or re-clusters the training set.

Any task (``source`` -> ``target``, T1 -> T2 by default): the first source plays the T1's part and
the target the T2's. With one source the method is exactly the paper's, bit for bit.

Several sources (``setting=paper`` or ``quantile``), e.g. T1, T1CE and FLAIR -> T2. A voxel's *combination* is
its tissue in every source: the primary source's tissue (from the leveled clustering above) and each
further source's level. A further source is put on a scale anchored at its brain median (healthy
tissue, most of the brain, then lands at the same place whatever the lesion's size, which moves a
percentile scale's upper end), and its ``macro`` levels come from one exact k-means of its values
over all training patients (pooled at 1/4096 resolution), kept in the model and applied to every
patient and query alike: clustering each patient on its own would not do, because the brightest
FLAIR cluster is the lesion in one patient and bright healthy tissue in another. So a combination
means the same in every patient: (T1 white matter, FLAIR brightest) is oedema that T1 alone cannot
tell from white matter.

Training, per patient: the single-source rows above (the fallback), and per combination holding at
least ``MIN_COMBINATION_SHARE`` of the patient's voxels, one row per primary shade present in it:
the shade's mean -> the mean target of the shade's voxels in the combination. That is the
least-squares value of the cell; the paper's one-to-one shade matching, tried within combinations,
was measured worse (tumour ``pct_mse`` 0.042 against 0.031 on two full-size phantom test cases,
three training ones), because the shades of a lesion's voxels need not correspond one to one.
Tables are kept for every prefix of the combination (the first j sources, j >= 2), each merging its
combinations' rows by eq. (1), and at depth 1 the single-source tables. Query: each voxel is looked
up in the table of its full combination where its primary value lies within that table's keys,
else in its longest prefix's table that serves it so, else in the single-source table of its
tissue, which always serves. So the sources are given in order of trust: the last one is dropped
first.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from clustering.kmeans import cluster_distinct, distinct_values, weighted_kmeans_1d
from datamodules.dataset import Subject
from datamodules.nifti import Volume
from datamodules.preprocessing import (
    bounding_box,
    brain_mask,
    median_per_axial_slice,
    percentile_scale_values,
    put_values_at,
    robust_scale_values,
    unit_scale_values,
    values_at,
)
from datamodules.task import SynthesisTask
from pipeline.contract import FitContext, SynthesisMethod

MODES = ("train", "search")
#: Resolution at which further sources' training values are pooled to learn their levels.
SOURCE_LEVEL_BINS = 4096
SETTINGS = ("paper", "reference", "quantile")
#: ``setting=quantile``: the target's distribution is kept as this many quantiles (0, 0.001, ..., 1).
TARGET_QUANTILES = 1001


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


#: A further source's values are put on a scale anchored at its brain's median, kept up to this
#: many medians: healthy tissue (most of the brain) lands at the same place in every patient
#: whatever the size of the lesion, which moves a percentile scale's upper end.
MEDIAN_SCALE_RANGE = 4.0


def median_scale_values(values: np.ndarray) -> np.ndarray:
    """A further source's brain values x as (x - p0.5) / (median - p0.5), clipped to
    [0, MEDIAN_SCALE_RANGE] and divided by it (so in [0, 1])."""
    values = values.astype(np.float64)
    low, middle = np.percentile(values, [0.5, 50])
    if middle <= low:
        return np.zeros(values.shape)
    return np.clip((values - low) / (middle - low), 0, MEDIAN_SCALE_RANGE) / MEDIAN_SCALE_RANGE


@dataclass(frozen=True)
class Prepared:
    """A subject on the method's scales, in [0, 1], at the voxels that take part (``voxels``: the
    brain, or the reference's foreground), as flat arrays (``values_at(volume, voxels)``): the
    primary source (the T1's part), the further sources and (training) the target; and which of
    them train (``training``: the target's foreground too). Only the voxels that take part are ever
    scaled or copied: a brain is under a fifth of a BraTS volume."""

    voxels: np.ndarray  # (volume) bool
    primary: np.ndarray
    target: np.ndarray | None = None
    training: np.ndarray | None = None  # bool, training only
    others: tuple[np.ndarray, ...] = ()
    #: The raw intensities the primary and target were computed from, voxel by voxel, when they are
    #: integers (None otherwise): they let the clusterings count distinct values instead of sorting.
    primary_keys: np.ndarray | None = None
    target_keys: np.ndarray | None = None

    def primary_volume(self) -> np.ndarray:
        """The primary source as a volume, 0 outside the voxels that take part."""
        volume = np.zeros(self.voxels.shape, dtype=self.primary.dtype)
        put_values_at(volume, self.voxels, self.primary)
        return volume


def integer_keys(values: np.ndarray) -> np.ndarray | None:
    """A raw volume's values as :class:`Prepared`'s keys: themselves if they are integers, else None."""
    return values if values.dtype.kind in "iub" else None


# -- clustering and matching ---------------------------------------------------------------------


@dataclass(frozen=True)
class LeveledClustering:
    """Macro (tissue) and micro (shade) labels per voxel, and each shade's mean intensity."""

    macro: np.ndarray  # (voxels,) tissue index, 0 = darkest
    micro: np.ndarray  # (voxels,) shade index within its tissue, 0 = darkest
    means: np.ndarray  # (macro, micro) mean intensity of each shade; NaN when empty


def leveled_clustering(values: np.ndarray, macro: int, micro: int, keys: np.ndarray | None = None) -> LeveledClustering:
    """Exact k-means with ``macro`` clusters, then with ``micro`` clusters inside each, on the distinct
    values weighted by their counts (labels ordered by intensity at both levels); ``keys``: the raw
    integer intensities behind the values, if any (:func:`~clustering.kmeans.distinct_values`)."""
    found = distinct_values(values, keys)
    distinct, inverse, counts = found.values, found.inverse, found.counts
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


ROW_FIELDS = ("tissue", "key", "value", "context", "weight")


@dataclass(frozen=True)
class TableRows:
    """Rows one training patient adds to the tables: tissue (the primary source's), key (primary
    shade mean), value (the matched target shade's mean; with several sources, a combination's rows
    hold the mean target of the shade's voxels in it), ``context``: the further sources' levels,
    (rows, sources - 1), all -1 on the single-source rows that serve as the fallback, and ``weight``:
    the voxels behind each row (``setting=quantile`` merges by it; 1 elsewhere)."""

    tissue: np.ndarray
    key: np.ndarray
    value: np.ndarray
    context: np.ndarray | None = None
    weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.context is None:
            object.__setattr__(self, "context", np.zeros((self.tissue.size, 0), dtype=np.int64))
        if self.weight is None:
            object.__setattr__(self, "weight", np.ones(self.tissue.size))

    @property
    def combination(self) -> np.ndarray:
        """(rows, sources): the primary tissue, then the context."""
        return np.column_stack([self.tissue, self.context]).astype(np.int64)

    @staticmethod
    def concatenate(parts: Sequence[TableRows]) -> TableRows:
        return TableRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ROW_FIELDS))


def patient_rows(
    t1: np.ndarray,
    t2: np.ndarray,
    macro: int,
    micro: int,
    skip_disjoint: bool,
    t1_keys: np.ndarray | None = None,
    t2_keys: np.ndarray | None = None,
) -> TableRows:
    """The table rows of one patient from the T1 and T2 values of the same voxels (training steps 1-3);
    the keys: the raw integer intensities behind the values, if any (:func:`leveled_clustering`)."""
    c1, c2 = leveled_clustering(t1, macro, micro, t1_keys), leveled_clustering(t2, macro, micro, t2_keys)
    return matched_rows(c1, c2, macro, micro, skip_disjoint)


def matched_rows(
    c1: LeveledClustering, c2: LeveledClustering, macro: int, micro: int, skip_disjoint: bool
) -> TableRows:
    """Training steps 2-3 on the two clusterings: tissues matched, then shades within matched tissues."""
    tissue_match = match_labels(contingency(c1.macro, c2.macro, macro))
    # The voxels of each matched tissue pair, counted by (T1 tissue, T1 shade, T2 shade) in one pass.
    common = tissue_match[c1.macro] == c2.macro
    cells = (c1.macro[common] * micro + c1.micro[common]) * micro + c2.micro[common]
    overlaps = np.bincount(cells, minlength=macro * micro * micro).reshape(macro, micro, micro)
    tissues, keys, values = [], [], []
    for t1_tissue, t2_tissue in enumerate(tissue_match):
        overlap = overlaps[t1_tissue]
        shade_match = match_labels(overlap)
        for t1_shade, t2_shade in enumerate(shade_match):
            key, value = c1.means[t1_tissue, t1_shade], c2.means[t2_tissue, t2_shade]
            if np.isnan(key) or np.isnan(value) or (skip_disjoint and overlap[t1_shade, t2_shade] == 0):
                continue
            tissues.append(t1_tissue)
            keys.append(key)
            values.append(value)
    return TableRows(np.array(tissues, dtype=np.int64), np.array(keys), np.array(values))


def shade_mean_rows(c1: LeveledClustering, target: np.ndarray, macro: int, micro: int) -> TableRows:
    """``setting=quantile``'s rows of one patient: one per primary (tissue, shade), the shade's mean ->
    the mean target of its voxels (the cell's least-squares value), weighted by its voxels. Unlike
    the one-to-one shade matching, a row's value never comes from voxels the shade does not hold."""
    cells = c1.macro * micro + c1.micro
    voxels = np.bincount(cells, minlength=macro * micro)
    sums = np.bincount(cells, weights=target, minlength=macro * micro)
    filled = np.flatnonzero(voxels)
    tissue, shade = np.divmod(filled, micro)
    means = sums[filled] / voxels[filled]
    return TableRows(tissue, c1.means[tissue, shade], means, weight=voxels[filled].astype(float))


def combination_codes(combination: np.ndarray, macro: int) -> np.ndarray:
    """One integer per row of a (n, sources) array of tissue labels (mixed radix ``macro``)."""
    return np.ravel_multi_index(tuple(combination.T), (macro,) * combination.shape[1])


#: With several sources, a combination's rows are kept only when it holds at least this share of a
#: patient's training voxels: rarer ones (mostly partial volumes at tissue borders) fall back.
MIN_COMBINATION_SHARE = 0.001


def multisource_patient_rows(
    primary: np.ndarray,
    other_levels: Sequence[np.ndarray],
    target: np.ndarray,
    macro: int,
    micro: int,
    primary_keys: np.ndarray | None = None,
    target_keys: np.ndarray | None = None,
    shade_means: bool = False,
) -> TableRows:
    """The table rows of one patient with several sources (see the module docstring), from the
    primary source's and the target's values of the same voxels and the further sources' levels
    there: the single-source rows (context -1, the fallback; with ``shade_means``,
    :func:`shade_mean_rows`) and each combination's rows. The keys as :func:`patient_rows`'."""
    c1 = leveled_clustering(primary, macro, micro, primary_keys)
    if shade_means:
        single = shade_mean_rows(c1, target, macro, micro)
    else:
        single = matched_rows(c1, leveled_clustering(target, macro, micro, target_keys), macro, micro, True)
    fallback_context = np.full((single.tissue.size, len(other_levels)), -1)
    parts = [TableRows(single.tissue, single.key, single.value, fallback_context, single.weight)]
    combination = np.column_stack([c1.macro, *other_levels]).astype(np.int64)
    codes = combination_codes(combination, macro)
    _, inverse, sizes = np.unique(codes, return_inverse=True, return_counts=True)
    common = sizes[inverse] >= MIN_COMBINATION_SHARE * primary.size
    # One row per (combination, primary shade): the shade's mean -> the mean target of its voxels there.
    cells = codes[common] * micro + c1.micro[common]
    _, first, cell_of, cell_sizes = np.unique(cells, return_index=True, return_inverse=True, return_counts=True)
    sums = np.bincount(cell_of, weights=target[common])
    members = combination[common][first]
    shades = c1.micro[common][first]
    keys = c1.means[members[:, 0], shades]
    parts.append(TableRows(members[:, 0], keys, sums / cell_sizes, members[:, 1:], cell_sizes.astype(float)))
    return TableRows.concatenate(parts)


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


def merge_rows(key: np.ndarray, value: np.ndarray, absolute_update: bool) -> tuple[np.ndarray, ...]:
    """Rows (in patient order) -> one sorted table: (keys, values, counts). A repeated key is
    averaged by eq. (1), f <- f + (a2 - f) / n (the running mean), or with the reference's
    f <- f + |a2 - f| / n."""
    order = np.argsort(key, kind="stable")  # equal keys stay in patient order
    key, value = key[order], value[order]
    unique_keys, starts, counts = np.unique(key, return_index=True, return_counts=True)
    merged = value[starts].copy()
    for index in np.flatnonzero(counts > 1):  # repeats are rare: keys are exact per-patient means
        f = value[starts[index]]
        for n, a2 in enumerate(value[starts[index] + 1 : starts[index] + counts[index]], start=2):
            f += (abs(a2 - f) if absolute_update else a2 - f) / n
        merged[index] = f
    return unique_keys, merged, counts


def binned_rows(key: np.ndarray, value: np.ndarray, weight: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Rows of many patients -> one sorted table of at most ``bins`` rows over the keys' range: per
    equal-width bin of keys, the weighted mean key and value, and the rows merged (``setting=quantile``).
    The patients' keys interleave; merged one by one, their values would make a jagged table."""
    edges = np.linspace(key.min(), key.max(), bins + 1)
    index = np.clip(np.searchsorted(edges, key, side="right") - 1, 0, bins - 1)
    total = np.bincount(index, weights=weight, minlength=bins)
    filled = total > 0
    keys = np.bincount(index, weights=weight * key, minlength=bins)[filled] / total[filled]
    values = np.bincount(index, weights=weight * value, minlength=bins)[filled] / total[filled]
    return keys, values, np.bincount(index, minlength=bins)[filled]


def merged_rows(
    rows: TableRows, selected: np.ndarray, absolute_update: bool, bins: int | None
) -> tuple[np.ndarray, ...]:
    """The ``selected`` rows as one sorted table (keys, values, counts): :func:`merge_rows`, or with
    ``bins`` :func:`binned_rows`."""
    if bins is None:
        return merge_rows(rows.key[selected], rows.value[selected], absolute_update)
    return binned_rows(rows.key[selected], rows.value[selected], rows.weight[selected], bins)


def build_tables(rows: TableRows, macro: int, absolute_update: bool, bins: int | None = None) -> Tables:
    """Merge rows (in patient order) into per-tissue tables keyed by the primary shade mean
    (:func:`merge_rows`, or :func:`binned_rows` into ``bins`` rows). A tissue left without rows takes
    the rows of all tissues, so no query voxel meets an empty table (the reference dereferences an
    empty map there).
    """
    keys_out, values_out, counts_out, offsets = [], [], [], [0]
    for tissue in range(macro):
        selected = rows.tissue == tissue
        if not selected.any():
            selected = np.ones_like(selected)
        unique_keys, merged, counts = merged_rows(rows, selected, absolute_update, bins)
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


#: Multi-source tables: for each depth j = 1..sources (index j - 1), the tables of every
#: combination prefix of length j seen in training, by its tuple of tissues: (keys, values).
CombinationTables = list[dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]]]


def build_combination_tables(rows: TableRows, macro: int, sources: int, bins: int | None = None) -> CombinationTables:
    """The tables of every combination prefix (module docstring), merged by eq. (1) (or into ``bins``
    rows, :func:`binned_rows`). Depth 1 is the single-source method's (the rows with context -1),
    built by :func:`build_tables`."""
    single = (rows.context < 0).all(axis=1)
    fallback = TableRows(rows.tissue[single], rows.key[single], rows.value[single], weight=rows.weight[single])
    per_tissue = build_tables(fallback, macro, absolute_update=False, bins=bins)
    levels: CombinationTables = [{(t,): per_tissue.table(t) for t in range(macro)}]
    rows = TableRows(*(getattr(rows, f)[~single] for f in ROW_FIELDS))
    combination = rows.combination
    for depth in range(2, sources + 1):
        codes = combination_codes(combination[:, :depth], macro)
        tables = {}
        for code in np.unique(codes):
            selected = codes == code
            keys, values, _ = merged_rows(rows, selected, absolute_update=False, bins=bins)
            tables[tuple(int(t) for t in combination[np.argmax(selected), :depth])] = (keys, values)
        levels.append(tables)
    return levels


def look_up_combinations(
    tables: CombinationTables, combination: np.ndarray, values: np.ndarray, macro: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each value looked up in the table of its longest combination prefix that has one covering the
    value (depth 1, the primary tissue's single-source table, always serves, clamped at its ends):
    (result, depth used per value)."""
    result = np.zeros(values.shape)
    depth_used = np.zeros(values.shape, dtype=np.int64)
    for depth in range(len(tables), 0, -1):
        todo = np.flatnonzero(depth_used == 0)
        if todo.size == 0:
            break
        codes = combination_codes(combination[todo, :depth], macro)
        for code in np.unique(codes):
            members = todo[codes == code]
            prefix = tuple(int(t) for t in combination[members[0], :depth])
            if prefix not in tables[depth - 1]:
                continue
            keys, table_values = tables[depth - 1][prefix]
            if depth > 1:  # a combination's table serves only inside its keys' range: no clamping
                members = members[(values[members] >= keys[0]) & (values[members] <= keys[-1])]
            result[members] = look_up(keys, table_values, values[members], through_origin=False)
            depth_used[members] = depth
    return result, depth_used


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


def match_quantiles(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``values`` replaced, rank for rank, by the distribution whose evenly spaced quantiles are
    ``quantiles`` (ties share their mean rank): the order of the values is kept, their histogram is
    the training targets'."""
    ranks = (rankdata(values, method="average") - 0.5) / values.size
    return np.interp(ranks, np.linspace(0, 1, quantiles.size), quantiles)


# -- search --------------------------------------------------------------------------------------

#: Search keeps each training patient's primary source (in [0, 1]) as this many 16-bit levels: half
#: the memory of float32.
SEARCH_LEVELS = 65535


@numba.njit(cache=True, nogil=True)
def _box_sums(query, start, crop, scale):  # pragma: no cover - compiled
    """Over the box of ``crop`` placed at ``start`` in ``query``: (sum of query^2, sum of
    (query - crop * scale)^2), in float64."""
    inside_square, difference_square = 0.0, 0.0
    size_x, size_y, size_z = crop.shape
    for x in range(size_x):
        for y in range(size_y):
            for z in range(size_z):
                q = np.float64(query[start[0] + x, start[1] + y, start[2] + z])
                d = q - crop[x, y, z] * scale
                inside_square += q * q
                difference_square += d * d
    return inside_square, difference_square


# -- the method ----------------------------------------------------------------------------------


class BrainClustering(SynthesisMethod):
    """BrainClustering in Train&Test (``mode="train"``) or Search (``mode="search"``) mode.

    Args:
        mode: ``train`` (one model from all training patients) or ``search`` (per query, a model from
            the ``w`` nearest training patients).
        w: number of neighbours in Search mode.
        macro: macro clusters (tissues), 3 to 6 as in the paper.
        micro: micro clusters per tissue (``paper``) or in total (``reference``, divisible by macro).
        setting: ``paper``, ``reference`` or ``quantile`` (see the module docstring; ``reference`` is
            T1 -> T2 only).
        median_filter: whether the main output is the median-filtered image; both are always made
            (``predict_all``).
        source, target: the task (module docstring); the first source plays the T1's part.
    """

    def __init__(
        self,
        mode: str = "train",
        w: int = 5,
        macro: int = 4,
        micro: int = 100,
        setting: str = "paper",
        median_filter: bool = True,
        source: Sequence[str] = ("t1",),
        target: str = "t2",
    ) -> None:
        super().__init__(source, target)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
        if setting == "reference" and self.contrasts != SynthesisTask():
            raise ValueError(f"setting=reference is the authors' T1 -> T2 code; the task here is {self.contrasts}")
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

    @property
    def multisource(self) -> bool:
        return len(self.source) > 1

    def prepare(self, subject: Subject, with_target: bool) -> Prepared:
        """Put a subject on the method's scales (see the two settings)."""
        primary_data = subject[self.contrasts.primary].data
        target_data = subject[self.target].data if with_target else None
        if self.setting == "reference":
            primary_volume = reference_t1(primary_data)
            voxels = primary_volume != 0
        else:
            voxels = subject.brain
        primary_raw = values_at(primary_data, voxels)
        target_raw = values_at(target_data, voxels) if with_target else None
        if self.setting == "reference":
            primary = values_at(primary_volume, voxels)
            target = values_at(reference_t2(target_data), voxels) if with_target else None
            training = (primary > 0) & (target > 0) if with_target else None
            others = ()
        else:
            primary_scale = robust_scale_values if self.setting == "quantile" else percentile_scale_values
            primary = primary_scale(primary_raw)  # float32; values are widened where used
            target_scale = percentile_scale_values if self.setting == "quantile" else unit_scale_values
            target = target_scale(target_raw) if with_target else None
            training = values_at(brain_mask(subject[self.target]), voxels) if with_target else None
            others = tuple(median_scale_values(values_at(subject[c].data, voxels)) for c in self.source[1:])
        return Prepared(
            voxels,
            primary,
            target,
            training,
            others,
            primary_keys=integer_keys(primary_raw),
            target_keys=integer_keys(target_raw) if with_target else None,
        )

    def source_levels(self, others: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each further source's level (0 = darkest) for its values ``others``: the nearest of the
        centroids learned in :meth:`learn_source_levels`, i.e. the interval between their midpoints."""
        return [np.searchsorted(bounds, other) for bounds, other in zip(self.level_bounds_, others, strict=True)]

    def learn_source_levels(self, subjects: Sequence[Subject]) -> None:
        """The further sources' ``macro`` levels: exact k-means of each one's training values, pooled
        over the patients as counts of 1/4096-wide bins; stored as the midpoints between centroids."""
        bins = SOURCE_LEVEL_BINS
        counts = np.zeros((len(self.source) - 1, bins), dtype=np.int64)
        for subject in subjects:
            prepared = self.prepare(subject, with_target=True)
            for index, other in enumerate(prepared.others):
                values = other[prepared.training]
                counts[index] += np.bincount(np.minimum((values * bins).astype(np.int64), bins - 1), minlength=bins)
        centres = (np.arange(bins) + 0.5) / bins
        bounds = []
        for row in counts:
            filled = row > 0
            centroids = weighted_kmeans_1d(centres[filled], row[filled], self.macro).centroids
            bounds.append((centroids[1:] + centroids[:-1]) / 2)
        self.level_bounds_ = np.array(bounds)

    def rows_of(self, prepared: Prepared) -> TableRows:
        """One training patient's table rows (training steps 1-3)."""

        def at_training(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[prepared.training]

        primary, target = at_training(prepared.primary), at_training(prepared.target)
        primary_keys, target_keys = at_training(prepared.primary_keys), at_training(prepared.target_keys)
        if self.setting == "quantile" and not self.multisource:
            clustering = leveled_clustering(primary, self.macro, self.micro_per_tissue, primary_keys)
            return shade_mean_rows(clustering, target.astype(np.float64), self.macro, self.micro_per_tissue)
        if not self.multisource:
            return patient_rows(
                primary,
                target,
                self.macro,
                self.micro_per_tissue,
                skip_disjoint=self.setting == "paper",
                t1_keys=primary_keys,
                t2_keys=target_keys,
            )
        levels = self.source_levels([at_training(other) for other in prepared.others])
        return multisource_patient_rows(
            primary,
            levels,
            target,
            self.macro,
            self.micro_per_tissue,
            primary_keys,
            target_keys,
            shade_means=self.setting == "quantile",
        )

    def _fit(self, subjects: Sequence[Subject], context: FitContext) -> None:
        if self.multisource:  # a first pass over the patients (each is read twice)
            self.learn_source_levels(subjects)
        rows, boxes, crops, shape, quantiles = [], [], [], None, []
        levels = np.linspace(0, 1, TARGET_QUANTILES)
        for subject in subjects:
            prepared = self.prepare(subject, with_target=True)
            if self.setting == "quantile":
                quantiles.append(np.quantile(prepared.target[prepared.training].astype(np.float64), levels))
            training = int(prepared.training.sum())
            if training < self.macro * self.micro_per_tissue:
                raise ValueError(
                    f"case {subject.case_id}: too few brain voxels ({training}) for "
                    f"{self.macro} x {self.micro_per_tissue} clusters"
                )
            rows.append(self.rows_of(prepared))
            if self.mode == "search":
                primary = prepared.primary_volume()
                if shape is not None and primary.shape != shape:
                    raise ValueError(
                        f"case {subject.case_id}: Search mode needs one volume shape, got {primary.shape} and {shape}"
                    )
                shape = primary.shape
                box = bounding_box(primary)
                boxes.append([(s.start, s.stop) for s in box])
                crops.append(np.rint(primary[box].astype(np.float64) * SEARCH_LEVELS).astype(np.uint16))
        if not rows:
            raise ValueError("BrainClustering needs at least one training patient")
        self.patient_rows_ = rows
        self.tables_ = self.tables_from(rows)
        if self.setting == "quantile":
            self.target_quantiles_ = np.mean(quantiles, axis=0)
        if self.mode == "search":
            self.search_shape_ = np.array(shape)
            self.search_boxes_ = np.array(boxes, dtype=np.int64)
            self.search_t1_ = crops

    def tables_from(self, rows: Sequence[TableRows]) -> Tables | CombinationTables:
        """The tables of a set of patients' rows: per tissue, or per combination with several sources."""
        merged = TableRows.concatenate(rows)
        bins = self.micro_per_tissue if self.setting == "quantile" else None
        if self.multisource:
            return build_combination_tables(merged, self.macro, len(self.source), bins)
        return build_tables(merged, self.macro, self.setting == "reference", bins)

    # -- search --------------------------------------------------------------------------------

    def distances(self, t1: np.ndarray) -> np.ndarray:
        """Mean squared difference of a preprocessed query T1 (the primary source) to each training
        patient's, over the whole volume, background included (training T1s are zero outside their
        cached box). The training T1s are kept as 16-bit levels (:data:`SEARCH_LEVELS`): each voxel's
        difference is off by at most half a level, so a distance d by at most sqrt(d) / 65535 + 1e-10."""
        if tuple(t1.shape) != tuple(self.search_shape_):
            raise ValueError(
                f"Search mode: query shape {t1.shape} differs from the training shape {tuple(self.search_shape_)}"
            )
        query = np.ascontiguousarray(t1, dtype=np.float32)
        total_square = float(np.square(query, dtype=np.float64).sum())

        def distance(bounds: np.ndarray, crop: np.ndarray) -> float:
            scale = 1.0 / SEARCH_LEVELS if crop.dtype == np.uint16 else 1.0  # float32: a model saved before
            inside_square, difference_square = _box_sums(query, bounds[:, 0], crop, scale)
            return (total_square - inside_square + difference_square) / query.size

        with ThreadPoolExecutor(os.cpu_count()) as pool:  # the compiled sums release the GIL
            return np.array(list(pool.map(distance, self.search_boxes_, self.search_t1_)))

    def neighbours(self, t1: np.ndarray) -> np.ndarray:
        """Indices of the ``w`` nearest training patients (ties broken by training order)."""
        return np.argsort(self.distances(t1), kind="stable")[: self.w]

    # -- query ---------------------------------------------------------------------------------

    def _tables_for(self, prepared: Prepared) -> Tables | CombinationTables:
        if self.mode == "train":
            return self.tables_
        return self.tables_from([self.patient_rows_[i] for i in self.neighbours(prepared.primary_volume())])

    def synthesise(self, subject: Subject) -> tuple[np.ndarray, np.ndarray]:
        """(unfiltered, median-filtered) target arrays, float32, 0 outside the query voxels."""
        self.check_fitted()
        prepared = self.prepare(subject, with_target=False)
        tables = self._tables_for(prepared)
        values = prepared.primary
        distinct = distinct_values(values, prepared.primary_keys)
        tissue = cluster_distinct(distinct, self.macro).labels  # per distinct value
        if self.multisource:
            combination = np.column_stack([tissue[distinct.inverse], *self.source_levels(prepared.others)])
            synthetic, _ = look_up_combinations(tables, combination, values, self.macro)
        else:  # the voxels of one value get one result: look up the distinct values only
            through_origin = self.setting == "reference"
            per_value = np.zeros(distinct.values.shape)
            for t in range(self.macro):
                selected = tissue == t
                keys, table_values = tables.table(t)
                per_value[selected] = look_up(keys, table_values, distinct.values[selected], through_origin)
            synthetic = per_value[distinct.inverse]
        if self.setting == "quantile":
            synthetic = match_quantiles(synthetic, self.target_quantiles_)
        unfiltered = np.zeros(prepared.voxels.shape, dtype=np.float32)
        put_values_at(unfiltered, prepared.voxels, synthetic)
        return unfiltered, median_per_axial_slice(unfiltered, inside=prepared.voxels)

    def _predict(self, subject: Subject) -> Volume:
        unfiltered, filtered = self.synthesise(subject)
        return subject.volume_like(filtered if self.median_filter else unfiltered)

    def predict_all(self, subject: Subject) -> dict[str, Volume]:
        unfiltered, filtered = self.synthesise(subject)
        main, other, other_name = (
            (filtered, unfiltered, "unfiltered") if self.median_filter else (unfiltered, filtered, "median")
        )
        return {"": subject.volume_like(main), other_name: subject.volume_like(other)}

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        counts = [len(r.key) for r in self.patient_rows_]
        rows = TableRows.concatenate(self.patient_rows_)
        arrays = {
            "rows_per_patient": np.array(counts, dtype=np.int64),
            **{f"rows_{f}": getattr(rows, f) for f in ROW_FIELDS if f != "weight" or self.setting == "quantile"},
        }
        if self.multisource:  # the tables are rebuilt from the rows
            arrays["level_bounds"] = self.level_bounds_
        else:
            tables = self.tables_
            arrays |= {
                "table_keys": tables.keys,
                "table_values": tables.values,
                "table_counts": tables.counts,
                "table_offsets": tables.offsets,
            }
        if self.setting == "quantile":
            arrays["target_quantiles"] = self.target_quantiles_
        if self.mode == "search":
            arrays |= {"search_shape": self.search_shape_, "search_boxes": self.search_boxes_}
            arrays |= {f"search_t1_{i:05d}": crop for i, crop in enumerate(self.search_t1_)}
        return arrays

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        bounds = np.concatenate([[0], np.cumsum(arrays["rows_per_patient"])])
        self.patient_rows_ = [
            TableRows(*(arrays[f"rows_{f}"][start:stop] if f"rows_{f}" in arrays else None for f in ROW_FIELDS))
            for start, stop in itertools.pairwise(bounds)
        ]
        if self.multisource:
            self.level_bounds_ = arrays["level_bounds"]
            self.tables_ = self.tables_from(self.patient_rows_)
        else:
            self.tables_ = Tables(
                arrays["table_keys"], arrays["table_values"], arrays["table_counts"], arrays["table_offsets"]
            )
        if self.setting == "quantile":
            self.target_quantiles_ = arrays["target_quantiles"]
        if self.mode == "search":
            self.search_shape_ = arrays["search_shape"]
            self.search_boxes_ = arrays["search_boxes"]
            self.search_t1_ = [arrays[f"search_t1_{i:05d}"] for i in range(len(self.patient_rows_))]
