"""Shared command-line behaviour: bad input ends the program with one clear line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from datamodules.nifti import InvalidInputError

EXIT_BAD_INPUT = 2


class ConfigError(ValueError):
    """A configuration that cannot mean what the user asked for (e.g. ``lambda`` with BrainClustering)."""


@contextmanager
def bad_input_exits() -> Iterator[None]:
    """Turn :class:`InvalidInputError` (``error: <file>: <problem>``) and :class:`ConfigError` into one
    line on stderr and exit status 2."""
    try:
        yield
    except (InvalidInputError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from error
