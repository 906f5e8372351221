"""Pix2Pix speed: training steps, data loading, memory and inference. Prints numbers; not a test.

    python bench/pix2pix.py                      # on a GPU: the paper's sizes, fits one 10-minute call
    python bench/pix2pix.py --size 64 --base-filters 16    # a CPU-sized run

1. Seconds per training step (D step then G step with GAN + brain L1 + tumour MSE, through the
   Lightning loop), batch 1, patch ``--size``^3, for the UNet-128 and ResNet-6 generators, each
   precision and, for the last precision, with ``torch.compile`` too (``--compile``); median over
   ``--steps`` steps after ``--warmup`` steps. Data here is a fixed in-memory batch, so this is the
   network's cost alone. Beside each: the reference's H100 time where ``performance.md`` gives one
   and its ratio to ours, the achieved TFLOP/s (the step's convolution FLOPs counted by PyTorch's
   ``FlopCounterMode``, optimiser steps excluded) and the peak GPU memory.
2. Training throughput with real data loading: phantom volumes decoded once into the cache, random
   patches from the TorchIO queue with ``--workers`` workers; samples per second and the share of
   each step spent waiting for the next batch.
3. Seconds per 240 x 240 x 155 volume for whole-volume and sliding-window inference, including
   reading the T1 and writing the synthetic T2 (NIfTI, gzip).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules.dataset import Subject
from datamodules.nifti import load_volume, save_volume
from datamodules.patches import PatchDataModule, cache_cases
from datamodules.phantom import phantom_dataset
from datamodules.splits import TRAIN
from lightning_modules.losses import discriminator_loss
from lightning_modules.method import Pix2PixMethod
from lightning_modules.networks import PatchDiscriminator, ResNetGenerator, UNetGenerator
from lightning_modules.pix2pix import Pix2Pix

GENERATORS = {
    "unet": lambda filters: UNetGenerator(3, base_filters=filters, downsamplings=7),
    "resnet": lambda filters: ResNetGenerator(3, base_filters=filters, blocks=6),
}
#: The reference code's step on one H100 80GB at 128^3, batch 1 (shared/docs/performance.md).
REFERENCE_H100_STEP = {
    ("unet", "32"): 0.061,
    ("unet", "bf16-mixed"): 0.042,
    ("resnet", "32"): 0.317,
    ("resnet", "bf16-mixed"): 0.36,
}
GENERATOR_CONFIGS = {
    "unet": {"_target_": "lightning_modules.networks.UNetGenerator", "downsamplings": 7},
    "resnet": {"_target_": "lightning_modules.networks.ResNetGenerator", "blocks": 6},
}


class StepTimer(pl.Callback):
    """Wall time of each training step, and the wait for its batch (end of one step to start of next)."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.waits: list[float] = []
        self._end: float | None = None
        self._start = 0.0

    def _synchronise(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_index) -> None:
        self._synchronise()
        self._start = time.perf_counter()
        if self._end is not None:
            self.waits.append(self._start - self._end)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        self._synchronise()
        self._end = time.perf_counter()
        self.steps.append(self._end - self._start)


def system(generator: str, filters: int, compile: bool | str = False) -> Pix2Pix:
    return Pix2Pix(
        GENERATORS[generator](filters), PatchDiscriminator(3, base_filters=filters), gamma_tumour=100, compile=compile
    )


