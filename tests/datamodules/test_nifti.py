import gzip

import nibabel as nib
import numpy as np
import pytest

from common.errors import InvalidInputError
from datamodules import nifti
from datamodules.nifti import check_same_geometry, load_volume, save_volume
from tests.conftest import ball_volume, make_volume


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_round_trip_keeps_data_dtype_affine_and_header(tmp_path, dtype):
    volume = make_volume(np.arange(6 * 5 * 4, dtype=dtype).reshape(6, 5, 4), spacing=1.5)
    volume.header["qform_code"], volume.header["sform_code"] = 1, 2
    path = save_volume(volume, tmp_path / "x.nii.gz", dtype=dtype)
    loaded = load_volume(path)
    assert loaded.data.dtype == dtype
    np.testing.assert_array_equal(loaded.data, volume.data)
    np.testing.assert_allclose(loaded.affine, volume.affine)
    assert int(loaded.header["qform_code"]) == 1 and int(loaded.header["sform_code"]) == 2
    assert loaded.spacing == pytest.approx((1.5, 1.5, 1.5))
    np.testing.assert_allclose(loaded.header.get_zooms(), (1.5, 1.5, 1.5))


def test_synthetic_output_is_float32_with_input_geometry(tmp_path):
    source = ball_volume()
    source.header["qform_code"], source.header["sform_code"] = 2, 1
    written = load_volume(save_volume(source.with_data(source.data * 0.5), tmp_path / "y.nii"))
    assert written.data.dtype == np.float32
    np.testing.assert_allclose(written.affine, source.affine)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (2, 1)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(image, filename):
        with open(filename, "wb") as stream:
            stream.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nifti.nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_volume(ball_volume(), tmp_path / "z.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInputError, match=r"nope\.nii\.gz: file not found"):
        load_volume(tmp_path / "nope.nii.gz")


def test_truncated_gzip(tmp_path):
    path = save_volume(ball_volume((30, 30, 30)), tmp_path / "t.nii.gz", dtype=np.int16)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(InvalidInputError, match=r"t\.nii\.gz: .*(truncated|not a readable)"):
        load_volume(path)


def test_not_a_nifti(tmp_path):
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(gzip.compress(b"this is not an image"))
    with pytest.raises(InvalidInputError, match=r"junk\.nii\.gz"):
        load_volume(path)


def test_4d_is_rejected_but_trailing_singleton_is_accepted(tmp_path):
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), affine), tmp_path / "four.nii")
    with pytest.raises(InvalidInputError, match=r"four\.nii: expected a 3-D volume, found shape \(4, 4, 4, 3\)"):
        load_volume(tmp_path / "four.nii")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 1), np.float32), affine), tmp_path / "single.nii")
    assert load_volume(tmp_path / "single.nii").shape == (4, 4, 4)


def test_nan_and_inf_are_rejected(tmp_path):
    data = np.ones((4, 4, 4), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    save_volume(make_volume(data), tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidInputError, match=r"nan\.nii\.gz: 2 voxels are NaN or Inf"):
        load_volume(tmp_path / "nan.nii.gz")


def test_label_map_must_be_integer(tmp_path):
    save_volume(make_volume(np.full((4, 4, 4), 1.5, np.float32)), tmp_path / "seg.nii.gz")
    with pytest.raises(InvalidInputError, match="non-integer labels"):
        load_volume(tmp_path / "seg.nii.gz", label_map=True)


def test_geometry_mismatch_within_a_case():
    a = ball_volume()
    shifted = make_volume(a.data)
    shifted.affine[0, 3] += 2.0
    with pytest.raises(InvalidInputError, match="affine differs from t1's in case c1"):
        check_same_geometry({"t1": a, "t2": shifted}, "c1")
    with pytest.raises(InvalidInputError, match=r"shape \(12, 12, 9\) differs"):
        check_same_geometry({"t1": a, "t2": make_volume(a.data[:, :, :9])}, "c1")


def write_raw(path, data):
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def test_rgb_and_complex_images_are_refused_by_header_check_and_loader(tmp_path):
    from datamodules.nifti import read_geometry

    rgb = np.zeros((4, 4, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    complex_data = np.ones((4, 4, 3), dtype=np.complex64)
    for name, data, what in [("rgb.nii.gz", rgb, "RGB voxels"), ("complex.nii.gz", complex_data, "complex voxels")]:
        path = write_raw(tmp_path / name, data)
        for check in (read_geometry, load_volume):
            with pytest.raises(
                InvalidInputError, match=f"{name}: {what} .* not supported: expected a real-valued scan"
            ):
                check(path)


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_the_header_check_finds_a_truncated_file_without_decoding_it(tmp_path, name):
    from datamodules.nifti import read_geometry

    path = save_volume(ball_volume(shape=(20, 20, 12)), tmp_path / name)
    geometry = read_geometry(path)
    assert geometry.shape == (20, 20, 12) and geometry.affine.shape == (4, 4)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) * 2 // 3])
    with pytest.raises(InvalidInputError, match=f"{name}: truncated"):
        read_geometry(path)


def test_a_dangling_link_is_named_as_such(tmp_path):
    from datamodules.nifti import read_geometry

    link = tmp_path / "t1.nii.gz"
    link.symlink_to(tmp_path / "gone.nii.gz")
    for check in (read_geometry, load_volume):
        with pytest.raises(InvalidInputError, match=r"t1\.nii\.gz: dangling symbolic link"):
            check(link)
