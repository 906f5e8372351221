"""Progress that reads well both on a terminal and in a log file (nohup, SLURM, CI).

On a terminal, one line redrawn in place; otherwise a plain line every ``every`` items (and at the
first and the last), so that a job nobody watches still shows how far it is and how long it has left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

Item = TypeVar("Item")

#: Seconds between redraws of the in-place line on a terminal.
REDRAW_SECONDS = 0.5


def duration(seconds: float) -> str:
    """``1:02:03``, ``4:05`` or ``7s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes}:{seconds:02d}" if minutes else f"{seconds}s"


def default_every(total: int, lines: int = 20) -> int:
    """Report every this many items, so that a run prints about ``lines`` lines in all."""
    return max(1, total // lines)


class Progress:
    """Counts ``done`` of ``total`` and reports ``done / total``, a rate, the time left and any
    extra text (such as losses).

    Args:
        total: items in all.
        description: what is counted, printed first on each line.
        unit: the rate's unit (``it/s``; ``s/it`` when slower than one per second).
        every: in a log, a line every ``every`` items (default: about 20 lines in all).
        start: items done before this process began (a resumed run), left out of the rate.
        stream: where to write (default: standard error).
        interactive: redraw one line in place; default: whether ``stream`` is a terminal.
    """

    def __init__(
        self,
        total: int,
        description: str,
        unit: str = "it",
        every: int | None = None,
        start: int = 0,
        stream: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.total = max(1, int(total))
        self.description = description
        self.unit = unit
        self.every = every or default_every(self.total)
        self.start = self.done = start
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.started = time.perf_counter()
        self.last_draw = 0.0

    def line(self, extra: str = "") -> str:
        elapsed = time.perf_counter() - self.started
        counted = self.done - self.start
        rate = counted / elapsed if elapsed > 0 else 0.0
        if rate >= 1:
            speed = f"{rate:.2f} {self.unit}/s"
        else:
            speed = f"{1 / rate:.2f} s/{self.unit}" if rate > 0 else f"? {self.unit}/s"
        left = duration((self.total - self.done) / rate) if rate > 0 else "?"
        percent = 100 * self.done / self.total
        parts = [f"{self.description} {self.done}/{self.total} ({percent:.0f}%)", speed, f"{left} left"]
        if extra:
            parts.insert(1, extra)
        return " | ".join(parts)

    def due(self) -> bool:
        """Whether :meth:`update` to the current count would print (to skip building ``extra``)."""
        if self.interactive:
            return time.perf_counter() - self.last_draw >= REDRAW_SECONDS or self.done >= self.total
        return self.done in (self.start + 1, self.total) or self.done % self.every == 0

    def update(self, done: int, extra: str | None = None) -> None:
        """Record ``done`` items and report if due; ``extra`` is only needed when :meth:`due`."""
        self.done = done
        if not self.due():
            return
        self.last_draw = time.perf_counter()
        if self.interactive:
            self.stream.write("\r\033[K" + self.line(extra or ""))
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(self.line(extra or "") + "\n")
        self.stream.flush()


def track(
    items: Iterable[Item], description: str, total: int | None = None, every: int | None = None
) -> Iterator[Item]:
    """Iterate ``items`` while reporting progress (see :class:`Progress`)."""
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    progress = Progress(total, description, every=every)
    for done, item in enumerate(items, start=1):
        yield item
        progress.update(done)
