"""Split files: which case plays which role (train, validation, test, no ground truth).

A split is a JSON file ``{"seed": int, "roles": {role: [case ids]}}``. By default it is made once
with the paper's proportions (Table 1), saved next to the data (or in the run directory when the
data folder is read-only) and reused by every later run, so all methods see the same cases.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from common.errors import InvalidInputError
from common.files import write_json_atomic

TRAIN = "train"
VALIDATION = "validation"
# The paper's Table 1 (460 BraTS 2019 patients); testBraTS (35) and testOUR (15) form one "test" role.
PAPER_PROPORTIONS: dict[str, float] = {"train": 270, "validation": 30, "test": 50, "no_ground_truth": 110}
NO_GROUND_TRUTH = "no_ground_truth"

Split = dict[str, list[str]]


def role_counts(n_cases: int, proportions: Mapping[str, float]) -> dict[str, int]:
    """Cases per role by largest remainder, with at least one training case and (for two or more
    cases) at least one case outside training."""
    total = sum(proportions.values())
    exact = {role: n_cases * weight / total for role, weight in proportions.items()}
    counts = {role: int(np.floor(value)) for role, value in exact.items()}
    by_remainder = sorted(exact, key=lambda role: exact[role] - counts[role], reverse=True)
    for role in by_remainder[: n_cases - sum(counts.values())]:
        counts[role] += 1
    if n_cases >= 1 and counts.get(TRAIN, 0) == 0:
        donor = max((r for r in counts if r != TRAIN), key=counts.__getitem__)
        counts[donor] -= 1
        counts[TRAIN] = 1
    if n_cases >= 2 and counts[TRAIN] == n_cases:
        counts[TRAIN] -= 1
        counts["test" if "test" in counts else next(r for r in counts if r != TRAIN)] += 1
    return counts


def make_split(
    case_ids: Sequence[str],
    has_segmentation: Mapping[str, bool],
    seed: int,
    proportions: Mapping[str, float] = PAPER_PROPORTIONS,
) -> Split:
    """A seeded split. Cases without a segmentation fill ``no_ground_truth`` first (as in the paper,
    where that role is exactly the cases without one); the others are shuffled into the roles."""
    counts = role_counts(len(case_ids), proportions)
    rng = np.random.default_rng(seed)
    without = [c for c in sorted(case_ids) if not has_segmentation[c]]
    with_seg = [c for c in sorted(case_ids) if has_segmentation[c]]
    rng.shuffle(without)
    rng.shuffle(with_seg)
    split: Split = {role: [] for role in counts}
    if NO_GROUND_TRUTH in split:
        take = min(len(without), counts[NO_GROUND_TRUTH])
        split[NO_GROUND_TRUTH] = without[:take]
        without = without[take:]
    remaining = with_seg + without
    for role, count in counts.items():
        need = count - len(split[role])
        split[role] += remaining[:need]
        remaining = remaining[need:]
    return {role: sorted(ids) for role, ids in split.items()}


def save_split(split: Split, path: Path, seed: int | None = None) -> Path:
    """Write a split file atomically."""
    write_json_atomic({"seed": seed, "roles": split}, path)
    return path


def load_split(path: Path, case_ids: Sequence[str]) -> Split:
    """Read a split file and check that it names only known cases, each once."""
    try:
        content = json.loads(Path(path).read_text())
        roles = content["roles"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(path, f"not a readable split file ({error})") from error
    known = set(case_ids)
    seen: set[str] = set()
    for role, ids in roles.items():
        unknown = sorted(set(ids) - known)
        if unknown:
            raise InvalidInputError(path, f"role {role!r} names cases not in the data set: {unknown[:5]}")
        repeated = seen & set(ids)
        if repeated:
            raise InvalidInputError(path, f"cases in more than one role: {sorted(repeated)[:5]}")
        seen |= set(ids)
    if not roles.get(TRAIN):
        raise InvalidInputError(path, "the split has no training cases")
    return {role: list(ids) for role, ids in roles.items()}
