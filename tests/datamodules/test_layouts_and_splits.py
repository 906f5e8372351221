import json

import numpy as np
import pytest

from common.errors import InvalidInputError
from datamodules.dataset import SynthesisDataset
from datamodules.labels import BRATS2019, BRATS2023
from datamodules.layouts import detect_layout
from datamodules.splits import PAPER_PROPORTIONS, load_split, make_split, role_counts
from tests.conftest import ball_volume, make_volume, write_case


def brats2019_case(root, group, name, with_seg=True):
    modalities = ["t1", "t1ce", "t2", "flair"] + (["seg"] if with_seg else [])
    volume = ball_volume()
    write_case(
        root / group / name,
        {m: f"{name}_{m}.nii.gz" for m in modalities},
        {m: volume.with_data((volume.data > 0).astype(np.int16)) if m == "seg" else volume for m in modalities},
    )


def brats2023_case(root, name, with_seg=True, seg_value=1):
    suffixes = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"} | ({"seg": "seg"} if with_seg else {})
    volume = ball_volume()
    volumes = {
        m: volume.with_data((volume.data > 0).astype(np.int16) * seg_value) if m == "seg" else volume for m in suffixes
    }
    write_case(root / name, {m: f"{name}-{s}.nii.gz" for m, s in suffixes.items()}, volumes)


def test_brats2019_layout(tmp_path):
    brats2019_case(tmp_path, "HGG", "BraTS19_A_1")
    brats2019_case(tmp_path, "LGG", "BraTS19_B_2", with_seg=False)
    dataset = SynthesisDataset(tmp_path)
    assert dataset.layout.name == "brats2019" and dataset.labels is BRATS2019
    assert sorted(dataset.cases) == ["BraTS19_A_1", "BraTS19_B_2"]
    assert dataset.cases["BraTS19_A_1"].group == "HGG"
    assert not dataset.cases["BraTS19_B_2"].has("seg")
    subject = dataset.load(dataset.cases["BraTS19_B_2"], ("t1", "t2"))
    assert subject.segmentation is None and subject.tumour is None


def test_brats2023_layout_and_missing_modality(tmp_path):
    brats2023_case(tmp_path, "GLI-0001")
    brats2023_case(tmp_path, "GLI-0002")
    (tmp_path / "GLI-0002" / "GLI-0002-t2w.nii.gz").unlink()
    dataset = SynthesisDataset(tmp_path)
    assert dataset.layout.name == "brats2023" and dataset.labels is BRATS2023
    with pytest.raises(InvalidInputError, match=r"GLI-0002-t2w\.nii\.gz: missing t2 for case GLI-0002"):
        dataset.load(dataset.cases["GLI-0002"], ("t1", "t2"))


def test_per_modality_layout_uses_its_split_folders(tmp_path):
    volume = ball_volume()
    for split, name in (("train", "p1"), ("train", "p2"), ("test", "p3")):
        write_case(
            tmp_path / split, {"t1": f"t1/{name}.nii.gz", "t2": f"t2/{name}.nii.gz"}, {"t1": volume, "t2": volume}
        )
    dataset = SynthesisDataset(tmp_path)
    assert dataset.layout.name == "per_modality"
    assert dataset.split == {"test": ["p3"], "train": ["p1", "p2"]}


def test_unknown_layout_and_unknown_labels(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no known data set layout"):
        detect_layout(tmp_path / "empty")
    brats2023_case(tmp_path / "data", "C1", seg_value=4)
    dataset = SynthesisDataset(tmp_path / "data")
    with pytest.raises(
        InvalidInputError,
        match=r"C1-seg\.nii\.gz: unknown segmentation labels \[4\] for the brats2023 .*"
        r"these look like brats2019 labels: set data.label_convention=brats2019",
    ):
        dataset.load(dataset.cases["C1"])
    # The same file is valid under the brats2019 convention, chosen explicitly.
    SynthesisDataset(tmp_path / "data", label_convention="brats2019").load(dataset.cases["C1"])


def test_all_background_t1_is_rejected(tmp_path):
    brats2023_case(tmp_path, "C1")
    flat = make_volume(np.zeros((12, 12, 10), np.int16))
    write_case(tmp_path / "C1", {"t1": "C1-t1n.nii.gz"}, {"t1": flat})
    dataset = SynthesisDataset(tmp_path)
    with pytest.raises(InvalidInputError, match=r"C1-t1n\.nii\.gz: all voxels are background"):
        dataset.load(dataset.cases["C1"])


def test_paper_proportions_reproduce_table_1():
    assert role_counts(460, PAPER_PROPORTIONS) == {"train": 270, "validation": 30, "test": 50, "no_ground_truth": 110}
    assert role_counts(2, PAPER_PROPORTIONS)["train"] == 1
    assert sum(role_counts(7, PAPER_PROPORTIONS).values()) == 7


def test_split_is_seeded_and_puts_cases_without_segmentation_in_no_ground_truth():
    ids = [f"c{i}" for i in range(20)]
    has_seg = {c: c not in ("c3", "c7") for c in ids}
    first = make_split(ids, has_seg, seed=1)
    assert first == make_split(ids, has_seg, seed=1)
    assert first != make_split(ids, has_seg, seed=2)
    assert {"c3", "c7"} <= set(first["no_ground_truth"])
    assert sorted(c for role in first.values() for c in role) == sorted(ids)


def test_split_file_written_once_and_reused(tmp_path):
    for i in range(5):
        brats2023_case(tmp_path, f"C{i}")
    dataset = SynthesisDataset(tmp_path, split_seed=4)
    assert dataset.split_file == tmp_path / "split_seed4.json"
    edited = {"seed": 4, "roles": {"train": ["C0", "C1", "C2"], "test": ["C3", "C4"]}}
    dataset.split_file.write_text(json.dumps(edited))
    assert SynthesisDataset(tmp_path, split_seed=4).split == edited["roles"]


def test_bad_split_file(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"roles": {"train": ["a"], "test": ["zz"]}}))
    with pytest.raises(InvalidInputError, match=r"split\.json: role 'test' names cases not in the data set: \['zz'\]"):
        load_split(path, ["a", "b"])


def test_read_only_data_folder_is_never_written(tmp_path):
    for i in range(3):
        brats2023_case(tmp_path, f"C{i}")
    tmp_path.chmod(0o555)
    try:
        dataset = SynthesisDataset(tmp_path)
        assert dataset.split_file is None and not (tmp_path / "split_seed0.json").exists()
        assert sum(len(ids) for ids in dataset.split.values()) == 3
    finally:
        tmp_path.chmod(0o755)


def test_scoring_tools_read_a_data_set_without_writing_into_it(tmp_path):
    for i in range(4):
        brats2023_case(tmp_path, f"C{i}")
    before = sorted(p.name for p in tmp_path.iterdir())
    dataset = SynthesisDataset(tmp_path, write_split=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and dataset.split_file is None
    assert dataset.split == SynthesisDataset(tmp_path).split  # the same seeded split a training run writes
