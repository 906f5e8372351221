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
nearest (``clustering/search.py``). Any task (``source`` -> ``target``, T1 -> T2 by default): the
first source plays the T1's part and the target the T2's; with one source the method is exactly the
paper's, bit for bit, and with several (``setting=paper`` or ``quantile``) a voxel's tissues in every
source pick its table (``clustering/multisource.py``).

Where each choice lives: the setting in ``clustering/setting.py`` and ``clustering/reference.py``,
the clusterings and one patient's rows in ``clustering/shades.py``, the tables in
``clustering/tables.py``, Search in ``clustering/search.py``, several sources in
``clustering/multisource.py``; this class trains and queries with them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from clustering.kmeans import cluster_distinct, distinct_values
from clustering.multisource import (
    CombinationTables,
    SourceLevels,
    build_combination_tables,
    look_up_combinations,
    multisource_patient_rows,
    source_levels,
)
from clustering.reference import ReferenceSetting
from clustering.search import SearchIndex
from clustering.setting import PaperSetting, Prepared, QuantileSetting, target_quantiles
from clustering.tables import ROW_FIELDS, TableRows, Tables, build_tables, look_up, match_quantiles
from common.checks import check_choice
from datamodules.dataset import Subject
from datamodules.nifti import Volume
from datamodules.preprocessing import median_per_axial_slice, put_values_at
from datamodules.task import SynthesisTask
from pipeline.contract import FitContext, SynthesisMethod

