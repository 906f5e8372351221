"""The paper's sweeps: every job's configuration composes, and the 44 models are distinct."""

import itertools
import json

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
    cfg = compose_job(["+experiment=paper_brainclustering", "+brainclustering_mode=search_w10", "model.macro=6"])
    assert (cfg.model.mode, cfg.model.w, cfg.model.macro) == ("search", 10, 6)
    cfg = compose_job(["+experiment=paper_pix2pix", "generator=resnet", "lambda=500", "gamma=1000"])
    assert cfg.model.generator.blocks == 6 and (cfg.model.lambda_l1, cfg.model.gamma_tumour) == (500, 1000)


@pytest.mark.parametrize("launcher", ["parallel", "slurm"])
def test_launcher_configs_compose(launcher):
    with initialize_config_dir(config_dir=str(REPOSITORY / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "Launcher" in cfg.hydra.launcher._target_


@pytest.mark.slow
def test_a_sweep_runs_through_submitit_and_its_rerun_into_the_same_folder_skips_finished_jobs(tmp_path):
    """The SLURM launcher's machinery (submitit) on this machine, then the README's rerun of a user's
    sweep into a fixed folder: finished jobs are skipped, not retrained. Paths stay out of folder names."""
    from datamodules.phantom import generate_phantom
    from tests.conftest import TINY_SHAPE, run

    root = generate_phantom(tmp_path / "data", n_subjects=8, shape=TINY_SHAPE, seed=2, workers=1)
    sweep = tmp_path / "sweep"
    job = ("train.py", "-m", f"hydra.sweep.dir={sweep}", "skip_finished=true", "data=brats", f"data.root={root}",
           "logger=none", "baselines=null", "model=brainclustering", "model.micro=5", "model.macro=3,4")  # fmt: skip
    run(*job, "hydra/launcher=submitit_local")
    folders = {
        macro: sweep / f"baselines=null,data=brats,model.macro={macro},model.micro=5,model=brainclustering"
        for macro in (3, 4)
    }
    summaries = {}
    for macro, folder in folders.items():
        method = json.loads((folder / "model" / "method.json").read_text())
        assert method["hyperparameters"]["macro"] == macro
        summaries[macro] = (folder / "summary.json").read_text()
        (mean,) = [
            e["pct_mse_brain"]["mean"]
            for e in json.loads(summaries[macro])["summary"]
            if (e["method"], e["role"]) == ("brainclustering", "test")
        ]
        assert 0 < mean < 0.2
    assert summaries[3] != summaries[4]
    jobs = sorted(path.name for path in sweep.iterdir() if path.is_dir() and not path.name.startswith("."))
    assert jobs == sorted(folder.name for folder in folders.values())

    modified = {macro: (folder / "model" / "state.npz").stat().st_mtime_ns for macro, folder in folders.items()}
    again = run(*job)
    output = " ".join(again.stdout.split())  # the console wraps long lines
    assert output.count("finished earlier (summary.json exists); skipped") == 2
    for macro, folder in folders.items():
        assert (folder / "summary.json").read_text() == summaries[macro]
        assert (folder / "model" / "state.npz").stat().st_mtime_ns == modified[macro]
