"""Models that need no training data: a method fitted on the embedded phantom on first use, kept in
the cache folder (:func:`common.files.cache_root` ``/models``) and reused after, with its provenance
(config, seed, commit) beside it. ``synthesize.py phantom[:<model>]`` uses them.

A cache entry is a folder named by the model, the task and a hash of everything that decides the
fitted model (the resolved model and data configs and the seed): ``model/`` (a saved method) and
``provenance.json``, written last. It is built in a ``.partial`` folder and renamed into place, so
an entry is complete or absent; one that does not load, or whose provenance does not match its name,
is rebuilt, not trusted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from common.errors import ConfigError
from common.files import cache_root, write_json_atomic
from datamodules.dataset import LazySubjects, SynthesisDataset
from datamodules.task import SynthesisTask
from pipeline.config import compose_train
from pipeline.contract import FORMAT, FitContext, SynthesisMethod, TaskNotSupportedError, load_from_run
from pipeline.run import build

REPOSITORY = Path(__file__).resolve().parents[1]
PHANTOM = "phantom"
PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class PhantomRecipe:
    """How one method is fitted on the phantom: the phantom (a ``conf/data`` config), Hydra overrides
    of ``conf/train.yaml`` that choose and size the method, and about how many minutes the first use
    takes on 2 cores, the phantom's generation included."""

    data: str
    overrides: tuple[str, ...]
    minutes: float


#: Each method on the phantom that did best for it on real cases (docs/phantom.md): the randomised one
#: for the intensity lookup; the plain one for BrainClustering and Pix2Pix, which it did not help.
#: Pix2Pix keeps the real recipe's first loss and filter, with which it was measured there.
RECIPES: dict[str, PhantomRecipe] = {
    "brainclustering": PhantomRecipe("phantom", ("model=brainclustering",), 4),
    "intensity_lookup": PhantomRecipe("phantom_randomised", ("model=intensity_lookup",), 6),
    "pix2pix": PhantomRecipe(
        "phantom",
        (
            "model=pix2pix",
            "+experiment=pix2pix_real_cpu",
            "model.lambda_ssim=0",
            "model.inference.slice_sigma=0",
            "model.inference.median_filter=true",
        ),
        15,
    ),
}
DEFAULT_MODEL = "pix2pix"


def phantom_model_name(run: str) -> str | None:
    """The model a RUN argument names (``phantom``: the default one; ``phantom:<model>``), or None
    when it is not a phantom model (a path: write ``./phantom`` for a folder of that name).

    Raises:
        ConfigError: ``phantom:`` with a model that has no phantom recipe.
    """
    if run == PHANTOM:
        return DEFAULT_MODEL
    prefix, colon, model = run.partition(":")
    if prefix != PHANTOM or not colon:
        return None
    if model not in RECIPES:
        raise ConfigError(f"{run}: no phantom model {model!r}; the phantom models are {', '.join(RECIPES)}")
    return model


def phantom_config(model: str, task: SynthesisTask, overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/train.yaml`` composed for ``model`` fitted on the phantom for ``task``; ``overrides``
    last (e.g. ``data.randomise.contrast=0.2``)."""
    recipe = RECIPES[model]
    try:
        return compose_train(task, [f"data={recipe.data}", *recipe.overrides, *overrides])
    except Exception as error:  # Hydra's own errors: a key that does not exist, a bad value
        raise ConfigError(f"phantom model {model}: {error}") from None


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """Everything that decides the fitted model: the resolved model and data configs (where the
    phantom is kept aside) and the seed."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    data.pop("root", None)
    return {"model": OmegaConf.to_container(cfg.model, resolve=True), "data": data, "seed": cfg.seed, "format": FORMAT}


def entry_folder(model: str, task: SynthesisTask, cfg: DictConfig) -> tuple[Path, str]:
    """(the cache entry's folder, the full hash in its name)."""
    key = hashlib.sha256(json.dumps(fingerprint(cfg), sort_keys=True).encode()).hexdigest()
    name = f"phantom-{model}-{'+'.join(task.sources)}-to-{task.target}-{key[:12]}"
    return cache_root() / "models" / name, key


def source_version() -> str | None:
    """The commit the code was run from (``-dirty`` with local changes), or None outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if changes else "")


def load_entry(folder: Path, key: str, task: SynthesisTask) -> SynthesisMethod:
    """The cached model of ``folder``, checked against the hash its name promises and the task.

    Raises:
        Exception: anything that makes the entry untrustworthy (the caller rebuilds it).
    """
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    if provenance.get("key") != key:
        raise ValueError(f"{PROVENANCE_FILE} names another model ({str(provenance.get('key'))[:12]})")
    method = load_from_run(folder / "model", SynthesisMethod)
    assert isinstance(method, SynthesisMethod)
    if method.contrasts != task:
        raise ValueError(f"the saved model does {method.contrasts}, not {task}")
    return method


def fit_entry(model: str, task: SynthesisTask, cfg: DictConfig, folder: Path, key: str) -> SynthesisMethod:
    """Fit the model on every phantom subject and write the cache entry ``folder`` (atomically)."""
    method = build(cfg.model, "model")
    method.check_settings()
    dataset: SynthesisDataset = build(cfg.data, "data")
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    loader = functools.partial(dataset.load, modalities=method.training_modalities)
    subjects = LazySubjects(loader, list(dataset.cases.values()), description=f"Fitting {model} on the phantom")
    started = time.perf_counter()
    try:
        method.fit(subjects, FitContext(workdir=partial / "work", labels=dataset.labels))
        method.save(partial / "model")
        shutil.rmtree(partial / "work", ignore_errors=True)
        provenance = {
            "model": model,
            "task": method.contrasts.record,
            "key": key,
            "seed": cfg.seed,
            "commit": source_version(),
            "fitted_on": f"{len(subjects)} phantom subjects in {dataset.root}",
            "fit_seconds": round(time.perf_counter() - started, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": {"python": platform.python_version(), "torch": torch.__version__},
            "config": fingerprint(cfg),
        }
        write_json_atomic(provenance, partial / PROVENANCE_FILE)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)  # a broken entry, removed only now that its successor is ready
        try:
            os.replace(partial, folder)
        except OSError:  # another process put its entry there first: the same model, kept
            if not folder.exists():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return method


def phantom_model(
    model: str, task: SynthesisTask, overrides: Sequence[str] = (), say: Callable[[str], None] = print
) -> SynthesisMethod:
    """The phantom model ``model`` for ``task``: loaded from the cache, or (first use, or a broken
    entry) fitted on the phantom and cached; ``say`` tells the user which.

    Raises:
        ConfigError: the model cannot do the task, or an override is wrong.
    """
    cfg = phantom_config(model, task, overrides)
    folder, key = entry_folder(model, task, cfg)
    if folder.exists():
        try:
            method = load_entry(folder, key, task)
            say(f"phantom model: {model} for {task}, from {folder}")
            return method
        except Exception as error:  # anything wrong with an entry means fitting it again
            say(f"phantom model: the cache entry {folder} is broken ({error}); fitting it again")
    say(
        f"phantom model: {model} for {task} is fitted on the embedded phantom on first use (about "
        f"{RECIPES[model].minutes:g} min on 2 cores, the phantom's generation included) and kept in {folder}"
    )
    try:
        return fit_entry(model, task, cfg, folder, key)
    except TaskNotSupportedError as error:
        raise ConfigError(f"phantom:{model}: {error}") from None
