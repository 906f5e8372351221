"""BrainClustering's training steps 1-3 on one patient: the leveled clusterings (tissues, then shades)
of the primary source and the target, and the table rows they give."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from clustering.kmeans import distinct_values, weighted_kmeans_1d
from clustering.tables import TableRows


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
