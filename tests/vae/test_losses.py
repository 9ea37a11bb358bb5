"""Training losses: KL, Movie Gen's outlier penalty, reconstruction terms, the 3D patch discriminator."""

from __future__ import annotations

import torch

from av_model.vae.losses import (
    PatchDiscriminator3D,
    adaptive_adversarial_weight,
    discriminator_hinge_loss,
    generator_adversarial_loss,
    kl_divergence,
    outlier_penalty,
    reconstruction_losses,
)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    zeros = torch.zeros(2, 4, 2, 3, 3)
    assert float(kl_divergence(zeros, zeros)) == 0.0
    assert float(kl_divergence(zeros + 1, zeros)) == 0.5


def test_outlier_penalty_only_counts_values_beyond_r_std() -> None:
    torch.manual_seed(0)
    z = torch.randn(1, 2, 4, 8, 8).clamp(-2.5, 2.5)
    assert float(outlier_penalty(z, r=3.0)) == 0.0
    spiked = z.clone()
    spiked[0, 0, 1, 3, 3] = 40.0
    penalty = float(outlier_penalty(spiked, r=3.0))
    # only the spike exceeds mean + 3 std; the penalty is its excess averaged over all elements
    mean, std = spiked[0, 0].mean(), spiked[0, 0].std()
    expected = float((40.0 - mean).abs() - 3 * std) / spiked.numel()
    assert abs(penalty - expected) < 1e-5


def test_reconstruction_terms() -> None:
    x = torch.rand(1, 3, 4, 8, 8)
    zero = reconstruction_losses(x, x)
    assert float(zero.l1) == float(zero.l2) == float(zero.gradient) == float(zero.temporal) == 0.0
    shifted = reconstruction_losses(x, x + 0.25)  # a constant offset has no edges or motion
    assert abs(float(shifted.l2) - 0.0625) < 1e-6  # MSE weighs the error by its size
    assert abs(float(shifted.l1) - 0.25) < 1e-6 and float(shifted.gradient) < 1e-6 and float(shifted.temporal) < 1e-6
    moved = reconstruction_losses(x, torch.roll(x, 1, dims=2))
    assert float(moved.temporal) > 0
    assert float(reconstruction_losses(x[:, :, :1], x[:, :, :1] + 1).temporal) == 0.0


def test_discriminator_and_gan_losses() -> None:
    torch.manual_seed(0)
    d = PatchDiscriminator3D(channels=4, layers=3)
    logits = d(torch.rand(2, 3, 8, 32, 32))
    assert logits.shape[:2] == (2, 1) and logits.shape[2:] == (2, 4, 4)
    assert d(torch.rand(1, 3, 1, 32, 32)).shape[2] == 1  # images go through too
    real, fake = torch.full((2, 1, 2, 2, 2), 2.0), torch.full((2, 1, 2, 2, 2), -2.0)
    assert float(discriminator_hinge_loss(real, fake)) == 0.0
    assert float(generator_adversarial_loss(fake)) == 2.0
    w = torch.nn.Parameter(torch.ones(3))
    weight = adaptive_adversarial_weight((w * 2).sum(), (w * 0.5).sum(), w)
    assert abs(float(weight) - 4.0) < 1e-3
