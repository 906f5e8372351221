import kmeans1d
import numpy as np
import pytest
from scipy import ndimage

from clustering.brainclustering import BrainClustering
from clustering.kmeans import cluster_values, distinct_values, weighted_kmeans_1d
from clustering.shades import LeveledClustering, match_labels, patient_rows, shade_mean_rows
from clustering.tables import TableRows, binned_rows, build_tables, look_up, match_quantiles
from datamodules.dataset import Subject
from datamodules.preprocessing import median_per_axial_slice, percentile_scale
from pipeline.contract import SynthesisMethod
from tests.conftest import ball_volume


@pytest.mark.parametrize("seed", range(8))
def test_weighted_kmeans_equals_kmeans1d_on_raw_values_with_ties(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 60, size=500).astype(float)  # many ties
    for k in (1, 2, 3, 7, 20):
        ours = cluster_values(values, k)
        labels, centroids = kmeans1d.cluster(values, k)
        np.testing.assert_array_equal(ours.labels, labels)
        np.testing.assert_allclose(ours.centroids, centroids)
        expected_cost = ((values - np.asarray(centroids)[labels]) ** 2).sum()
        assert ours.cost == pytest.approx(expected_cost, rel=1e-9, abs=1e-9)


def test_weighted_kmeans_by_hand_and_with_more_clusters_than_points():
    # Points 0 (x3), 1 (x1), 10 (x2): two clusters {0, 1} and {10}; cost = 3*0.25^2 + 0.75^2.
    result = weighted_kmeans_1d(np.array([0.0, 1.0, 10.0]), np.array([3, 1, 2]), 2)
    np.testing.assert_array_equal(result.labels, [0, 0, 1])
    np.testing.assert_allclose(result.centroids, [0.25, 10.0])
    assert result.cost == pytest.approx(3 * 0.25**2 + 0.75**2)
    small = weighted_kmeans_1d(np.array([1.0, 2.0]), np.array([1, 1]), 4)
    np.testing.assert_array_equal(small.labels, [0, 1])
    assert np.isnan(small.centroids[2:]).all()


def assert_same_distinct(found, values):
    expected = np.unique(values, return_inverse=True, return_counts=True)
    for got, wanted in zip((found.values, found.inverse, found.counts), expected, strict=True):
        np.testing.assert_array_equal(got, wanted)


def test_distinct_values_by_counting_keys_equal_numpy_unique():
    """int16 keys over the type's whole range (their difference overflows int16) and a scale that
    clips, so that several keys share one value."""
    rng = np.random.default_rng(0)
    raw = rng.integers(-32768, 32767, size=4000).astype(np.int16)
    raw[:10] = [-32768, 32767, 0, 0, 5, 5, 5, -1, -1, 100]
    mask = np.ones(raw.shape, dtype=bool)
    scaled = percentile_scale(raw, mask, lower=5, upper=90).astype(np.float64)
    found = distinct_values(scaled, keys=raw)
    assert_same_distinct(found, scaled)
    assert found.counts[-1] == (scaled == 1.0).sum() > 1  # the clipped keys merged into one value


def test_distinct_values_without_usable_keys_sorts():
    values = np.array([0.5, 0.25, 0.5, 1.0])
    assert_same_distinct(distinct_values(values), values)
    assert_same_distinct(distinct_values(values, keys=values), values)  # float keys: ignored
    assert_same_distinct(distinct_values(values, keys=np.array([1, 1, 1, 2])), values)  # 1 holds two values
    np.testing.assert_array_equal(cluster_values(values, 2, keys=np.array([2, 1, 2, 3])).labels, [0, 0, 0, 1])


