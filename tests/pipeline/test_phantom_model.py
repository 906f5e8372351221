"""Phantom models: fitted on first use, cached with their provenance, reused, rebuilt when broken;
and ``synthesize.py phantom`` around them."""

import json
import shutil

import numpy as np
import pytest

from common.errors import ConfigError
from datamodules.dataset import Subject
from datamodules.nifti import load_volume, save_volume
from datamodules.phantom_randomisation import PhantomRandomisation
from datamodules.task import SynthesisTask
from pipeline.phantom_model import DEFAULT_MODEL, RECIPES, phantom_config, phantom_model, phantom_model_name
from pipeline.registry import method_class
from pipeline.run import build
from synthesize import main as synthesize
from tests.conftest import TINY_SHAPE, ball_volume

T1_TO_T2 = SynthesisTask.of(["t1"], "t2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Overrides for a four-subject phantom at 24 x 24 x 16, generated once for the module (where the
    phantom is kept is not part of a phantom model's identity)."""
    root = tmp_path_factory.mktemp("phantom")
    return ("data.n_subjects=4", f"data.shape=[{','.join(map(str, TINY_SHAPE))}]", f"data.root={root}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRI_SYNTHESIS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def only_entry(cache):
    entries = list(cache.iterdir())
    assert len(entries) == 1, entries
    return entries[0]


def prediction(method):
    return method.predict(Subject("probe", {"t1": ball_volume(TINY_SHAPE)})).data


def test_the_first_use_fits_and_keeps_the_model_with_its_provenance_and_later_uses_load_it(cache, tiny):
    said = []
    first = phantom_model("brainclustering", T1_TO_T2, tiny, say=said.append)
    assert "fitted on the embedded phantom on first use" in said[-1]
    entry = only_entry(cache)
    provenance = json.loads((entry / "provenance.json").read_text())
    assert entry.name == f"phantom-brainclustering-t1-to-t2-{provenance['key'][:12]}"
    assert provenance["seed"] == 0 and provenance["task"] == {"source": ["t1"], "target": "t2"}
    assert provenance["config"]["data"]["n_subjects"] == 4
    assert "commit" in provenance and provenance["fitted_on"].startswith("4 phantom subjects")
    assert not list(cache.glob("*.partial-*"))

    again = phantom_model("brainclustering", T1_TO_T2, tiny, say=said.append)
    assert said[-1] == f"phantom model: brainclustering for t1 -> t2, from {entry}"
    np.testing.assert_array_equal(prediction(again), prediction(first))

    shutil.rmtree(cache)  # fitted again from nothing: the same model
    refitted = phantom_model("brainclustering", T1_TO_T2, tiny, say=said.append)
    np.testing.assert_array_equal(prediction(refitted), prediction(first))


@pytest.mark.parametrize("damage", ["state removed", "provenance garbled", "another model's provenance"])
def test_a_broken_cache_entry_is_fitted_again_not_trusted(cache, tiny, damage):
    expected = prediction(phantom_model("brainclustering", T1_TO_T2, tiny, say=lambda _: None))
    entry = only_entry(cache)
    if damage == "state removed":
        (entry / "model" / "state.npz").unlink()
    elif damage == "provenance garbled":
        (entry / "provenance.json").write_text("{")
    else:
        provenance = json.loads((entry / "provenance.json").read_text())
        (entry / "provenance.json").write_text(json.dumps(provenance | {"key": "0" * 64}))
    said = []
    rebuilt = phantom_model("brainclustering", T1_TO_T2, tiny, say=said.append)
    assert said[0].startswith(f"phantom model: the cache entry {entry} is broken (")
    assert only_entry(cache) == entry and (entry / "model" / "state.npz").exists()
    np.testing.assert_array_equal(prediction(rebuilt), expected)


def test_run_names_choose_a_phantom_model_or_a_path():
    assert phantom_model_name("phantom") == DEFAULT_MODEL == "pix2pix"
    assert phantom_model_name("phantom:intensity_lookup") == "intensity_lookup"
    assert phantom_model_name("./phantom") is None
    assert phantom_model_name("runs/phantom:x") is None
    with pytest.raises(ConfigError, match="phantom:segmenter: no phantom model 'segmenter'; the phantom models are"):
        phantom_model_name("phantom:segmenter")


@pytest.mark.parametrize("model", sorted(RECIPES))
def test_every_recipe_composes_and_builds_its_method_and_phantom_options(model):
    cfg = phantom_config(model, T1_TO_T2)
    method = build(cfg.model, "model")
    method.check_settings()
    assert type(method) is method_class(model)
    randomise = PhantomRandomisation.of(cfg.data.randomise)
    assert randomise.active == (RECIPES[model].data == "phantom_randomised")


def test_a_task_the_model_cannot_do_is_refused_before_any_phantom_is_made(cache, tiny):
    task = SynthesisTask.of(["t1", "flair"], "t2")
    with pytest.raises(ConfigError, match="IntensityLookup maps one source contrast"):
        phantom_model("intensity_lookup", task, tiny, say=lambda _: None)
    assert not cache.parent.exists() or not any(cache.parent.iterdir())


def test_synthesize_phantom_writes_outputs_with_the_inputs_geometry(cache, tiny, tmp_path, capsys):
    scans = tmp_path / "scans"
    save_volume(ball_volume(TINY_SHAPE), scans / "a.nii.gz")
    assert synthesize(["phantom:brainclustering", str(scans), str(tmp_path / "out"), "--override", *tiny]) == 0
    output = load_volume(tmp_path / "out" / "a_t2syn.nii.gz")
    source = load_volume(scans / "a.nii.gz")
    np.testing.assert_array_equal(output.affine, source.affine)
    assert output.data.shape == TINY_SHAPE and output.data.max() > 0
    assert "wrote 1 file(s)" in capsys.readouterr().out


def test_synthesize_checks_the_input_before_fitting_a_phantom_model(cache, tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        synthesize(["phantom", str(tmp_path / "missing"), str(tmp_path / "out"), "--override", *tiny])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: input not found"
    assert not cache.exists()


def test_synthesize_refuses_task_options_with_a_trained_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        synthesize([str(tmp_path / "run"), str(tmp_path), str(tmp_path / "out"), "--target", "flair"])
    assert stopped.value.code == 2
    assert "--source, --target and --override are for phantom models" in capsys.readouterr().err
