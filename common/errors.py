"""The errors every entry script turns into one line and an exit status (``pipeline/cli.py``)."""

from __future__ import annotations

import os
from pathlib import Path


class InvalidInputError(ValueError):
    """Bad input data: the message names the file (or case) and the problem."""

    def __init__(self, source: str | os.PathLike, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")

    def __reduce__(self):  # rebuilt from its fields when it crosses a process boundary (a worker pool)
        return type(self), (self.source, self.problem)


class ConfigError(ValueError):
    """A configuration that cannot mean what the user asked for (e.g. ``lambda`` with BrainClustering)."""


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
