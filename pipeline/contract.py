"""The contract every method implements, in the spirit of scikit-learn's estimators: synthesis
methods (sources -> target, T1 -> T2 by default) and segmentation methods (four contrasts -> tumour labels) alike.

Hyper-parameters are constructor arguments stored as given (and validated there); learned state is
set by :meth:`Method.fit` in attributes with a trailing underscore; :meth:`predict` checks
that the method is fitted. A fitted method saves to a folder holding ``method.json`` (its class and
hyper-parameters) and ``state.npz`` (its learned arrays): portable, no pickle. ``method.json`` names
the class by its registered name (:mod:`pipeline.registry`) and the file's format version.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.contrasts import CONTRASTS
from common.errors import InvalidInputError
from common.files import atomic_write, write_json_atomic
from datamodules.dataset import Subject
from datamodules.labels import LabelConvention
from datamodules.nifti import Volume
from datamodules.preprocessing import percentile_scale
from datamodules.standardisation import STATE_PREFIX as STANDARDISATION_STATE
from datamodules.standardisation import Standardisation
from datamodules.task import SynthesisTask
from evaluation.run_folder import RunFolder
from pipeline.registry import METHODS, SAVED_CLASS_PATHS, method_class, registered_name

METHOD_FILE = "method.json"
STATE_FILE = "state.npz"
#: The layout of ``method.json``: 1 names the method (``method``); 0, before it, named a class path
#: (``target``).
FORMAT = 1


class NotFittedError(RuntimeError):
    """``predict`` or ``save`` was called before ``fit``."""


class TaskNotSupportedError(ValueError):
    """A method that cannot do the configured synthesis task (e.g. Complementary without a T1)."""


@dataclass
class FitContext:
    """What a method may use while it fits, besides its training subjects.

    Attributes:
        validation: subjects with a T2 to monitor training on (neural methods validate on them).
        workdir: a folder of its own for checkpoints, logs and caches (the run's ``model/``).
        logger: the run's Lightning logger, or None.
    """

    validation: Sequence[Subject] = ()
    workdir: Path | None = None
    logger: Any = None
    labels: LabelConvention | None = None


class Method(ABC):
    """Fit on training subjects; predict a volume for a subject. Subclasses say which task they do
    and which modalities they read."""

    #: ``synthesis`` or ``segmentation``: how predictions are written and scored.
    task: str = ""
    #: Modalities each training subject must have, and those :meth:`predict` reads.
    training_modalities: tuple[str, ...] = ()
    inference_modalities: tuple[str, ...] = ()
    #: Whether ``fit`` learns anything; stateless methods are fitted from construction.
    learns: bool = True
    #: Whether a constant output is what the method means to give (Zeros), so that it is not
    #: reported as degenerate.
    constant_by_design: bool = False

    def fit(self, subjects: Sequence[Subject], context: FitContext | None = None) -> Method:
        """Learn from training subjects, each with :attr:`training_modalities`. ``subjects`` may load
        lazily: iterate it rather than indexing it repeatedly."""
        self._fit(subjects, context or FitContext())
        self.fitted_ = True
        return self

    def predict(self, subject: Subject) -> Volume:
        """The prediction for ``subject``, from its :attr:`inference_modalities` only."""
        self.check_fitted()
        return self._predict(subject)

    def predict_all(self, subject: Subject) -> dict[str, Volume]:
        """Every output the method makes, by name suffix: ``""`` is :meth:`predict`'s; others (such as
        BrainClustering's ``unfiltered``) are written and scored as methods of their own."""
        return {"": self.predict(subject)}

    def check_settings(self) -> None:  # noqa: B027 -- most methods check everything in their constructor
        """Build, from the hyper-parameters alone, what :meth:`fit` will build later (a trained method's
        data pipeline, Trainer and networks), so that a wrong option stops a run before any volume is
        read. Raises ValueError or TypeError naming the option."""

    def _fit(self, subjects: Sequence[Subject], context: FitContext) -> None:  # noqa: B027 -- stateless methods learn nothing
        pass

    @abstractmethod
    def _predict(self, subject: Subject) -> Volume: ...

    # -- learned state and persistence ---------------------------------------------------------

    def is_fitted(self) -> bool:
        return not self.learns or getattr(self, "fitted_", False)

    def check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load a saved model first")

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments as stored on the instance (the scikit-learn ``get_params`` rule)."""
        parameters = inspect.signature(type(self).__init__).parameters.values()
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: getattr(self, p.name) for p in parameters if p.name != "self" and p.kind in named}

    def state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save; override together with :meth:`set_state`."""
        return {}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027 -- stateless default
        pass

    def saved_arrays(self) -> dict[str, np.ndarray]:
        """Everything :meth:`save` writes to ``state.npz``: :meth:`state`, and what the contract adds."""
        return self.state()

    def restore_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """The inverse of :meth:`saved_arrays`."""
        self.set_state(arrays)

    def save(self, folder: str | Path) -> Path:
        """Save hyper-parameters and learned state to ``folder``."""
        self.check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = self.saved_arrays()
        if arrays:
            with atomic_write(folder / STATE_FILE) as temporary:
                np.savez(temporary, **arrays)
        description = {"method": registered_name(type(self)), "format": FORMAT, "arrays": sorted(arrays)}
        write_json_atomic(description | {"hyperparameters": self.hyperparameters()}, folder / METHOD_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Method:
        """Load a saved method; works on the base class too (the class is read from ``method.json``)."""
        folder = Path(folder)
        description_file = folder / METHOD_FILE
        if not description_file.exists():
            raise FileNotFoundError(f"{folder}: no saved method here (missing {METHOD_FILE})")
        description = json.loads(description_file.read_text())
        name = saved_method_name(description, description_file)
        saved_class = method_class(name)
        if not issubclass(saved_class, cls):
            raise TypeError(f"{description_file}: {name} is not a {cls.__name__}")
        method = saved_class(**description["hyperparameters"])
        state_file = folder / STATE_FILE
        expected = description.get("arrays", [])  # listed since format 1 was extended; older files list none
        if expected and not state_file.exists():
            raise InvalidInputError(state_file, f"missing: {METHOD_FILE} lists {len(expected)} saved arrays")
        if state_file.exists():
            with np.load(state_file, allow_pickle=False) as arrays:
                missing = sorted(set(expected) - set(arrays.files))
                if missing:
                    raise InvalidInputError(state_file, f"lacks the saved array(s) {', '.join(missing)}")
                method.restore_arrays({key: arrays[key] for key in arrays.files})
        method.fitted_ = True
        return method


def saved_method_name(description: dict[str, Any], description_file: Path) -> str:
    """The registered name a ``method.json`` names, in any format so far.

    Raises:
        InvalidInputError: a newer format, or a method this version does not have.
    """
    saved_format = description.get("format", 0)
    if saved_format > FORMAT:
        raise InvalidInputError(
            description_file, f"saved in format {saved_format}; this version reads formats up to {FORMAT}"
        )
    name = description["method"] if saved_format >= 1 else SAVED_CLASS_PATHS.get(description["target"])
    if name is None or name not in METHODS:
        raise InvalidInputError(description_file, f"unknown method {name or description['target']!r}")
    return name


def load_from_run(run: str | Path, kind: type[Method] = Method) -> Method:
    """The saved method of a run directory (its ``model/``) or of a model folder, checked to be a
    ``kind``.

    Raises:
        InvalidInputError: no saved method there, or one of another kind (e.g. a segmenter given
            where a synthesis model is needed).
    """
    run = Path(run)
    for folder in (run, RunFolder(run).model):
        if (folder / METHOD_FILE).exists():
            try:
                return kind.load(folder)
            except TypeError as error:
                raise InvalidInputError(folder, f"not a {kind.__name__} ({error})") from error
    raise InvalidInputError(run, f"not a run directory or model folder (no {METHOD_FILE} in it or in model/)")


class SynthesisMethod(Method):
    """Fit on training subjects (sources and target); predict the target contrast from a subject's
    sources. The task is T1 -> T2 (the paper's) unless ``source`` and ``target`` say otherwise.

    Predictions are float32 volumes with the primary source's geometry, on the project's unit scale
    of the target (:func:`datamodules.preprocessing.unit_scale`: the brain's min-max mapped to
    [0, 1]), 0 outside the brain (the primary source's brain mask).

    Sources are read on the scale of the method's intensity standardisation (:meth:`scaled`), which a
    ``nyul`` standardisation learns at :meth:`fit` and :meth:`save` keeps with the method.

    Args:
        source: the source contrasts, primary first (``t1``, ``t1ce``, ``t2``, ``flair``).
        target: the contrast to make.
        standardisation: how sources are scaled (:mod:`datamodules.standardisation`); None: the
            method's own default (:attr:`default_standardisation`).
    """

    task = "synthesis"
    default_standardisation = "percentile"

    def __init__(
        self, source: Sequence[str] = ("t1",), target: str = "t2", standardisation: str | None = "percentile"
    ) -> None:
        self.contrasts = SynthesisTask.of(source, target)
        self.source = list(self.contrasts.sources)
        self.target = self.contrasts.target
        self.standardisation = standardisation
        self.scales = Standardisation(standardisation or self.default_standardisation)
        if self.scales.learns:
            self.learns = True  # even a method that learns nothing else learns the landmarks

    def fit(self, subjects: Sequence[Subject], context: FitContext | None = None) -> Method:
        """Learn the standardisation (a first pass over the subjects, ``nyul`` only), then the method."""
        self.scales.fit(subjects, self.source)
        return super().fit(subjects, context)

    def scaled(self, subject: Subject, contrast: str) -> np.ndarray:
        """A contrast of the subject as the method reads it, on [0, 1], 0 outside the brain: a source
        on the standardisation's scale, the target on its percentile scale."""
        if contrast == self.target:
            return percentile_scale(subject[contrast].data, subject.brain)
        return self.scales.volume(subject, contrast)

    def saved_arrays(self) -> dict[str, np.ndarray]:
        return self.state() | self.scales.state()

    def restore_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        own = {key: value for key, value in arrays.items() if not key.startswith(STANDARDISATION_STATE)}
        self.scales.set_state({key: value for key, value in arrays.items() if key not in own})
        self.set_state(own)

    @property
    def training_modalities(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.contrasts.modalities

    @property
    def inference_modalities(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.contrasts.sources


class SegmentationMethod(Method):
    """Fit on training subjects with all four contrasts and a segmentation; predict a label map in
    the data set's label convention (integer volume with the T1's geometry, 0 outside the tumour)."""

    task = "segmentation"
    training_modalities = CONTRASTS
    inference_modalities = CONTRASTS
