"""What the image metrics give an output that is the real target, only blurred: how much of a
method's distance from the real T2 smoothness alone can explain.

    python bench/blur.py --data /data/brats18-dev [--sigmas 1 1.5 2] [--target t2]

Each case's real target on the percentile scale (as the methods' outputs are), Gaussian-blurred in 3-D
by ``sigma`` voxels inside the brain (a normalised convolution: the background does not darken the
edge), is scored by ``evaluation.scoring.score_prediction`` like any prediction. Prints, per sigma,
the mean and the lowest over cases of ``ssim_healthy`` and the mean of ``pct_mse_brain``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from datamodules.dataset import SynthesisDataset
from datamodules.nifti import Volume
from datamodules.preprocessing import percentile_scale
from evaluation.scoring import score_prediction


def blurred(data: np.ndarray, brain: np.ndarray, sigma: float) -> np.ndarray:
    """``data`` inside ``brain``, Gaussian-blurred by ``sigma`` voxels with only brain voxels weighed."""
    inside = brain.astype(np.float32)
    weight = ndimage.gaussian_filter(inside, sigma)
    return (ndimage.gaussian_filter(data * inside, sigma) / np.maximum(weight, 1e-6) * inside).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the BraTS 2018 development cases")
    parser.add_argument("--sigmas", nargs="+", type=float, default=[1.0, 1.5, 2.0])
    parser.add_argument("--target", default="t2")
    args = parser.parse_args(argv)
    dataset = SynthesisDataset(args.data, label_convention="brats2019", write_split=False)
    subjects = [dataset.load(case, ("t1", args.target)) for _, case in sorted(dataset.cases.items())]
    print(f"the real {args.target} blurred, {len(subjects)} cases", flush=True)
    print("| sigma (voxels) | ssim_healthy (mean) | ssim_healthy (lowest) | pct_mse_brain (mean) |")
    print("| --- | --- | --- | --- |")
    for sigma in args.sigmas:
        scores = []
        for subject in subjects:
            real = subject[args.target]
            output = blurred(percentile_scale(real.data, subject.brain), subject.brain, sigma)
            scores.append(score_prediction(Volume(output, real.affine, real.header), subject, args.target))
        ssim = [s["ssim_healthy"] for s in scores]
        pct_mse = np.mean([s["pct_mse_brain"] for s in scores])
        print(f"| {sigma:g} | {np.mean(ssim):.3f} | {np.min(ssim):.3f} | {pct_mse:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
