"""Pix2Pix data, inference and training on tiny volumes, on the CPU."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from skimage.metrics import structural_similarity
from torch.utils.data import DataLoader

from datamodules.dataset import Subject
from datamodules.patches import (
    PatchDataModule,
    cache_case,
    from_network_scale,
    network_inputs,
    to_network_scale,
    torchio_subject,
)
from datamodules.preprocessing import median_per_axial_slice, smooth_across_slices
from lightning_modules.inference import InferenceSettings, synthesise
from lightning_modules.losses import masked_l1, masked_mse, masked_structural_dissimilarity
from lightning_modules.method import Pix2PixMethod
from lightning_modules.networks import PatchDiscriminator, UNetGenerator
from lightning_modules.pix2pix import Pix2Pix
from pipeline.contract import SynthesisMethod
from tests.conftest import make_volume

SMALL_UNET = {"_target_": "lightning_modules.networks.UNetGenerator", "base_filters": 4, "downsamplings": 5}
SMALL_DISCRIMINATOR = {"_target_": "lightning_modules.networks.PatchDiscriminator", "base_filters": 4}


def head_subject(case_id: str = "case", shape=(30, 28, 20), seed: int = 0) -> Subject:
    """An ellipsoidal 'brain' on a zero background with two tissues; T2 inverts T1's contrast."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    radius = np.sqrt(
        (((grid - centre[:, None, None, None]) / (np.array(shape)[:, None, None, None] / 2.5)) ** 2).sum(0)
    )
    brain, inner = radius < 1, radius < 0.5
    t1 = np.where(brain, 300.0, 0) + np.where(inner, 400.0, 0) + brain * rng.normal(0, 5, shape)
    t2 = np.where(brain, 900.0, 0) - np.where(inner, 500.0, 0) + brain * rng.normal(0, 5, shape)
    segmentation = np.zeros(shape, dtype=np.int16)
    segmentation[12:15, 12:15, 8:11] = 1
    return Subject(
        case_id,
        {"t1": make_volume(t1.astype(np.float32)), "t2": make_volume(t2.astype(np.float32))},
        segmentation=make_volume(segmentation),
    )


class Negate(torch.nn.Module):
    """A 'generator' with a known output (-x), of any dimension."""

    stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def test_network_inputs_scale_to_minus_one_one():
    arrays = network_inputs(head_subject())
    brain = arrays["brain"]
    for channel in ("t1", "t2"):
        assert arrays[channel][~brain].max() == -1 and arrays[channel][brain].max() == pytest.approx(1)
    assert arrays["tumour"].sum() == 27
    np.testing.assert_allclose(from_network_scale(to_network_scale(np.array([0.0, 0.25, 1.0]))), [0, 0.25, 1])


def test_cache_crops_to_the_brain_keeps_world_positions_and_is_reused(tmp_path):
    subject = head_subject()
    case = cache_case(subject, tmp_path, margin=2, min_shape=(32, 8, 8))
    t1 = case.array("t1")
    assert t1.dtype == np.float16 and case.array("brain").dtype == np.uint8
    assert t1.shape[0] == 32 and t1.shape[1] < subject["t1"].shape[1]  # padded up to 32, cropped in y
    # The crop's affine maps its voxel (0, 0, 0) to the world position of the same T1 voxel.
    affine = np.load(case.folder / "affine.npy")
    brain_voxels = np.argwhere(case.array("brain"))
    original = np.argwhere(network_inputs(subject)["brain"])
    world_crop = affine[:3, :3] @ brain_voxels[0] + affine[:3, 3]
    world_full = subject["t1"].affine[:3, :3] @ original[0] + subject["t1"].affine[:3, 3]
    np.testing.assert_allclose(world_crop, world_full)
    assert cache_case(subject, tmp_path, margin=2, min_shape=(32, 8, 8)).folder == case.folder
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("spatial_dims", [3, 2])
def test_datamodule_patches(tmp_path, spatial_dims):
    cases = [cache_case(head_subject(f"c{i}", seed=i), tmp_path, min_shape=(16, 16, 16)) for i in range(2)]
    datamodule = PatchDataModule(
        cases, patch_size=(16, 16, 16), spatial_dims=spatial_dims, samples_per_volume=3, queue_length=6, num_workers=0
    )
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 6  # 2 volumes x 3 patches, batch size 1
    expected = (1, 1, 16, 16, 16) if spatial_dims == 3 else (1, 1, 16, 16)
    for batch in batches:
        assert batch["t1"].shape == expected and batch["t1"].dtype == torch.float32
        assert batch["brain"].dtype == torch.bool and batch["tumour"].shape == expected
        # Flips move T1, T2 and masks together: T2 stays -1 wherever the T1 is background.
        assert torch.all(batch["t2"][~batch["brain"]] == -1)


