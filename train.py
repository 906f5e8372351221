"""Fit a synthesis method, predict the held-out roles, score them: ``python train.py [overrides]``."""

from __future__ import annotations

import shutil
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import pipeline.resolvers  # noqa: F401 -- registers the configs' resolvers
from pipeline.cli import bad_input_exits, check_model_specific_overrides


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    model_name = hydra_cfg.runtime.choices["model"]
    try:
        with bad_input_exits():
            check_model_specific_overrides(cfg, hydra_cfg.overrides.task, model_name)
            from pipeline.run import run_experiment  # torch and Lightning: only once the config is sound

            run_experiment(cfg, run_dir, model_name)
    except SystemExit:
        remove_if_unused(run_dir)
        raise


def remove_if_unused(run_dir: Path) -> None:
    """Remove a run folder that holds only what Hydra put there (a run stopped by bad input or a
    bad config before it wrote anything), so that failed commands leave no empty runs behind."""
    if run_dir.is_dir() and {path.name for path in run_dir.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
