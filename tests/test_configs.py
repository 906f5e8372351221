"""Every model and generator config the project ships is instantiated, not only composed; every model
config honours the method contract end to end on a tiny phantom: fit, predict, save, load, predict the
same again, and a synthesis model's volume is float32 on the unit scale with zero outside the brain.
Logger configs need a Hydra run's output folder and are not covered here."""

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline.contract import FitContext, Method, SynthesisMethod, TaskNotSupportedError
from tests.conftest import REPOSITORY

CONF = REPOSITORY / "conf"
MODELS = sorted(path.stem for path in (CONF / "model").glob("*.yaml"))
GENERATORS = sorted(path.stem for path in (CONF / "generator").glob("*.yaml"))
#: Each model's CPU-sized settings (the shipped sizes are the paper's).
TINY = {
    "pix2pix": [
        "generator=unet_small",
        "generator.base_filters=4",
        "model.discriminator.base_filters=4",
        "model.constant_iterations=2",
        "model.decay_iterations=1",
        "model.data.patch_size=[32,32,32]",
        "model.data.samples_per_volume=2",
        "model.data.queue_length=2",
        "model.data.num_workers=0",
        "model.inference.device=cpu",
        "trainer=cpu",
    ],
    "segmenter": [
        "model.network.base_filters=4",
        "model.iterations=2",
        "model.data.patch_size=[32,32,32]",
        "model.data.num_workers=0",
        "model.inference.device=cpu",
        "trainer=cpu",
    ],
    "brainclustering": ["model.macro=3", "model.micro=4"],
}
#: Tasks tried in turn: the paper's, then one that every synthesis baseline can do.
TASKS = ([], ["source=[t1,t1ce,flair]"])


def composed(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"model={name}", "data=brats", "data.root=/unused", *overrides])


def build_model(name: str) -> Method:
    """The model's config instantiated with the first task it can do."""
    for task in TASKS:
        try:
            return instantiate(composed(name, [*TINY.get(name, []), *task]).model)
        except Exception as error:  # Hydra wraps the method's refusal
            if not isinstance(error.__cause__, TaskNotSupportedError):
                raise
    raise AssertionError(f"model={name} refuses every task tried")


@pytest.mark.parametrize("name", MODELS)
def test_every_model_config_fits_predicts_saves_and_loads(name, tiny_phantom, tmp_path):
    torch.manual_seed(0)
    method = build_model(name)
    modalities = method.training_modalities
    training = [tiny_phantom.load(case, modalities) for case in tiny_phantom.cases_in("train")]
    role = next(role for role in tiny_phantom.roles if role != "train")
    query = tiny_phantom.load(tiny_phantom.cases_in(role)[0], method.inference_modalities)
    method.check_settings()  # what train.py does before it reads any data
    context = FitContext(workdir=tmp_path / "model", labels=tiny_phantom.labels)
    method.fit(training, context)
    prediction = method.predict(query)
    assert prediction.shape == query.reference.shape
    np.testing.assert_array_equal(prediction.affine, query.reference.affine)
    if isinstance(method, SynthesisMethod):  # the contract's promises on every synthetic volume
        assert prediction.data.dtype == np.float32
        assert prediction.data.min() >= 0 and prediction.data.max() <= 1  # the target's unit scale
        assert not prediction.data[~query.brain].any()  # zero outside the brain
    loaded = Method.load(method.save(tmp_path / "saved"))
    assert type(loaded) is type(method) and loaded.hyperparameters() == method.hyperparameters()
    np.testing.assert_array_equal(loaded.predict(query).data, prediction.data)


@pytest.mark.parametrize("name", GENERATORS)
def test_every_generator_config_builds_a_network_that_keeps_the_shape(name):
    from lightning_modules.training import build_network

    config = dict(composed("pix2pix", [f"generator={name}", "generator.base_filters=4"]).generator)
    network = build_network(config, spatial_dims=3).eval()
    volume = torch.zeros(1, 1, 20, 18, 12)
    with torch.no_grad():
        assert network(volume).shape == volume.shape


def test_the_debug_config_keeps_its_short_training_under_an_experiment():
    """debug=default sets the trainer's values itself, so +experiment=pix2pix_cpu (which picks
    trainer=cpu) keeps them, and its run folder and logger win over train.yaml's."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["debug=default", "+experiment=pix2pix_cpu"], return_hydra_config=True)
    assert cfg.trainer.fast_dev_run == 4 and cfg.trainer.detect_anomaly and cfg.trainer.accelerator == "cpu"
    assert cfg.model.trainer.fast_dev_run == 4  # what the method hands to Lightning
    assert cfg.model.constant_iterations == 500  # the experiment's own settings stay
    assert OmegaConf.to_container(cfg.hydra.run)["dir"].startswith("outputs/debug/") and not cfg.logger
    assert cfg.data.n_subjects == 6


@pytest.mark.slow  # the paper's networks are built: 14 s for all
@pytest.mark.parametrize("experiment", sorted(path.stem for path in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_builds_its_model_and_checks_its_settings(experiment):
    """Each experiment composes and its model is built and checked as train.py does before any data
    is read (networks, Trainer and data options), for the task it is meant for."""
    cfg = composed_experiment(experiment)
    method = instantiate(cfg.model)
    method.check_settings()


def composed_experiment(experiment: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"+experiment={experiment}", "data=brats", "data.root=/unused"])
