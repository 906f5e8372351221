"""One choice check for every constructor; one rule for the cores a process may use."""

import os

import pytest

from common.checks import check_choice
from common.cores import usable_cores


def test_a_refused_choice_names_the_option_the_choices_and_the_value():
    check_choice("mode", "train", ("train", "search"))
    with pytest.raises(ValueError, match=r"^mode must be one of \('train', 'search'\), got 'walk'$"):
        check_choice("mode", "walk", ("train", "search"))


@pytest.mark.parametrize(
    ("allocation", "expected"),
    [(None, "affinity"), ("1", 1), ("100000", "affinity"), ("", "affinity"), ("two", "affinity")],
)
def test_usable_cores_are_the_affinity_capped_by_a_slurm_allocation(monkeypatch, allocation, expected):
    if allocation is None:
        monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    else:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", allocation)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores() == (affinity if expected == "affinity" else expected)