@pytest.mark.parametrize("spatial_dims", [3, 2])
@pytest.mark.parametrize("mode", ["whole", "sliding_window"])
def test_inference_returns_the_input_shape_and_blends_without_seams(mode, spatial_dims):
    volume = np.random.default_rng(0).uniform(-1, 1, (21, 18, 13)).astype(np.float32)
    settings = InferenceSettings(mode=mode, patch_size=(8, 8, 8), overlap=(4, 4, 4), batch_size=3)
    output = synthesise(Negate(), volume, spatial_dims, settings)
    assert output.shape == volume.shape and output.dtype == np.float32
    # The generator is -x, so any seam or misplaced patch would show as a difference.
    np.testing.assert_allclose(output, -volume, atol=1e-5)


def test_inference_settings_are_checked():
    with pytest.raises(ValueError, match="mode"):
        InferenceSettings(mode="tiles")
    with pytest.raises(ValueError, match="overlap"):
        InferenceSettings(patch_size=(8, 8, 8), overlap=(8, 4, 4))


def test_stochastic_inference_runs_in_training_mode_and_restores_eval():
    torch.manual_seed(0)
    generator = UNetGenerator(3, base_filters=4, downsamplings=6, dropout=True).eval()  # dropout at level 4
    volume = np.random.default_rng(0).uniform(-1, 1, (16, 16, 16)).astype(np.float32)
    stochastic = InferenceSettings(stochastic=True)
    first, second = (synthesise(generator, volume, 3, stochastic) for _ in range(2))
    assert not np.array_equal(first, second)  # dropout is on
    deterministic = [synthesise(generator, volume, 3, InferenceSettings()) for _ in range(2)]
    np.testing.assert_array_equal(*deterministic)
    assert not generator.training


def as_batch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Network input arrays as a batch of one: {channel: (1, 1, *S)}."""
    return {k: torch.from_numpy(np.asarray(v))[None, None] for k, v in arrays.items()}


def fit_on_one_batch(system: Pix2Pix, batch: dict[str, torch.Tensor], iterations: int) -> pl.Trainer:
    """``iterations`` Lightning training iterations (a D and a G optimiser step each) on ``batch``."""
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=2 * iterations, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(system, train_dataloaders=DataLoader([batch] * iterations, batch_size=None))
    return trainer


def test_a_few_dozen_steps_overfit_one_pair():
    """Training through the Lightning loop (manual optimisation, D then G) lowers the brain L1."""
    torch.manual_seed(0)
    batch = as_batch(network_inputs(head_subject(shape=(32, 32, 32))))
    system = Pix2Pix(
        UNetGenerator(3, base_filters=8, downsamplings=5, dropout=False),
        PatchDiscriminator(3, base_filters=4),
        lambda_l1=100,
        learning_rate=2e-3,
        constant_iterations=40,
        decay_iterations=0,
    )

    def brain_l1() -> float:
        with torch.no_grad():
            system.generator.eval()
            value = masked_l1(system.generator(batch["t1"]), batch["t2"], batch["brain"]).item()
            system.generator.train()
            return value

    before = brain_l1()
    trainer = fit_on_one_batch(system, batch, iterations=40)
    assert trainer.global_step == 80  # two optimiser steps (D, G) per iteration
    assert brain_l1() < 0.5 * before


def untrained(method: Pix2PixMethod) -> Pix2PixMethod:
    """The method with freshly initialised weights, as if fitted (for geometry and persistence checks)."""
    method.set_state({name: tensor.numpy() for name, tensor in method.build("generator").state_dict().items()})
    method.fitted_ = True
    return method


def test_method_predicts_with_the_t1_geometry_and_round_trips(tmp_path):
    subject = head_subject()
    method = untrained(Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, inference={"mode": "whole", "device": "cpu"}))
    prediction = method.predict(subject)
    assert prediction.shape == subject["t1"].shape and prediction.data.dtype == np.float32
    np.testing.assert_array_equal(prediction.affine, subject["t1"].affine)
    assert np.all(prediction.data[~subject.brain] == 0) and prediction.data.max() <= 1
    loaded = SynthesisMethod.load(method.save(tmp_path / "model"))
    assert isinstance(loaded, Pix2PixMethod) and loaded.hyperparameters() == method.hyperparameters()
    np.testing.assert_array_equal(loaded.predict(subject).data, prediction.data)


def test_median_filter_option_adds_the_unfiltered_output():
    settings = {"median_filter": True, "device": "cpu"}
    method = untrained(Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, inference=settings))
    outputs = method.predict_all(head_subject())
    assert set(outputs) == {"", "unfiltered"}
    assert not np.array_equal(outputs[""].data, outputs["unfiltered"].data)


def test_bad_network_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="downsamplings"):
        Pix2PixMethod({**SMALL_UNET, "downsamplings": 2}, SMALL_DISCRIMINATOR)


# -- the GPU path's options, checked on the CPU -------------------------------------------------


def one_step(**options) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """G's loss terms after one Lightning training iteration (D then G) from fixed weights and data,
    and the generator's weights after it."""
    torch.manual_seed(0)
    batch = as_batch(network_inputs(head_subject(shape=(32, 32, 32))))
    system = Pix2Pix(
        UNetGenerator(3, base_filters=4, downsamplings=5, dropout=False),
        PatchDiscriminator(3, base_filters=4),
        constant_iterations=2,
        decay_iterations=0,
        **options,
    )
    fit_on_one_batch(system, batch, iterations=1)
    with torch.no_grad():
        terms = system.generator_losses(batch, system.generator(system.source_channels(batch)))
    weights = {k: v.detach().contiguous().clone() for k, v in system.generator.state_dict().items()}
    return {k: float(v) for k, v in terms.items()}, weights


