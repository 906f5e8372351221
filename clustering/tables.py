"""BrainClustering's tables: the rows patients add, merged into one sorted table per tissue, and the
look-up of a query's values in them (training step 4 and the query's look-up)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

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
