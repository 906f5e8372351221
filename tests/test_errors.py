"""Every project error that carries fields survives a process boundary: a worker pool's error reaches
the parent as the same class with the same fields and message, so the entry scripts can report it."""

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from common.errors import ConfigError, InvalidInputError, RunInterruptedError
from pipeline.contract import NotFittedError, TaskNotSupportedError

ERRORS = [
    InvalidInputError("/data/case/t1.nii.gz", "truncated"),
    RunInterruptedError("SIGTERM", Path("/runs/a/last.ckpt"), "rerun into the same folder to resume"),
    RunInterruptedError("SIGINT", None),
    ConfigError("model=zeros does not use lambda"),
    NotFittedError("call fit first"),
    TaskNotSupportedError("Complementary needs a T1 source"),
]


def raise_error(error: Exception) -> None:
    raise error


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_raised_in_a_spawned_worker_reaches_the_parent_intact(error):
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool, pytest.raises(type(error)) as raised:
        pool.submit(raise_error, error).result()
    assert str(raised.value) == str(error)
    assert vars(raised.value) == vars(error)
