"""The methods by registered name: the names ``conf/model/`` uses and a saved model's ``method.json``
records, so that a class can move between modules without breaking a finished run or sweep.

A name maps to ``module:Class``, imported only when that method is loaded (loading BrainClustering
never imports torch).
"""

from __future__ import annotations

import importlib

#: Registered name -> where its class lives now. Moving a class means changing its line here.
METHODS: dict[str, str] = {
    "brainclustering": "clustering.brainclustering:BrainClustering",
    "closest_source": "clustering.baselines:ClosestSource",
    "complementary": "clustering.baselines:Complementary",
    "intensity_lookup": "clustering.baselines:IntensityLookup",
    "random": "clustering.baselines:RandomNoise",
    "zeros": "clustering.baselines:Zeros",
    "pix2pix": "lightning_modules.method:Pix2PixMethod",
    "segmenter": "lightning_modules.segmenter:SegmenterMethod",
}

#: Models saved before names were recorded (format 0) name their class by the dotted path it had then.
SAVED_CLASS_PATHS: dict[str, str] = {
    "clustering.brainclustering.BrainClustering": "brainclustering",
    "clustering.baselines.ClosestSource": "closest_source",
    "clustering.baselines.Complementary": "complementary",
    "clustering.baselines.IntensityLookup": "intensity_lookup",
    "clustering.baselines.RandomNoise": "random",
    "clustering.baselines.Zeros": "zeros",
    "lightning_modules.method.Pix2PixMethod": "pix2pix",
    "lightning_modules.segmenter.SegmenterMethod": "segmenter",
}


def method_class(name: str) -> type:
    """The class registered as ``name``. Raises KeyError for an unknown name."""
    module_name, _, class_name = METHODS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def registered_name(method_class_: type) -> str:
    """The name a class is registered under. Raises KeyError for a class that is not registered."""
    location = f"{method_class_.__module__}:{method_class_.__qualname__}"
    for name, registered in METHODS.items():
        if registered == location:
            return name
    raise KeyError(f"{location} is not registered in pipeline/registry.py")