def step_flops(generator: str, filters: int, batch: dict[str, torch.Tensor], device: str) -> float:
    """FLOPs of one training iteration's passes (G forward, D on a real and a fake pair, both
    backward passes), counted by PyTorch on the real networks; the optimiser steps are left out."""
    from torch.utils.flop_counter import FlopCounterMode

    model = system(generator, filters).to(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    with FlopCounterMode(display=False) as counter:
        sources, real = model.source_channels(batch), batch["t2"]
        fake = model.generator(sources)
        loss_d = discriminator_loss(
            model.discriminator(torch.cat([sources, real], 1)),
            model.discriminator(torch.cat([sources, fake.detach()], 1)),
        )
        loss_d.backward()
        model.generator_losses(batch, fake)["total"].backward()
    return float(counter.get_total_flops())


def fixed_batch(size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    t1 = torch.rand(1, 1, size, size, size, generator=generator) * 2 - 1
    tumour = torch.zeros_like(t1, dtype=torch.bool)
    tumour[..., size // 4 : size // 2, size // 4 : size // 2, size // 4 : size // 2] = True
    return {"t1": t1, "t2": -t1, "brain": t1 > -0.8, "tumour": tumour}


def trainer(steps: int, precision: str, callback: pl.Callback, accelerator: str) -> pl.Trainer:
    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_steps=2 * steps,  # a D and a G optimiser step per iteration
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        benchmark=True,
        callbacks=[callback],
    )


def bench_steps(args: argparse.Namespace, accelerator: str) -> None:
    print(f"\n## Training step, batch 1, {args.size}^3 patch, {args.base_filters} base filters (median s/step)")
    print(
        "| generator | precision | compile | s/step | reference H100 | reference / ours | TFLOP/s | peak GPU memory |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    device = "cuda" if accelerator == "gpu" else "cpu"
    for generator in args.generators:
        flops = step_flops(generator, args.base_filters, fixed_batch(args.size), device)
        runs = [(precision, False) for precision in args.precisions]
        runs += [(args.precisions[-1], backend) for backend in args.compile]
        for precision, backend in runs:
            timer = StepTimer()
            batches = [fixed_batch(args.size)] * (args.warmup + args.steps)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            trainer(args.warmup + args.steps, precision, timer, accelerator).fit(
                system(generator, args.base_filters, backend), DataLoader(batches, batch_size=None)
            )
            step = float(np.median(timer.steps[args.warmup :]))
            memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else "n/a"
            reference = (
                REFERENCE_H100_STEP.get((generator, precision))
                if args.size == 128 and args.base_filters == 64
                else None
            )
            compared = f"{reference:.3f} s | {reference / step:.2f}x" if reference else "n/a | n/a"
            print(
                f"| {generator} | {precision} | {backend or 'off'} | {step:.3f} | {compared} | "
                f"{flops / step / 1e12:.3g} | {memory} |",
                flush=True,
            )


def bench_loading(args: argparse.Namespace, accelerator: str, subjects: list[Subject]) -> None:
    print(f"\n## Training with data loading ({len(subjects)} cached phantom volumes, {args.workers} workers)")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        cases = cache_cases(subjects, Path(folder), min_shape=(args.size,) * 3)
        print(f"caching: {(time.perf_counter() - start) / len(subjects):.2f} s per volume (once per run)")
        print("| generator | precision | s/step | samples/s | waiting for data |")
        print("| --- | --- | --- | --- | --- |")
        for generator in args.generators:
            precision = args.precisions[-1]
            datamodule = PatchDataModule(
                cases,
                patch_size=(args.size,) * 3,
                samples_per_volume=args.samples_per_volume,
                queue_length=4 * args.samples_per_volume,
                num_workers=args.workers,
            )
            timer = StepTimer()
            trainer(args.warmup + args.steps, precision, timer, accelerator).fit(
                system(generator, args.base_filters), datamodule=datamodule
            )
            steps = np.array(timer.steps[args.warmup :])
            waits = np.array(timer.waits[args.warmup :])
            total = steps.sum() + waits.sum()
            print(
                f"| {generator} | {precision} | {np.median(steps):.3f} | {len(steps) / total:.1f} | "
                f"{100 * waits.sum() / total:.1f} % |",
                flush=True,
            )


def bench_inference(args: argparse.Namespace, subject_file: Path) -> None:
    print("\n## Inference on a 240 x 240 x 155 volume, reading and writing the NIfTI included (median s)")
    print("| generator | mode | precision | s/volume |")
    print("| --- | --- | --- | --- |")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as folder:
        for generator in args.generators:
            for mode in ("whole", "sliding_window"):
                for precision in args.precisions:
                    method = Pix2PixMethod(
                        {**GENERATOR_CONFIGS[generator], "base_filters": args.base_filters},
                        {"_target_": "lightning_modules.networks.PatchDiscriminator"},
                        inference={"mode": mode, "precision": precision, "device": device, "batch_size": 2},
                    )
                    method.fitted_ = True

                    def one_volume(method: Pix2PixMethod = method) -> None:
                        t1 = load_volume(subject_file)
                        save_volume(method.predict(Subject("bench", {"t1": t1})), Path(folder) / "t2.nii.gz")

                    one_volume()  # warm-up (cudnn autotuning, allocations)
                    times = []
                    for _ in range(args.inference_repeats):
                        start = time.perf_counter()
                        one_volume()
                        times.append(time.perf_counter() - start)
                    print(f"| {generator} | {mode} | {precision} | {np.median(times):.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    parser.add_argument("--size", type=int, default=128 if gpu else 64, help="training patch side")
    parser.add_argument("--base-filters", type=int, default=64 if gpu else 16)
    parser.add_argument("--generators", nargs="+", default=["unet", "resnet"], choices=sorted(GENERATORS))
    default_precisions = ["32", "bf16-mixed"] if gpu else ["32"]  # the two the reference was timed in
    parser.add_argument("--precisions", nargs="+", default=default_precisions)
    parser.add_argument("--steps", type=int, default=20 if gpu else 5)
    parser.add_argument("--warmup", type=int, default=5 if gpu else 2)
    parser.add_argument("--subjects", type=int, default=8, help="phantom volumes for the data-loading test")
    parser.add_argument("--samples-per-volume", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4 if gpu else 1)
    parser.add_argument("--inference-repeats", type=int, default=3 if gpu else 1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["steps", "loading", "inference"])
    parser.add_argument(
        "--compile", nargs="*", default=["inductor"] if gpu else [], help="torch.compile backends to time as well"
    )
    args = parser.parse_args()
    accelerator = "gpu" if gpu else "cpu"
    device = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"# Pix2Pix benchmark on {device}; torch {torch.__version__}, Lightning {pl.__version__}")

    if "steps" not in args.skip:
        bench_steps(args, accelerator)
    if "loading" in args.skip and "inference" in args.skip:
        return
    dataset = phantom_dataset(n_subjects=max(args.subjects, 2), shape=(240, 240, 155), seed=0)
    cases = [dataset.cases[case_id] for case_id in sorted(dataset.cases)]
    if "loading" not in args.skip:
        training = [dataset.load(case, ("t1", "t2")) for case in cases if case.case_id in dataset.split[TRAIN]]
        bench_loading(args, accelerator, training or [dataset.load(cases[0], ("t1", "t2"))])
    if "inference" not in args.skip:
        bench_inference(args, cases[0].path("t1"))


if __name__ == "__main__":
    main()