@pytest.mark.parametrize(
    "options",
    [{"fused_adam": True}, {"channels_last": True}, {"compile": "eager"}],
    ids=["fused_adam", "channels_last", "compile"],
)
def test_speed_options_train_to_the_same_weights_and_losses(options):
    reference_terms, reference_weights = one_step(fused_adam=False, channels_last=False)
    terms, weights = one_step(**options)
    assert terms == pytest.approx(reference_terms, rel=1e-4, abs=1e-6)
    assert weights.keys() == reference_weights.keys()  # compiled networks save under the same names
    # Adam moves a weight by about the learning rate whatever its gradient's size, so a gradient that
    # is zero up to rounding (summed in another order) may move it either way: 2 lr per step at most.
    for name, value in weights.items():
        torch.testing.assert_close(value, reference_weights[name], rtol=0, atol=2 * 2e-4 * 2)


def test_speed_options_default_to_the_accelerator_and_are_applied():
    system = Pix2Pix(UNetGenerator(3, base_filters=4, downsamplings=5), PatchDiscriminator(3, base_filters=4))
    assert system.on_gpu_or(None) is False and system.memory_format == torch.contiguous_format  # on a CPU
    optimisers, _ = system.configure_optimizers()
    assert not optimisers[0].defaults["fused"]
    fast = Pix2Pix(UNetGenerator(3, base_filters=4, downsamplings=5), PatchDiscriminator(3, base_filters=4),
                   channels_last=True, fused_adam=True)  # fmt: skip
    optimisers, _ = fast.configure_optimizers()
    assert optimisers[0].defaults["fused"] and fast.memory_format == torch.channels_last_3d
    weight = next(p for p in fast.generator.parameters() if p.dim() == 5 and p.shape[1] > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()


def test_masked_losses_are_zero_on_an_empty_mask_and_keep_the_graph():
    output = torch.tensor([[0.5, -0.5], [1.0, 0.0]], requires_grad=True)
    target = torch.zeros(2, 2)
    mask = torch.tensor([[True, True], [False, False]])
    assert float(masked_l1(output, target, mask)) == pytest.approx(0.5)  # (0.5 + 0.5) / 2
    assert float(masked_mse(output, target, mask)) == pytest.approx(0.25)
    empty = masked_mse(output, target, torch.zeros(2, 2, dtype=torch.bool))
    empty.backward()
    assert float(empty) == 0 and output.grad is not None and float(output.grad.abs().sum()) == 0


def test_training_starts_from_another_runs_generator_and_discriminator(tmp_path):
    """init_from: the saved generator, and the discriminator of the run's last checkpoint."""
    torch.manual_seed(1)
    earlier = untrained(Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR))
    folder = earlier.save(tmp_path / "earlier")
    discriminator = earlier.build("discriminator")
    (folder / "checkpoints").mkdir()
    state = {f"discriminator.{name}": value for name, value in discriminator.state_dict().items()}
    torch.save({"state_dict": state}, folder / "checkpoints" / "last.ckpt")
    method = Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, init_from=str(folder))
    method.check_settings()
    system = method.initial_system()
    for name, value in earlier.generator_.state_dict().items():
        torch.testing.assert_close(system.generator.state_dict()[name], value)
    for name, value in discriminator.state_dict().items():
        torch.testing.assert_close(system.discriminator.state_dict()[name], value)
    fresh = Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR).initial_system()
    assert not torch.equal(
        fresh.generator.state_dict()["encoder.0.weight"], system.generator.state_dict()["encoder.0.weight"]
    )


