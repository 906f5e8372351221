"""What a synthesis method makes from what: the source contrasts it reads and the target it writes.

The paper's task is T1 -> T2. A BraTS case that lacks one contrast (the BraSyn setting) usually has
the other three, so any target can be made from any set of the remaining contrasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.contrasts import CONTRASTS


@dataclass(frozen=True)
class SynthesisTask:
    """Sources (in order: the first is the primary, whose brain mask and geometry the outputs take)
    and the target contrast.

    Raises:
        ValueError: an unknown or repeated contrast, no source, or the target among the sources.
    """

    sources: tuple[str, ...] = ("t1",)
    target: str = "t2"

    def __post_init__(self) -> None:
        unknown = [name for name in (*self.sources, self.target) if name not in CONTRASTS]
        if unknown:
            raise ValueError(f"unknown contrast(s) {unknown}; the contrasts are {list(CONTRASTS)}")
        if not self.sources:
            raise ValueError("source needs at least one contrast")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"source lists a contrast twice: {list(self.sources)}")
        if self.target in self.sources:
            raise ValueError(f"the target {self.target} is also a source ({list(self.sources)})")

    @classmethod
    def of(cls, source: Sequence[str] | str, target: str) -> SynthesisTask:
        """From config values: a list of sources (or one name) and a target."""
        sources = (source,) if isinstance(source, str) else tuple(source)
        return cls(tuple(str(name) for name in sources), str(target))

    @property
    def primary(self) -> str:
        return self.sources[0]

    @property
    def modalities(self) -> tuple[str, ...]:
        """Sources then target: what a training case must have."""
        return (*self.sources, self.target)

    @property
    def record(self) -> dict[str, list[str] | str]:
        """As a run's ``summary.json`` records it (the inverse of :meth:`of`)."""
        return {"source": list(self.sources), "target": self.target}

    def __str__(self) -> str:
        return f"{'+'.join(self.sources)} -> {self.target}"
