"""Saved models name their method by its registered name and a format version."""

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from clustering.baselines import Complementary
from common.errors import InvalidInputError
from datamodules.dataset import Subject
from pipeline.contract import FORMAT, METHOD_FILE, STATE_FILE, Method
from pipeline.registry import METHODS, SAVED_CLASS_PATHS, method_class, registered_name
from tests.conftest import REPOSITORY, make_volume


def test_every_model_config_instantiates_the_class_registered_under_its_name():
    configs = {path.stem: OmegaConf.load(path)._target_ for path in (REPOSITORY / "conf" / "model").glob("*.yaml")}
    assert sorted(configs) == sorted(METHODS)
    for name, target in configs.items():
        registered = method_class(name)
        assert issubclass(registered, Method)
        assert target == f"{registered.__module__}.{registered.__qualname__}"
        assert registered_name(registered) == name


def test_a_saved_model_names_its_method_and_format(tmp_path):
    folder = Complementary().fit([]).save(tmp_path / "model")
    description = json.loads((folder / METHOD_FILE).read_text())
    assert description["method"] == "complementary" and description["format"] == FORMAT == 1
    assert "target" not in description


@pytest.mark.parametrize("class_path", sorted(SAVED_CLASS_PATHS))
def test_a_model_saved_before_names_still_loads(class_path, tmp_path):
    """Format 0 named the class by its module path; every path saved so far maps to a name."""
    name = SAVED_CLASS_PATHS[class_path]
    assert name in METHODS
    if name != "complementary":
        return  # the others need learned state to load; their mapping is what is checked
    (tmp_path / METHOD_FILE).write_text(json.dumps({"target": class_path, "hyperparameters": {"source": ["t1"]}}))
    assert type(Method.load(tmp_path)) is Complementary


@pytest.mark.parametrize(
    ("description", "problem"),
    [
        ({"method": "complementary", "format": FORMAT + 1, "hyperparameters": {}}, "format 2"),
        ({"method": "deep_magic", "format": FORMAT, "hyperparameters": {}}, "unknown method 'deep_magic'"),
        ({"target": "somewhere.Else", "hyperparameters": {}}, "unknown method 'somewhere.Else'"),
    ],
)
def test_a_newer_format_or_an_unknown_method_is_refused_naming_the_file(description, problem, tmp_path):
    (tmp_path / METHOD_FILE).write_text(json.dumps(description))
    with pytest.raises(InvalidInputError, match=problem) as raised:
        Method.load(tmp_path)
    assert str(tmp_path / METHOD_FILE) in str(raised.value)


def test_a_saved_model_whose_arrays_are_gone_is_refused_naming_the_file(tmp_path):
    """``method.json`` lists the arrays saved beside it, so that a lost or truncated state is an error
    rather than a model that loads without what it learned."""
    brain = np.zeros((12, 12, 12))
    brain[2:-2, 2:-2, 2:-2] = np.arange(1.0, 513.0).reshape(8, 8, 8)
    case = Subject("case", {"t1": make_volume(brain), "t2": make_volume(brain)})
    folder = Complementary(standardisation="nyul").fit([case]).save(tmp_path / "model")
    listed = json.loads((folder / METHOD_FILE).read_text())["arrays"]
    assert listed and all(name.startswith("standardisation_") for name in listed)
    (folder / STATE_FILE).unlink()
    with pytest.raises(InvalidInputError, match=f"{folder / STATE_FILE}: missing: {METHOD_FILE} lists"):
        Method.load(folder)
