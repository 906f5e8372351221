"""Each Pix2Pix loss term on hand-built tensors."""

import math

import pytest
import torch

from lightning_modules.losses import discriminator_loss, generator_adversarial_loss, masked_l1, masked_mse
from lightning_modules.networks import PatchDiscriminator, UNetGenerator
from lightning_modules.pix2pix import Pix2Pix
from lightning_modules.schedules import linear_decay


def test_masked_l1_averages_over_the_mask_only():
    output = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 100.0]])
    mask = torch.tensor([[True, False, True, False]])
    assert masked_l1(output, target, mask).item() == pytest.approx((1 + 3) / 2)


def test_masked_mse_averages_squares_over_the_mask_only():
    output = torch.tensor([[1.0, -2.0, 3.0]])
    target = torch.tensor([[0.0, 0.0, 5.0]])
    mask = torch.tensor([[True, True, False]])
    assert masked_mse(output, target, mask).item() == pytest.approx((1 + 4) / 2)


@pytest.mark.parametrize("loss", [masked_l1, masked_mse])
def test_an_empty_mask_gives_zero_and_a_usable_graph(loss):
    """A crop without tumour: the term is 0 and backward still works (no division by zero)."""
    output = torch.ones(1, 1, 2, 2, 2, requires_grad=True)
    value = loss(output, torch.zeros_like(output), torch.zeros_like(output, dtype=torch.bool))
    value.backward()
    assert value.item() == 0 and torch.equal(output.grad, torch.zeros_like(output))


def test_gan_losses_by_hand():
    zeros, ones = torch.zeros(1, 1, 3, 3), torch.ones(1, 1, 3, 3)
    # vanilla: BCE with logits 0 is log 2 for either label.
    assert discriminator_loss(zeros, zeros, "vanilla").item() == pytest.approx(math.log(2))
    assert generator_adversarial_loss(zeros, "vanilla").item() == pytest.approx(math.log(2))
    # lsgan: a perfect discriminator (real 1, fake 0) has loss 0; G then has loss 1.
    assert discriminator_loss(ones, zeros, "lsgan").item() == 0
    assert generator_adversarial_loss(zeros, "lsgan").item() == 1
    # hinge: relu(1 - 0) + relu(1 + 0) = 2; margins met give 0; G's term is -mean(fake).
    assert discriminator_loss(zeros, zeros, "hinge").item() == 2
    assert discriminator_loss(ones, -ones, "hinge").item() == 0
    assert generator_adversarial_loss(3 * ones, "hinge").item() == -3


def tiny_system(**kwargs) -> Pix2Pix:
    torch.manual_seed(0)
    return Pix2Pix(
        UNetGenerator(3, base_filters=4, downsamplings=5),
        PatchDiscriminator(3, base_filters=4, norm="instance"),
        **kwargs,
    )


def batch(tumour: bool) -> dict[str, torch.Tensor]:
    t1 = torch.rand(1, 1, 32, 32, 32) * 2 - 1
    tumour_mask = torch.zeros_like(t1, dtype=torch.bool)
    if tumour:
        tumour_mask[..., 10:14, 10:14, 10:14] = True
    return {"t1": t1, "t2": -t1, "brain": t1 > -0.5, "tumour": tumour_mask}


@pytest.mark.parametrize("tumour_loss", ["masked_output", "masked_input"])
def test_generator_loss_is_the_weighted_sum_of_its_terms(tumour_loss):
    system = tiny_system(lambda_l1=100, gamma_tumour=500, tumour_loss=tumour_loss)
    data = batch(tumour=True)
    fake = system.generator(data["t1"])
    terms = system.generator_losses(data, fake)
    expected = terms["adversarial"] + 100 * terms["l1_brain"] + 500 * terms["mse_tumour"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["l1_brain"].item() == pytest.approx(masked_l1(fake, data["t2"], data["brain"]).item())
    assert terms["mse_tumour"].item() > 0


def test_a_crop_without_tumour_has_no_tumour_term():
    system = tiny_system(lambda_l1=100, gamma_tumour=1000)
    data = batch(tumour=False)
    terms = system.generator_losses(data, system.generator(data["t1"]))
    assert terms["mse_tumour"].item() == 0
    assert terms["total"].item() == pytest.approx((terms["adversarial"] + 100 * terms["l1_brain"]).item(), rel=1e-6)


def test_linear_decay_schedule():
    factor = linear_decay(constant_iterations=10, decay_iterations=9)
    assert [factor(i) for i in (0, 9, 10)] == [1, 1, 1]
    assert factor(15) == pytest.approx(1 - 5 / 10)
    assert factor(19) == pytest.approx(0.1) and factor(100) == 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="gan_mode"):
        tiny_system(gan_mode="wgan")
    with pytest.raises(ValueError, match="tumour_loss"):
        tiny_system(tumour_loss="both")
    with pytest.raises(ValueError, match="lambda"):
        tiny_system(lambda_l1=-1)
