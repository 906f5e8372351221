"""BrainClustering with several sources (``setting=paper`` or ``quantile``), e.g. T1, T1CE and FLAIR -> T2.

A voxel's *combination* is its tissue in every source: the primary source's tissue (from its leveled
clustering) and each further source's level. A further source is put on a scale anchored at its brain
median (healthy tissue, most of the brain, then lands at the same place whatever the lesion's size,
which moves a percentile scale's upper end), and its ``macro`` levels come from one exact k-means of
its values over all training patients (pooled at 1/4096 resolution), kept in the model and applied to
every patient and query alike: clustering each patient on its own would not do, because the brightest
FLAIR cluster is the lesion in one patient and bright healthy tissue in another. So a combination
means the same in every patient: (T1 white matter, FLAIR brightest) is oedema that T1 alone cannot
tell from white matter.

Training, per patient: the single-source rows (the fallback), and per combination holding at least
``MIN_COMBINATION_SHARE`` of the patient's voxels, one row per primary shade present in it: the
shade's mean -> the mean target of the shade's voxels in the combination. That is the least-squares
value of the cell; the paper's one-to-one shade matching, tried within combinations, was measured
worse (tumour ``pct_mse`` 0.042 against 0.031 on two full-size phantom test cases, three training
ones), because the shades of a lesion's voxels need not correspond one to one. Tables are kept for
every prefix of the combination (the first j sources, j >= 2), each merging its combinations' rows
by eq. (1), and at depth 1 the single-source tables. Query: each voxel is looked up in the table of
its full combination where its primary value lies within that table's keys, else in its longest
prefix's table that serves it so, else in the single-source table of its tissue, which always
serves. So the sources are given in order of trust: the last one is dropped first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clustering.kmeans import weighted_kmeans_1d
from clustering.shades import LeveledClustering
from clustering.tables import ROW_FIELDS, TableRows, build_tables, look_up, merged_rows

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


#: Resolution at which further sources' training values are pooled to learn their levels.
SOURCE_LEVEL_BINS = 4096


class SourceLevels:
    """The further sources' ``macro`` levels, learned once over all training patients: exact k-means
    of each source's values pooled as counts of 1/4096-wide bins (:data:`SOURCE_LEVEL_BINS`), kept
    as the midpoints between the centroids (``bounds``: (sources - 1, macro - 1))."""

    def __init__(self, sources: int, macro: int) -> None:
        self.macro = macro
        self.counts = np.zeros((sources - 1, SOURCE_LEVEL_BINS), dtype=np.int64)
        self.bounds: np.ndarray | None = None

    def add(self, others: Sequence[np.ndarray]) -> None:
        """Count one patient's training values of the further sources (each in [0, 1])."""
        bins = SOURCE_LEVEL_BINS
        for index, values in enumerate(others):
            self.counts[index] += np.bincount(np.minimum((values * bins).astype(np.int64), bins - 1), minlength=bins)

    def learn(self) -> np.ndarray:
        """The bounds between the levels, from the counts added."""
        centres = (np.arange(SOURCE_LEVEL_BINS) + 0.5) / SOURCE_LEVEL_BINS
        bounds = []
        for row in self.counts:
            filled = row > 0
            centroids = weighted_kmeans_1d(centres[filled], row[filled], self.macro).centroids
            bounds.append((centroids[1:] + centroids[:-1]) / 2)
        self.bounds = np.array(bounds)
        return self.bounds


def source_levels(bounds: np.ndarray, others: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each further source's level (0 = darkest) for its values ``others``: the nearest learned
    centroid, i.e. the interval between the midpoints ``bounds`` (:class:`SourceLevels`)."""
    return [np.searchsorted(row, values) for row, values in zip(bounds, others, strict=True)]


def combination_codes(combination: np.ndarray, macro: int) -> np.ndarray:
    """One integer per row of a (n, sources) array of tissue labels (mixed radix ``macro``)."""
    return np.ravel_multi_index(tuple(combination.T), (macro,) * combination.shape[1])


#: With several sources, a combination's rows are kept only when it holds at least this share of a
#: patient's training voxels: rarer ones (mostly partial volumes at tissue borders) fall back.
MIN_COMBINATION_SHARE = 0.001


def multisource_patient_rows(
    primary: LeveledClustering,
    single: TableRows,
    other_levels: Sequence[np.ndarray],
    target: np.ndarray,
    macro: int,
    micro: int,
) -> TableRows:
    """The table rows of one patient with several sources: its single-source rows ``single`` (the
    fallback: context -1) and each common combination's rows, from the primary source's clustering,
    the further sources' levels and the target's values at the same voxels."""
    fallback_context = np.full((single.tissue.size, len(other_levels)), -1)
    parts = [TableRows(single.tissue, single.key, single.value, fallback_context, single.weight)]
    combination = np.column_stack([primary.macro, *other_levels]).astype(np.int64)
    codes = combination_codes(combination, macro)
    _, inverse, sizes = np.unique(codes, return_inverse=True, return_counts=True)
    common = sizes[inverse] >= MIN_COMBINATION_SHARE * target.size
    # One row per (combination, primary shade): the shade's mean -> the mean target of its voxels there.
    cells = codes[common] * micro + primary.micro[common]
    _, first, cell_of, cell_sizes = np.unique(cells, return_index=True, return_inverse=True, return_counts=True)
    sums = np.bincount(cell_of, weights=target[common])
    members = combination[common][first]
    shades = primary.micro[common][first]
    keys = primary.means[members[:, 0], shades]
    parts.append(TableRows(members[:, 0], keys, sums / cell_sizes, members[:, 1:], cell_sizes.astype(float)))
    return TableRows.concatenate(parts)


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
