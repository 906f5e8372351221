"""Fit a synthesis method, predict the held-out roles, score them: ``python train.py [overrides]``."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import pipeline.resolvers  # noqa: F401 -- registers ${wandb_offline:}
from pipeline.cli import bad_input_exits
from pipeline.run import run_experiment


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    with bad_input_exits():
        run_experiment(
            cfg, Path(hydra_cfg.runtime.output_dir), hydra_cfg.runtime.choices["model"], hydra_cfg.overrides.task
        )


if __name__ == "__main__":
    main()