def test_init_from_a_run_whose_networks_do_not_fit_is_refused_naming_it(tmp_path):
    from clustering.baselines import Complementary
    from datamodules.nifti import InvalidInputError

    folder = untrained(Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR)).save(tmp_path / "earlier")
    wider = {**SMALL_UNET, "base_filters": 8}
    with pytest.raises(ValueError, match=r"init_from: .*earlier: its generator does not fit this one \(generator\."):
        Pix2PixMethod(wider, SMALL_DISCRIMINATOR, init_from=str(folder)).check_settings()
    three_sources = Pix2PixMethod(
        SMALL_UNET, SMALL_DISCRIMINATOR, source=["t1", "t1ce", "flair"], init_from=str(folder)
    )
    with pytest.raises(ValueError, match="its generator does not fit"):
        three_sources.check_settings()
    other = Complementary().fit([]).save(tmp_path / "complementary")
    with pytest.raises(ValueError, match="holds a Complementary, not a Pix2Pix"):
        Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, init_from=str(other)).check_settings()
    with pytest.raises(InvalidInputError, match="not a run directory or model folder"):
        Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, init_from=str(tmp_path / "nowhere")).check_settings()


def augmented_subject(cached, augmentation, seed=0):
    """One training volume as the queue gets it, with ``augmentation`` certain (probability 1)."""
    datamodule = PatchDataModule([cached], patch_size=(8, 8, 8), flip="none", augmentation=augmentation,
                                 intensity_channels=["t1"])  # fmt: skip
    torch.manual_seed(seed)
    return datamodule.transform()(torchio_subject(cached))


@pytest.mark.parametrize("name", ["bias_field", "gamma", "noise"])
def test_an_intensity_augmentation_changes_the_sources_inside_the_brain_only(tmp_path, name):
    cached = cache_case(head_subject(), tmp_path)
    original = torchio_subject(cached)
    augmented = augmented_subject(cached, {name: 1.0})
    brain = original["brain"].data.bool()
    t1, before = augmented["t1"].data, original["t1"].data
    assert not torch.allclose(t1[brain], before[brain])
    assert (t1[~brain] == -1).all() and t1.min() >= -1 and t1.max() <= 1
    torch.testing.assert_close(augmented["t2"].data, original["t2"].data)  # the target is untouched
    torch.testing.assert_close(augmented["brain"].data, original["brain"].data)


def test_an_affine_moves_sources_target_and_masks_together(tmp_path):
    cached = cache_case(head_subject(), tmp_path)
    original = torchio_subject(cached)
    augmented = augmented_subject(cached, {"affine": 1.0})
    assert not torch.equal(augmented["brain"].data, original["brain"].data)
    assert set(torch.unique(augmented["brain"].data).tolist()) <= {0, 1}  # masks stay masks
    moved, before = augmented["brain"].data.bool(), original["brain"].data.bool()

    def dice(image, mask):
        foreground = image > -0.99
        return float(2 * (foreground & mask).sum() / (foreground.sum() + mask.sum()))

    for channel in ("t1", "t2"):  # both images moved with the mask: their foreground is where it went
        image = augmented[channel].data
        assert dice(image, moved) > 0.9 and dice(image, moved) > dice(image, before) + 0.03
    again = augmented_subject(cached, {"affine": 1.0})
    torch.testing.assert_close(again["t2"].data, augmented["t2"].data)  # seeded: the same draw


def test_an_unknown_augmentation_or_a_probability_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        PatchDataModule([], augmentation={"elastic": 0.5})
    with pytest.raises(ValueError, match=r"augmentation\.gamma is a probability, got 2"):
        PatchDataModule([], augmentation={"gamma": 2})


