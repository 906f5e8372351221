"""Option checks shared by every constructor, so that a refused value reads the same everywhere."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def check_choice(name: str, value: Any, choices: Collection[Any]) -> None:
    """Raises ValueError ``<name> must be one of <choices>, got <value>`` unless ``value`` is a choice."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