def test_integer_and_float_scans_give_the_same_model_and_prediction(tiny_phantom):
    """The same intensities stored as int16 (distinct values counted) and as float32 (sorted)."""
    subjects = phantom_subjects(tiny_phantom)
    as_float = [
        Subject(s.case_id, {c: v.with_data(v.data.astype(np.float32)) for c, v in s.volumes.items()}) for s in subjects
    ]
    assert subjects[0]["t1"].data.dtype.kind == "i"
    for setting, micro in (("paper", 5), ("reference", 15)):
        counted = BrainClustering(macro=3, micro=micro, setting=setting).fit(subjects[1:])
        sorted_ = BrainClustering(macro=3, micro=micro, setting=setting).fit(as_float[1:])
        for name, array in counted.state().items():
            np.testing.assert_array_equal(array, sorted_.state()[name], err_msg=name)
        np.testing.assert_array_equal(counted.predict(subjects[0]).data, sorted_.predict(as_float[0]).data)


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "search", "w": 2, "micro": 5},
        {"setting": "reference", "micro": 15},
        {"source": ("t1", "flair", "t1ce"), "micro": 5},
    ],
)
def test_fortran_and_c_ordered_volumes_give_the_same_model_and_prediction(tiny_phantom, settings):
    """nibabel gives Fortran-ordered arrays, which are read in their own memory order (values_at);
    the same volumes in C order must give the same model and prediction."""
    cases = tiny_phantom.cases_in("train")
    fortran = [tiny_phantom.load(case, ("t1", "t2", "flair", "t1ce")) for case in cases]
    assert fortran[0]["t1"].data.flags.f_contiguous and not fortran[0]["t1"].data.flags.c_contiguous
    c_order = [
        Subject(s.case_id, {c: v.with_data(np.ascontiguousarray(v.data)) for c, v in s.volumes.items()})
        for s in fortran
    ]
    models = [BrainClustering(macro=3, **settings).fit(subjects[1:]) for subjects in (fortran, c_order)]
    for name, array in models[0].state().items():
        np.testing.assert_array_equal(array, models[1].state()[name], err_msg=name)
    predictions = [model.predict(subjects[0]).data for model, subjects in zip(models, (fortran, c_order), strict=True)]
    np.testing.assert_array_equal(predictions[0], predictions[1])


def test_hungarian_matching_maximises_overlap():
    overlap = np.array([[10, 9], [9, 0]])  # greedy (0,0)=10 -> (1,1)=0: total 10; optimum 9 + 9 = 18
    np.testing.assert_array_equal(match_labels(overlap), [1, 0])


def test_table_update_paper_and_reference():
    rows = TableRows(np.array([0, 0, 0, 1]), np.array([0.5, 0.5, 0.5, 0.2]), np.array([0.6, 0.2, 0.5, 0.9]))
    paper = build_tables(rows, macro=2, absolute_update=False)
    keys, values = paper.table(0)
    np.testing.assert_allclose(keys, [0.5])
    np.testing.assert_allclose(values, [(0.6 + 0.2 + 0.5) / 3])  # eq. (1) is the running mean
    # Reference: f = 0.6; n=2: f += |0.2 - 0.6| / 2 -> 0.8; n=3: f += |0.5 - 0.8| / 3 -> 0.9
    reference = build_tables(rows, macro=2, absolute_update=True)
    np.testing.assert_allclose(reference.table(0)[1], [0.9])
    np.testing.assert_array_equal(reference.counts[:1], [3])


def test_empty_tissue_takes_every_row():
    rows = TableRows(np.array([0, 0]), np.array([0.1, 0.4]), np.array([0.8, 0.2]))
    keys, _values = build_tables(rows, macro=3, absolute_update=False).table(2)
    np.testing.assert_allclose(keys, [0.1, 0.4])


def test_lookup_hit_interpolation_and_both_out_of_range_rules():
    keys, values = np.array([0.2, 0.4, 0.8]), np.array([0.6, 0.2, 0.4])
    x = np.array([0.4, 0.3, 0.1, 0.9])
    np.testing.assert_allclose(look_up(keys, values, x, through_origin=False), [0.2, 0.4, 0.6, 0.4])
    np.testing.assert_allclose(look_up(keys, values, x, through_origin=True), [0.2, 0.4, 0.3, 0.45])


def test_median_filter_equals_a_per_slice_3x3_median():
    rng = np.random.default_rng(0)
    volume = np.zeros((12, 11, 5), np.float32)
    volume[3:9, 2:8, 1:4] = rng.random((6, 6, 3))
    expected = np.stack([ndimage.median_filter(volume[:, :, z], size=3, mode="nearest") for z in range(5)], axis=2)
    np.testing.assert_array_equal(median_per_axial_slice(volume), expected)


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_median_filter_with_ties_at_the_edges_split_among_threads(monkeypatch, parts):
    """Integer values (many ties) reaching every face, so the whole field is filtered, cut into
    ``parts`` slabs (more than its 3 rows at 5)."""
    import datamodules.preprocessing as preprocessing

    monkeypatch.setattr(preprocessing, "PARALLEL_PARTS", parts)
    volume = np.random.default_rng(1).integers(1, 4, size=(3, 7, 4)).astype(np.float32)
    expected = np.stack([ndimage.median_filter(volume[:, :, z], size=3, mode="nearest") for z in range(4)], axis=2)
    np.testing.assert_array_equal(median_per_axial_slice(volume), expected)


