import numpy as np

from datamodules.phantom import make_subject


def test_phantom_is_deterministic_and_integer():
    first, affine = make_subject(seed=5, index=2, shape=(32, 32, 24))
    second, _ = make_subject(seed=5, index=2, shape=(32, 32, 24))
    other, _ = make_subject(seed=5, index=3, shape=(32, 32, 24))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
        assert first[name].dtype == np.int16
    assert not np.array_equal(first["t1n"], other["t1n"])
    np.testing.assert_allclose(np.diag(affine)[:3], (7.5, 7.5, 155 / 24))


def test_phantom_contrasts_order_as_real_tissue_does():
    images, _ = make_subject(seed=0, index=0, shape=(64, 64, 48))
    seg = images["seg"]
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    brain = images["t1n"] > 0
    assert 0.05 < brain.mean() < 0.6
    # Tissue classes by T1/T2 signature: CSF is the brightest healthy tissue on T2.
    healthy = brain & (seg == 0)
    t1, t2, flair, t1ce = (images[k].astype(float) for k in ("t1n", "t2w", "t2f", "t1c"))
    csf = healthy & (t2 > np.percentile(t2[healthy], 95))
    white = healthy & (t1 > np.percentile(t1[healthy], 80))
    assert t1[csf].mean() < 0.6 * t1[white].mean()  # CSF dark on T1
    assert t2[csf].mean() > 2.0 * t2[white].mean()  # bright on T2
    assert flair[csf].mean() < 0.6 * flair[white].mean()  # suppressed on FLAIR
    assert t1ce[seg == 3].mean() > 1.3 * t1[seg == 3].mean()  # the rim enhances
    assert flair[seg == 2].mean() > flair[white].mean()  # oedema bright on FLAIR
    assert t2.max() > 1000 and t1.max() > 500  # scanner-like integer ranges
