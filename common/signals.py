"""SIGTERM (SLURM, ``timeout``) and SIGINT (Ctrl-C) as :class:`~common.errors.RunInterruptedError`, so
that they unwind through the ``finally`` blocks that remove temporary files, except while Lightning
trains, which handles them itself."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from common.errors import RunInterruptedError


def raise_interrupted(signum: int, _frame: object) -> None:
    """A signal handler: SIGTERM or SIGINT as :class:`RunInterruptedError` (the run adds how to resume)."""
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


def signals_raise() -> AbstractContextManager[None]:
    """SIGTERM and SIGINT raise :class:`RunInterruptedError` wherever they come."""
    return handled_signals({signal.SIGTERM: raise_interrupted, signal.SIGINT: raise_interrupted})


def signals_to_lightning() -> AbstractContextManager[None]:
    """Python's own SIGTERM and SIGINT handling while Lightning trains: Lightning saves the state and
    stops its loop itself, which a handler of ours that raises (Lightning calls it too) would cut short."""
    return handled_signals({signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler})