def test_reference_setting_reproduces_a_hand_worked_example():
    # Two tissues of two shades each (reference: micro=4 total -> 2 per tissue). T1 values and the
    # T2 of the same voxels: shades of T1 {1,2}->T2 {9,8} and T1 {6,7}->T2 {3,2} (T2 order reversed).
    t1 = np.array([1.0, 1.0, 2.0, 2.0, 6.0, 6.0, 7.0, 7.0])
    t2 = np.array([9.0, 9.0, 8.0, 8.0, 3.0, 3.0, 2.0, 2.0])
    rows = patient_rows(t1, t2, macro=2, micro=2, skip_disjoint=False)
    # Tissue 0 (T1 dark) matches T2's bright tissue; its shades: T1 1 -> T2 9, T1 2 -> T2 8.
    assert sorted(zip(rows.tissue.tolist(), rows.key.tolist(), rows.value.tolist(), strict=True)) == [
        (0, 1.0, 9.0), (0, 2.0, 8.0), (1, 6.0, 3.0), (1, 7.0, 2.0),
    ]  # fmt: skip


def phantom_subjects(dataset, role="train"):
    return [dataset.load(case, ("t1", "t2")) for case in dataset.cases_in(role)]


@pytest.mark.parametrize("setting", ["paper", "reference", "quantile"])
def test_fit_predict_round_trip(tiny_phantom, tmp_path, setting):
    subjects = phantom_subjects(tiny_phantom)
    method = BrainClustering(mode="search", w=2, macro=3, micro=6, setting=setting).fit(subjects)
    query = subjects[0]
    outputs = method.predict_all(query)
    assert set(outputs) == {"", "unfiltered"}
    assert outputs[""].shape == query["t1"].shape and outputs[""].data.dtype == np.float32
    loaded = SynthesisMethod.load(method.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict(query).data, outputs[""].data)


def test_search_picks_the_nearest_patients(tiny_phantom):
    subjects = phantom_subjects(tiny_phantom)
    method = BrainClustering(mode="search", w=2, macro=3, micro=4).fit(subjects)
    query = Subject("q", {"t1": subjects[2]["t1"]})
    query_t1 = method.prepare(query, with_target=False).primary_volume()
    distances = method.search_.distances(query_t1)
    assert 0 <= distances[2] <= (0.5 / 65535) ** 2  # a patient is nearest to itself, to half a 16-bit level
    t1s = [method.prepare(s, with_target=False).primary_volume() for s in subjects]
    exact = np.array([np.mean((query_t1 - t) ** 2) for t in t1s])
    assert (np.abs(distances - exact) <= np.sqrt(exact) / 65535 + 1e-10).all()  # the stated bound
    assert method.search_.nearest(query_t1, 2).tolist() == np.argsort(exact, kind="stable")[:2].tolist()
    assert all(crop.dtype == np.uint16 for crop in method.search_.crops)


def test_a_training_case_too_small_or_of_another_shape_is_named(tiny_phantom):
    subjects = phantom_subjects(tiny_phantom)
    small = Subject("SMALL", {"t1": ball_volume(), "t2": ball_volume()})  # 280 brain voxels
    with pytest.raises(ValueError, match=r"case SMALL: too few brain voxels \(280\) for 3 x 100 clusters"):
        BrainClustering(macro=3, micro=100).fit([small])
    with pytest.raises(ValueError, match=r"case SMALL: Search mode needs one volume shape"):
        BrainClustering(mode="search", macro=3, micro=4).fit([*subjects, small])


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="macro must be between 3 and 6"):
        BrainClustering(macro=2)
    with pytest.raises(ValueError, match="must be divisible by macro"):
        BrainClustering(macro=3, micro=100, setting="reference")
    with pytest.raises(ValueError, match="mode must be one of"):
        BrainClustering(mode="nearest")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["train", "search"])
