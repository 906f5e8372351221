"""What averaging trained Pix2Pix generators gives on the real benchmark, from models already fitted:
each model of a fold alone and with a mirrored pass averaged in, and the models' mean (an ensemble of
seeds) with and without it. Nothing is trained.

    python -m bench.ensemble --data /data/brats18-dev --sources t1,t1ce,flair --fold 0 \\
        --checkpoints SEED0/models/t1+t1ce+flair/pix2pix-0-seed0/checkpoints/last.ckpt SEED1/... SEED2/... \\
        [--variants single single+mirror ensemble ensemble+mirror] [--output ensemble-f0.csv]

Each checkpoint is a Pix2Pix model of that fold (fitted on the other folds) that ``bench/real.py``
kept under its ``--output``, for example one run per seed (``SEED0`` above). The mirrored pass runs
the generator on the sources flipped along the first voxel axis (left-right in BraTS' orientation)
and flips its output back. Outputs are averaged on the network's scale, then finished as
``+experiment=pix2pix_real_cpu`` says (smoothed across slices).
Prints each variant's means over the fold's cases; ``--output`` writes the rows in ``bench/real.py``'s
``metrics.csv`` form, for ``bench/real.py --tables`` (beside a run's Complementary rows).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.real import FOLDS, build, folds_of, load_all, scored_rows
from common.errors import InvalidInputError
from common.files import write_rows_csv
from datamodules.task import SynthesisTask
from lightning_modules.training import load_weights
from pipeline.cli import bad_input_exits

VARIANTS = ("single", "single+mirror", "ensemble", "ensemble+mirror")


class Averaged(nn.Module):
    """The mean of the generators' outputs, with each also run on the input mirrored along its first
    spatial axis (and its output mirrored back) when ``mirror``."""

    def __init__(self, generators: Sequence[nn.Module], mirror: bool) -> None:
        super().__init__()
        self.generators, self.mirror = nn.ModuleList(generators), mirror

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        outputs = [generator(sources) for generator in self.generators]
        if self.mirror:
            outputs += [generator(sources.flip(2)).flip(2) for generator in self.generators]
        return torch.stack(outputs).mean(0)


def checkpoint_weights(checkpoint: Path) -> dict[str, np.ndarray]:
    """The weights in a Lightning checkpoint of a Pix2Pix fit, by name (``generator.…``, ``discriminator.…``).

    Raises:
        InvalidInputError: the file cannot be read or holds no generator.
    """
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    except (OSError, RuntimeError, pickle.UnpicklingError, KeyError, TypeError):
        raise InvalidInputError(checkpoint, "cannot be read as a Lightning checkpoint") from None
    if not any(name.startswith("generator.") for name in state):
        raise InvalidInputError(checkpoint, "holds no generator: not a Pix2Pix checkpoint")
    return {name: value.numpy() for name, value in state.items()}


def variants(generators: Sequence[nn.Module], names: Sequence[str]) -> dict[str, nn.Module]:
    """Each requested variant's averaged generator, by the label its rows get."""
    found = {}
    for name in names:
        mirror = name.endswith("+mirror")
        if name.startswith("ensemble"):
            found[name] = Averaged(generators, mirror)
        else:
            found |= {f"model{k}{'+mirror' * mirror}": Averaged([g], mirror) for k, g in enumerate(generators)}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the BraTS 2018 development cases")
    parser.add_argument("--sources", required=True, help="the models' sources, e.g. t1,t1ce,flair")
    parser.add_argument("--fold", type=int, required=True, choices=range(FOLDS))
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--output", type=Path, default=None, help="a metrics.csv to write the rows to")
    args = parser.parse_args(argv)
    task = SynthesisTask.of(args.sources.split(","), "t2")
    with bad_input_exits():
        method, generators = build("pix2pix", task), []
        for checkpoint in args.checkpoints:
            try:
                generators.append(load_weights(method.build("generator"), checkpoint_weights(checkpoint), "generator."))
            except RuntimeError:  # load_state_dict: other names or shapes
                problem = f"its generator does not fit a Pix2Pix from {', '.join(task.sources)}"
                raise InvalidInputError(checkpoint, problem) from None
        development = load_all(args.data, "brats2019", task)
    held_out = [development[case_id] for case_id in folds_of(list(development))[args.fold]]
    method.fitted_ = True
    rows = []
    print(f"{task}, fold {args.fold} ({len(held_out)} cases): variant, pct_mse_brain, ssim_healthy", flush=True)
    for label, generator in variants(generators, args.variants).items():
        method.generator_ = generator.eval()
        found, _ = scored_rows(method, label, held_out, task, args.fold)
        rows += found
        means = [np.mean([row[metric] for row in found]) for metric in ("pct_mse_brain", "ssim_healthy")]
        print(f"{label}: {means[0]:.4f} {means[1]:.4f}", flush=True)
    if args.output is not None:
        write_rows_csv(rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
