"""Shared command-line behaviour: bad input and interruptions end the program with one clear line,
not a traceback, and a status that says what happened (2: bad input; 128 + signal: interrupted)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from common.errors import ConfigError, InvalidInputError, RunInterruptedError
from common.signals import signals_raise

EXIT_BAD_INPUT = 2


#: The shell's status for a process ended by a signal.
EXIT_INTERRUPTED = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}


@contextmanager
def bad_input_exits() -> Iterator[None]:
    """Turn :class:`InvalidInputError` (``error: <file>: <problem>``) and :class:`ConfigError` into one
    line on stderr and exit status 2, and SIGTERM and SIGINT, whenever they come (reading, caching,
    predicting; training hands them to Lightning, :func:`common.signals.signals_to_lightning`), into one
    ``interrupted: ...`` line and status 128 + the signal's number."""
    try:
        with signals_raise():
            yield
    except (InvalidInputError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from error
    except RunInterruptedError as error:
        print(f"interrupted: {error}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED.get(error.received, 1)) from error


#: Top-level config keys that only some models use (through an interpolation such as ``${lambda}``).
MODEL_SPECIFIC_KEYS = ("lambda", "gamma", "generator", "trainer")


def check_model_specific_overrides(cfg: DictConfig, overrides: Sequence[str], model_name: str) -> None:
    """Refuse e.g. ``lambda=500`` with a model that has no such weight: it would be silently ignored.

    Raises:
        ConfigError: naming the keys and the models whose configs use them.
    """
    overridden = {override.lstrip("+~").split("=")[0].split(".")[0] for override in overrides}
    raw_model = str(OmegaConf.to_container(cfg.model, resolve=False))
    unused = [key for key in MODEL_SPECIFIC_KEYS if key in overridden and "${" + key not in raw_model]
    if unused:
        users = models_using(unused[0])
        raise ConfigError(
            f"model={model_name} does not use {', '.join(unused)}; "
            f"{unused[0]} is used by: model={', model='.join(users) or '(none)'}"
        )


def models_using(key: str) -> list[str]:
    """Names of the ``conf/model`` configs that reference the top-level ``key``."""
    folder = Path(__file__).resolve().parent.parent / "conf" / "model"
    return sorted(path.stem for path in folder.glob("*.yaml") if "${" + key in path.read_text())
