"""``conf/train.yaml`` composed outside a Hydra run (the benchmarks, the cached phantom models), with
the configs' resolvers registered as ``train.py`` registers them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import pipeline.resolvers  # noqa: F401 -- the configs' resolvers
from datamodules.task import SynthesisTask

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_train(task: SynthesisTask, overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python train.py source=[...] target=... <overrides>`` would run with."""
    sources = "[" + ",".join(task.sources) + "]"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[f"source={sources}", f"target={task.target}", *overrides])
