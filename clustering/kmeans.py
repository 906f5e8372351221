"""Exact 1-D k-means on weighted points: the optimal clustering of a volume from its distinct values.

An optimal 1-D k-means clustering is a partition of the sorted values into contiguous runs, and it
never separates equal values (moving a copy of a value to the cluster holding its twin never raises
the cost). So clustering the distinct intensities, each weighted by its voxel count, gives exactly
the clustering of all voxels, with the same cost: real scans hold a few thousand distinct values
instead of millions of voxels.

The solver is the classic dynamic program D[m][i] = min_j D[m-1][j-1] + cost(j, i) over weighted
prefix sums, each layer solved by divide and conquer over the monotone optimal split point
(O(k n log n) for n distinct values), compiled with numba. It finds the same optimum as
Grønlund et al.'s SMAWK-based O(k n) algorithm that kmeans1d implements.

Float data with more than ``MAX_DISTINCT`` distinct values are quantised to that many equal-width
levels before clustering; each value then moves by at most (max - min) / (2 (MAX_DISTINCT - 1)),
which bounds the change of every centroid by the same amount.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

MAX_DISTINCT = 65536


@numba.njit(cache=True)
def _segment_cost(prefix_w, prefix_wx, prefix_wxx, start, end):  # pragma: no cover - compiled
    """Weighted sum of squared deviations of points start..end (inclusive) from their mean."""
    weight = prefix_w[end + 1] - prefix_w[start]
    total = prefix_wx[end + 1] - prefix_wx[start]
    cost = prefix_wxx[end + 1] - prefix_wxx[start] - total * total / weight
    return cost if cost > 0.0 else 0.0


@numba.njit(cache=True)
def _solve(values, weights, k):  # pragma: no cover - compiled
    n = values.size
    shift = values[n // 2]  # centring keeps the prefix sums well conditioned
    prefix_w = np.zeros(n + 1)
    prefix_wx = np.zeros(n + 1)
    prefix_wxx = np.zeros(n + 1)
    for i in range(n):
        centred = values[i] - shift
        prefix_w[i + 1] = prefix_w[i] + weights[i]
        prefix_wx[i + 1] = prefix_wx[i] + weights[i] * centred
        prefix_wxx[i + 1] = prefix_wxx[i] + weights[i] * centred * centred
    previous = np.empty(n)
    for i in range(n):
        previous[i] = _segment_cost(prefix_w, prefix_wx, prefix_wxx, 0, i)
    start_of_last = np.zeros((k, n), dtype=np.int64)  # where cluster m's run starts, for points 0..i
    current = np.empty(n)
    stack = np.empty((4 * (n + 2), 4), dtype=np.int64)
    for m in range(1, k):
        # Points m..n-1 with m+1 clusters; the optimal start of the last run is monotone in i.
        top = 0
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = m, n - 1, m, n - 1
        top = 1
        while top > 0:
            top -= 1
            low, high, option_low, option_high = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
            if low > high:
                continue
            middle = (low + high) // 2
            best = np.inf
            best_start = option_low
            for start in range(option_low, min(middle, option_high) + 1):
                cost = previous[start - 1] + _segment_cost(prefix_w, prefix_wx, prefix_wxx, start, middle)
                if cost < best:
                    best = cost
                    best_start = start
            current[middle] = best
            start_of_last[m, middle] = best_start
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = low, middle - 1, option_low, best_start
            top += 1
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = middle + 1, high, best_start, option_high
            top += 1
        for i in range(m):
            current[i] = np.inf
        previous, current = current, previous
    labels = np.empty(n, dtype=np.int64)
    end = n - 1
    for m in range(k - 1, -1, -1):
        start = start_of_last[m, end] if m > 0 else 0
        labels[start : end + 1] = m
        end = start - 1
    return labels, previous[n - 1]


@dataclass(frozen=True)
class Clustering1D:
    """An optimal clustering of weighted 1-D points.

    Attributes:
        labels: cluster of each input point; clusters are numbered in increasing order of intensity.
        centroids: weighted mean of each cluster (NaN for an empty cluster).
        cost: the weighted sum of squared distances to the centroids.
    """

    labels: np.ndarray
    centroids: np.ndarray
    cost: float


def weighted_kmeans_1d(values: np.ndarray, weights: np.ndarray, k: int) -> Clustering1D:
    """Optimal k-means of ``values`` (sorted ascending, distinct) with positive ``weights``.

    With ``k`` at least the number of points, every point is its own cluster and the remaining
    clusters are empty (their centroids NaN), as in the reference implementation.
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if values.size == 0:
        raise ValueError("cannot cluster zero points")
    if values.size > 1 and not (np.diff(values) > 0).all():
        raise ValueError("values must be sorted and distinct (use cluster_values for raw data)")
    if values.size <= k:
        labels = np.arange(values.size)
        centroids = np.full(k, np.nan)
        centroids[: values.size] = values
        return Clustering1D(labels, centroids, 0.0)
    labels, cost = _solve(values, weights, k)
    totals = np.bincount(labels, weights=weights * values, minlength=k)
    counts = np.bincount(labels, weights=weights, minlength=k)
    return Clustering1D(labels, totals / counts, float(cost))


