"""OmegaConf resolvers used by the configs."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from omegaconf import OmegaConf

from common.cores import usable_cores


def wandb_offline() -> bool:
    """True when no W&B account is configured (no WANDB_API_KEY and no api.wandb.ai in ~/.netrc),
    so ``logger=wandb`` logs offline instead of failing; ``wandb sync`` uploads it later."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return False
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is None
    except (OSError, netrc.NetrcParseError):
        return True


def sweep_group() -> str | None:
    """The sweep's folder name (``paper_pix2pix``, or the sweep's date) in a Hydra multirun, so that
    the W&B runs of one sweep share a group; None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return Path(hydra_cfg.sweep.dir).name


def loader_workers(most: int = 4) -> int:
    """Data-loading processes for this machine: at most ``most``, and one core left to the training
    process (0 on a single core: the training process loads the data itself)."""
    return max(0, min(int(most), usable_cores() - 1))


for name, resolver in (
    ("wandb_offline", wandb_offline),
    ("sweep_group", sweep_group),
    ("loader_workers", loader_workers),
):
    if not OmegaConf.has_resolver(name):
        OmegaConf.register_new_resolver(name, resolver)
