"""Shared command-line behaviour: bad input and interruptions end the program with one clear line,
not a traceback, and a status that says what happened (2: bad input; 128 + signal: interrupted)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from datamodules.nifti import InvalidInputError

EXIT_BAD_INPUT = 2


#: The shell's status for a process ended by a signal.
EXIT_INTERRUPTED = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}


class RunInterruptedError(BaseException):
    """A run stopped by a signal (``SIGTERM`` from SLURM or ``timeout``, ``SIGINT`` from Ctrl-C);
    ``checkpoint`` holds the state a rerun into the same folder resumes from. A ``BaseException``, as
    ``KeyboardInterrupt`` is: raised inside a reader's ``except Exception`` (a signal comes at any
    line), it must not be taken for that reader's error."""

    def __init__(self, received: str, checkpoint: Path | None, resume: str = "") -> None:
        self.received, self.checkpoint, self.resume = received, checkpoint, resume
        kept = f"; kept {checkpoint}" if checkpoint else ""
        super().__init__(f"stopped by {received}{kept}" + (f"; {resume}" if resume else ""))

    def __reduce__(self):  # rebuilt from its fields when it crosses a process boundary
        return type(self), (self.received, self.checkpoint, self.resume)


class ConfigError(ValueError):
    """A configuration that cannot mean what the user asked for (e.g. ``lambda`` with BrainClustering)."""


def raise_interrupted(signum: int, _frame: object) -> None:
    """A signal handler: SIGTERM or SIGINT as :class:`RunInterruptedError`, so that it unwinds through
    the ``finally`` blocks that remove temporary files, and the run adds how to resume."""
    raise RunInterruptedError(signal.Signals(signum).name, None)


@contextmanager
def handled_signals(handlers: dict[signal.Signals, Any]) -> Iterator[None]:
    """``handlers`` installed for the duration of the block, the earlier ones restored after (in the
    main thread only: Python delivers signals there, and refuses handlers from other threads)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def signals_to_lightning() -> AbstractContextManager[None]:
    """Python's own SIGTERM and SIGINT handling while Lightning trains: Lightning saves the state and
    stops its loop itself, which a handler of ours that raises (Lightning calls it too) would cut short."""
    return handled_signals({signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler})


@contextmanager
def bad_input_exits() -> Iterator[None]:
    """Turn :class:`InvalidInputError` (``error: <file>: <problem>``) and :class:`ConfigError` into one
    line on stderr and exit status 2, and SIGTERM and SIGINT, whenever they come (reading, caching,
    predicting; training hands them to Lightning, :func:`signals_to_lightning`), into one
    ``interrupted: ...`` line and status 128 + the signal's number."""
    try:
        with handled_signals({signal.SIGTERM: raise_interrupted, signal.SIGINT: raise_interrupted}):
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
