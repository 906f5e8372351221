"""OmegaConf resolvers used by the configs."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from omegaconf import OmegaConf


def wandb_offline() -> bool:
    """True when no W&B account is configured (no WANDB_API_KEY and no api.wandb.ai in ~/.netrc),
    so ``logger=wandb`` logs offline instead of failing; ``wandb sync`` uploads it later."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return False
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is None
    except (OSError, netrc.NetrcParseError):
        return True


if not OmegaConf.has_resolver("wandb_offline"):
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline)