def test_a_fit_leaves_no_queue_worker_behind(tmp_path):
    """Stopped part way through the queue's volumes, the fit's loader worker is shut down when it
    returns (not at some later garbage collection, which may run inside a forked worker)."""
    import multiprocessing

    from pipeline.contract import FitContext

    before = set(multiprocessing.active_children())  # another test's, if any
    method = Pix2PixMethod(
        SMALL_UNET,
        SMALL_DISCRIMINATOR,
        constant_iterations=2,
        decay_iterations=0,
        data={"patch_size": [32, 32, 32], "samples_per_volume": 50, "queue_length": 100, "num_workers": 1},
        trainer={"accelerator": "cpu"},
        inference={"device": "cpu"},
    )
    method.fit([head_subject(f"case{k}", shape=(32, 32, 32), seed=k) for k in range(2)], FitContext(workdir=tmp_path))
    assert set(multiprocessing.active_children()) <= before


def test_the_structural_loss_is_one_minus_scikit_images_ssim_over_the_mask():
    """On the [0, 1] scale with the evaluation's window, against scikit-image's SSIM map with the
    population covariance (MONAI's), over the mask's voxels half a window inside the patch."""
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(1, 1, 12, 12, 12, generator=generator)
    output = (target + 0.3 * torch.rand(target.shape, generator=generator)).clamp(0, 1)
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[..., 2:10, 4:12, 3:9] = True
    _, local = structural_similarity(
        target[0, 0].double().numpy(),
        output[0, 0].double().numpy(),
        data_range=1.0,
        win_size=7,
        use_sample_covariance=False,
        full=True,
    )
    inner = np.zeros(mask.shape[2:], dtype=bool)
    inner[3:-3, 3:-3, 3:-3] = True
    expected = 1 - local[mask[0, 0].numpy() & inner].mean()
    loss = masked_structural_dissimilarity(output * 2 - 1, target * 2 - 1, mask)
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert float(masked_structural_dissimilarity(target * 2 - 1, target * 2 - 1, mask)) == pytest.approx(0, abs=1e-6)
    assert float(masked_structural_dissimilarity(output, target, torch.zeros_like(mask))) == 0


def test_the_structural_term_joins_the_generators_loss_with_its_weight():
    torch.manual_seed(0)
    batch = as_batch(network_inputs(head_subject(shape=(32, 32, 32))))
    networks = UNetGenerator(3, base_filters=4, downsamplings=5, dropout=False), PatchDiscriminator(3, base_filters=4)
    system = Pix2Pix(*networks, lambda_l1=100, lambda_ssim=10)
    with torch.no_grad():
        terms = system.generator_losses(batch, system.generator(batch["t1"]))
    assert 0 < float(terms["dssim_brain"]) < 2
    expected = terms["adversarial"] + 100 * terms["l1_brain"] + 10 * terms["dssim_brain"]
    assert float(terms["total"]) == pytest.approx(float(expected))
    assert "dssim_brain" not in Pix2Pix(*networks).generator_losses(batch, system.generator(batch["t1"]))
    with pytest.raises(ValueError, match="lambda_ssim"):
        Pix2Pix(*networks, lambda_ssim=-1)


def test_slice_sigma_smooths_the_output_across_slices_inside_the_brain():
    subject = head_subject()
    on_cpu = {"device": "cpu"}
    plain = untrained(Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, spatial_dims=2, inference=on_cpu))
    smoothing = Pix2PixMethod(SMALL_UNET, SMALL_DISCRIMINATOR, spatial_dims=2, inference=on_cpu | {"slice_sigma": 1.0})
    smoothing.set_state(plain.state())
    smoothing.fitted_ = True
    expected = smooth_across_slices(plain.predict(subject).data, 1.0, subject.brain)
    np.testing.assert_allclose(smoothing.predict(subject).data, expected, atol=1e-6)
    with pytest.raises(ValueError, match="slice_sigma"):
        InferenceSettings(slice_sigma=-1)


def test_validation_scores_the_output_that_predict_writes(monkeypatch):
    arrays = network_inputs(head_subject())
    settings = InferenceSettings(slice_sigma=1.0, median_filter=True)
    system = Pix2Pix(Negate(), PatchDiscriminator(2, base_filters=4), inference=settings)
    logged = {}
    monkeypatch.setattr(system, "log_dict", lambda values, **_: logged.update(values))
    batch = as_batch(arrays) | {"case_id": ["case"]}
    system.validation_step(batch, batch_index=1)
    brain = arrays["brain"]
    smoothed = smooth_across_slices(np.where(brain, from_network_scale(-arrays["t1"]), 0), 1.0, brain)
    finished = median_per_axial_slice(smoothed, inside=brain)
    error = np.abs(finished - from_network_scale(arrays["t2"]))[brain]
    assert logged["val/mae_brain"] == pytest.approx(float(error.mean()), rel=1e-5)
    assert logged["val/mse_brain"] == pytest.approx(float((error**2).mean()), rel=1e-5)