@dataclass(frozen=True)
class DistinctValues:
    """``np.unique(values, return_inverse=True, return_counts=True)``: the sorted distinct values,
    each value's index among them and how often each occurs."""

    values: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray


def distinct_values(values: np.ndarray, keys: np.ndarray | None = None) -> DistinctValues:
    """The distinct values of ``values`` (raveled), as ``np.unique`` finds them by sorting.

    ``keys``, optional, are integers, one per value, equal only where the values are equal: the raw
    integer intensities that a scaled volume was computed from voxel by voxel. With them the values
    are grouped by counting the keys (linear time) instead of sorting millions of floats; an
    elementwise map may still send several keys to one value (clipping does), so those are merged.
    Keys that break the rule (two equal keys, different values) are ignored: the values are sorted.
    """
    values = np.asarray(values).ravel()
    if keys is None or keys.dtype.kind not in "iub" or values.size == 0:
        distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        return DistinctValues(distinct, inverse.ravel(), counts)
    keys = np.asarray(keys).ravel()
    low = int(keys.min())
    span = int(keys.max()) - low + 1
    if span > 4 * keys.size:  # sparse keys: counting would cost more than sorting
        return distinct_values(values)
    offsets = keys.astype(np.intp) - low  # in the keys' own type, the difference could overflow
    key_counts = np.bincount(offsets, minlength=span)
    value_of_key = np.zeros(span, dtype=values.dtype)
    value_of_key[offsets] = values
    if not np.array_equal(value_of_key[offsets], values):
        return distinct_values(values)
    present = np.flatnonzero(key_counts)
    distinct, merged = np.unique(value_of_key[present], return_inverse=True)
    distinct_of_key = np.zeros(span, dtype=np.intp)
    distinct_of_key[present] = merged
    counts = np.bincount(merged, weights=key_counts[present], minlength=distinct.size).astype(np.int64)
    return DistinctValues(distinct, distinct_of_key[offsets], counts)


def cluster_distinct(distinct: DistinctValues, k: int) -> Clustering1D:
    """Optimal k-means of the values that ``distinct`` describes; the labels are those of the
    distinct values (index them with ``distinct.inverse`` for every value's)."""
    values, inverse, counts = distinct.values.astype(np.float64), None, distinct.counts
    if values.size > MAX_DISTINCT:
        low, high = values[0], values[-1]
        levels = np.rint((values - low) / (high - low) * (MAX_DISTINCT - 1))
        levels, inverse = np.unique(levels, return_inverse=True)
        counts = np.bincount(inverse, weights=counts, minlength=levels.size)
        values = low + levels * (high - low) / (MAX_DISTINCT - 1)
    result = weighted_kmeans_1d(values, counts, k)
    if inverse is None:
        return result
    return Clustering1D(result.labels[inverse], result.centroids, result.cost)


def cluster_values(values: np.ndarray, k: int, keys: np.ndarray | None = None) -> Clustering1D:
    """Optimal k-means of raw values (one point each), through their distinct values and counts
    (``keys``: as :func:`distinct_values`)."""
    distinct = distinct_values(np.asarray(values, dtype=np.float64), keys)
    result = cluster_distinct(distinct, k)
    return Clustering1D(result.labels[distinct.inverse], result.centroids, result.cost)
