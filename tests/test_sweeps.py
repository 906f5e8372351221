"""The paper's sweeps: every job's configuration composes, and the 44 models are distinct."""

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import REPOSITORY


def sweep_jobs(experiment: str) -> list[list[str]]:
    """The override lists Hydra's basic sweeper makes from the experiment's ``hydra.sweeper.params``."""
    with initialize_config_dir(config_dir=str(REPOSITORY / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    axes = [[f"{key}={value.strip()}" for value in str(values).split(",")] for key, values in params.items()]
    return [[f"+experiment={experiment}", *job] for job in itertools.product(*axes)]


def compose_job(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPOSITORY / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize(("experiment", "jobs"), [("paper_pix2pix", 32), ("paper_brainclustering", 12)])
def test_paper_sweeps_have_the_papers_number_of_models(experiment, jobs):
    assert len(sweep_jobs(experiment)) == jobs


def test_all_44_models_compose_and_are_distinct():
    models = set()
    for experiment in ("paper_pix2pix", "paper_brainclustering"):
        for overrides in sweep_jobs(experiment):
            cfg = compose_job(overrides)
            assert cfg.baselines is None and cfg.skip_finished
            models.add(OmegaConf.to_yaml(cfg.model, resolve=True))
    assert len(models) == 44


def test_brainclustering_modes_set_mode_and_neighbours():
    cfg = compose_job(["+experiment=paper_brainclustering", "+bc_mode=search_w10", "model.macro=6"])
    assert (cfg.model.mode, cfg.model.w, cfg.model.macro) == ("search", 10, 6)
    cfg = compose_job(["+experiment=paper_pix2pix", "generator=resnet", "lambda=500", "gamma=1000"])
    assert cfg.model.generator.blocks == 6 and (cfg.model.lambda_l1, cfg.model.gamma_tumour) == (500, 1000)


@pytest.mark.parametrize("launcher", ["parallel", "slurm"])
def test_launcher_configs_compose(launcher):
    with initialize_config_dir(config_dir=str(REPOSITORY / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "Launcher" in cfg.hydra.launcher._target_