def test_brainclustering_beats_complementary_on_a_small_phantom(tmp_path_factory, mode):
    from clustering.baselines import Complementary
    from datamodules.phantom import phantom_dataset
    from evaluation.scoring import score_prediction

    dataset = phantom_dataset(n_subjects=8, shape=(64, 64, 40), seed=2, root=tmp_path_factory.mktemp("phantom64"))
    method = BrainClustering(mode=mode, w=3, macro=4, micro=10).fit(phantom_subjects(dataset))
    tests = [dataset.load(c) for role in dataset.roles if role != "train" for c in dataset.cases_in(role)]
    ours = np.mean([score_prediction(method.predict(s), s)["pct_mse_brain"] for s in tests])
    baseline = np.mean([score_prediction(Complementary().predict(s), s)["pct_mse_brain"] for s in tests])
    assert ours < baseline


# -- setting=quantile ------------------------------------------------------------------------------


def test_shade_mean_rows_hold_each_shades_mean_target_and_voxels():
    clustering = LeveledClustering(
        macro=np.array([0, 0, 0, 1, 1, 1]),
        micro=np.array([0, 0, 1, 0, 1, 1]),
        means=np.array([[0.1, 0.2], [0.7, 0.9]]),
    )
    target = np.array([0.8, 0.6, 0.5, 0.3, 0.2, 0.0])
    rows = shade_mean_rows(clustering, target, macro=2, micro=2)
    np.testing.assert_array_equal(rows.tissue, [0, 0, 1, 1])
    np.testing.assert_allclose(rows.key, [0.1, 0.2, 0.7, 0.9])
    np.testing.assert_allclose(rows.value, [0.7, 0.5, 0.3, 0.1])  # (0.8+0.6)/2, 0.5, 0.3, (0.2+0.0)/2
    np.testing.assert_array_equal(rows.weight, [2, 1, 1, 2])


def test_binned_rows_average_interleaved_patients_by_their_voxels():
    # Two patients' keys interleave in [0, 1]; two bins: [0, 0.5) and [0.5, 1].
    key, value, weight = np.array([0.0, 0.1, 0.9, 1.0]), np.array([1.0, 0.0, 0.5, 0.2]), np.array([3, 1, 1, 4.0])
    keys, values, counts = binned_rows(key, value, weight, bins=2)
    np.testing.assert_allclose(keys, [0.1 / 4, (0.9 + 4.0) / 5])
    np.testing.assert_allclose(values, [3 / 4, (0.5 + 0.8) / 5])
    np.testing.assert_array_equal(counts, [2, 2])


def test_match_quantiles_keeps_the_order_and_takes_the_distribution():
    quantiles = np.linspace(0, 10, 11)  # the uniform distribution on [0, 10]
    matched = match_quantiles(np.array([30.0, 10.0, 20.0, 20.0]), quantiles)
    # Ranks 4, 1, 2.5, 2.5 of 4 -> quantile levels 0.875, 0.125, 0.5, 0.5.
    np.testing.assert_allclose(matched, [8.75, 1.25, 5.0, 5.0])


def test_quantile_setting_is_blind_to_each_scans_own_scale(tiny_phantom):
    """Two copies of each scan on other scales (a * x + b, a > 0, as two scanners give) make the same
    model, and a query on either scale the same synthetic image."""
    subjects = phantom_subjects(tiny_phantom)

    def rescaled(subject, a, b):
        volumes = {c: v.with_data(np.where(subject.brain, a * v.data.astype(np.float64) + b, 0)) for c, v in (
            ("t1", subject["t1"]), ("t2", subject["t2"]))}  # fmt: skip
        return Subject(subject.case_id, volumes)

    first = BrainClustering(macro=3, micro=6, setting="quantile").fit([rescaled(s, 1, 0) for s in subjects[1:]])
    second = BrainClustering(macro=3, micro=6, setting="quantile").fit([rescaled(s, 3, 500) for s in subjects[1:]])
    np.testing.assert_allclose(first.tables_.values, second.tables_.values, atol=1e-9)
    np.testing.assert_allclose(first.target_quantiles_, second.target_quantiles_, atol=1e-9)
    a, b = (first.predict(rescaled(subjects[0], scale, shift)).data for scale, shift in ((1, 0), (2, 40)))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1 and not a[~subjects[0].brain].any()
