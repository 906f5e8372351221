"""How many CPU cores this process may use: one rule for every pool and thread count."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which ``taskset``, cgroups and SLURM's
    binding set), and no more than a SLURM job's allocation (``SLURM_CPUS_PER_TASK``) where one is
    set: ``os.cpu_count()`` counts the whole node."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, min(cores, int(allocated))) if allocated.isdigit() else max(1, cores)