MODES = ("train", "search")
SETTINGS = {"paper": PaperSetting(), "reference": ReferenceSetting(), "quantile": QuantileSetting()}


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
        standardisation: the primary source's scale (:mod:`datamodules.standardisation`); None: the
            setting's (``zscore`` for ``quantile``, ``percentile`` for ``paper``); ``reference`` has
            the authors' own preprocessing and takes none.
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
        standardisation: str | None = None,
    ) -> None:
        check_choice("setting", setting, SETTINGS)
        self.rules = SETTINGS[setting]
        super().__init__(source, target, standardisation)
        check_choice("mode", mode, MODES)
        if self.rules.own_preprocessing and (standardisation is not None or self.contrasts != SynthesisTask()):
            raise ValueError(
                f"setting={setting} is the authors' T1 -> T2 code with their preprocessing; the task here is "
                f"{self.contrasts}, standardisation={standardisation}"
            )
        if not 3 <= macro <= 6:
            raise ValueError(f"macro must be between 3 and 6 (the paper's range), got {macro}")
        if micro < 1:
            raise ValueError(f"micro must be positive, got {micro}")
        if self.rules.micro_is_total and micro % macro:
            raise ValueError(
                f"with setting={setting}, micro ({micro}) is a total and must be divisible by macro ({macro})"
            )
        if w < 1:
            raise ValueError(f"w must be positive, got {w}")
        self.mode, self.w, self.macro, self.micro = mode, w, macro, micro
        self.setting, self.median_filter = setting, median_filter

    @property
    def default_standardisation(self) -> str:  # type: ignore[override]
        return self.rules.standardisation

    @property
    def micro_per_tissue(self) -> int:
        return self.rules.micro_per_tissue(self.macro, self.micro)

    @property
    def multisource(self) -> bool:
        return len(self.source) > 1

    def prepare(self, subject: Subject, with_target: bool) -> Prepared:
        """Put a subject on the setting's scales."""
        return self.rules.prepare(subject, self.contrasts, with_target, self.scales)

    def rows_of(self, prepared: Prepared) -> TableRows:
        """One training patient's table rows (training steps 1-3)."""

        def at_training(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[prepared.training]

        primary, target = at_training(prepared.primary), at_training(prepared.target)
        clustering, single = self.rules.patient_rows(
            primary,
            target,
            self.macro,
            self.micro_per_tissue,
            at_training(prepared.primary_keys),
            at_training(prepared.target_keys),
        )
        if not self.multisource:
            return single
        levels = source_levels(self.level_bounds_, [at_training(other) for other in prepared.others])
        return multisource_patient_rows(clustering, single, levels, target, self.macro, self.micro_per_tissue)

    def learn_source_levels(self, subjects: Sequence[Subject]) -> None:
        """The further sources' levels (:class:`~clustering.multisource.SourceLevels`), from a first
        pass over the training patients: the levels must be known before any rows are made."""
        levels = SourceLevels(len(self.source), self.macro)
        for subject in subjects:
            prepared = self.prepare(subject, with_target=True)
            levels.add([other[prepared.training] for other in prepared.others])
        self.level_bounds_ = levels.learn()

    def _fit(self, subjects: Sequence[Subject], context: FitContext) -> None:
        if self.multisource:  # a first pass over the patients (each is read twice)
            self.learn_source_levels(subjects)
        rows, quantiles, search = [], [], SearchIndex()
        for subject in subjects:
            prepared = self.prepare(subject, with_target=True)
            if self.rules.matches_target_distribution:
                quantiles.append(target_quantiles(prepared))
            training = int(prepared.training.sum())
            if training < self.macro * self.micro_per_tissue:
                raise ValueError(
                    f"case {subject.case_id}: too few brain voxels ({training}) for "
                    f"{self.macro} x {self.micro_per_tissue} clusters"
                )
            rows.append(self.rows_of(prepared))
            if self.mode == "search":
                search.add(subject.case_id, prepared.primary_volume())
        if not rows:
            raise ValueError("BrainClustering needs at least one training patient")
        self.patient_rows_ = rows
        self.tables_ = self.tables_from(rows)
        if self.rules.matches_target_distribution:
            self.target_quantiles_ = np.mean(quantiles, axis=0)
        if self.mode == "search":
            self.search_ = search

    def tables_from(self, rows: Sequence[TableRows]) -> Tables | CombinationTables:
        """The tables of a set of patients' rows: per tissue, or per combination with several sources."""
        merged = TableRows.concatenate(rows)
        bins = self.micro_per_tissue if self.rules.bins_rows else None
        if self.multisource:
            return build_combination_tables(merged, self.macro, len(self.source), bins)
        return build_tables(merged, self.macro, self.rules.absolute_update, bins)

    # -- query ---------------------------------------------------------------------------------

    def _tables_for(self, prepared: Prepared) -> Tables | CombinationTables:
        if self.mode == "train":
            return self.tables_
        nearest = self.search_.nearest(prepared.primary_volume(), self.w)
        return self.tables_from([self.patient_rows_[i] for i in nearest])

    def synthesise(self, subject: Subject) -> tuple[np.ndarray, np.ndarray]:
        """(unfiltered, median-filtered) target arrays, float32, 0 outside the query voxels."""
        self.check_fitted()
        prepared = self.prepare(subject, with_target=False)
        tables = self._tables_for(prepared)
        values = prepared.primary
        distinct = distinct_values(values, prepared.primary_keys)
        tissue = cluster_distinct(distinct, self.macro).labels  # per distinct value
        if self.multisource:
            levels = source_levels(self.level_bounds_, prepared.others)
            combination = np.column_stack([tissue[distinct.inverse], *levels])
            synthetic, _ = look_up_combinations(tables, combination, values, self.macro)
        else:  # the voxels of one value get one result: look up the distinct values only
            per_value = np.zeros(distinct.values.shape)
            for t in range(self.macro):
                selected = tissue == t
                keys, table_values = tables.table(t)
                per_value[selected] = look_up(keys, table_values, distinct.values[selected], self.rules.through_origin)
            synthetic = per_value[distinct.inverse]
        if self.rules.matches_target_distribution:
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
            **{f"rows_{f}": getattr(rows, f) for f in ROW_FIELDS if f != "weight" or self.rules.bins_rows},
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
        if self.rules.matches_target_distribution:
            arrays["target_quantiles"] = self.target_quantiles_
        if self.mode == "search":
            arrays |= self.search_.state()
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
        if self.rules.matches_target_distribution:
            self.target_quantiles_ = arrays["target_quantiles"]
        if self.mode == "search":
            self.search_ = SearchIndex.from_state(arrays, len(self.patient_rows_))
