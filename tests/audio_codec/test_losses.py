"""Losses and metrics of codec training."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio

from audio_codec.losses import (
    BandRiseLoss,
    MultiScaleMelLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from audio_codec.metrics import MelDistance, si_snr


def test_mel_loss_is_zero_only_for_equal_audio() -> None:
    torch.manual_seed(0)
    loss = MultiScaleMelLoss(24000, [32, 256, 2048])
    x = 0.1 * torch.randn(2, 1, 4800)
    assert loss(x, x).item() == 0.0
    assert loss(0.5 * x, x).item() > 0.1
    # A shift by 5 ms is visible at short windows: that is what keeps onsets in place.
    shifted = torch.roll(x, 120, dims=-1)
    assert loss(shifted, x) > 0.1


def test_mel_loss_has_no_empty_bands() -> None:
    loss = MultiScaleMelLoss(24000, [32, 2048], n_mels=64)
    for spec in loss.specs:
        assert bool((spec.mel_scale.fb.max(dim=0).values > 0).all())


def test_bad_mel_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="windows"):
        MultiScaleMelLoss(24000, [8])
    with pytest.raises(ValueError, match="floor"):
        MultiScaleMelLoss(24000, [64], floor=0.0)


def test_adversarial_losses() -> None:
    ones, minus = [torch.ones(2, 1, 3, 3)], [-torch.ones(2, 1, 3, 3)]
    assert discriminator_hinge_loss(ones, minus).item() == 0.0  # confident and right
    assert discriminator_hinge_loss(minus, ones).item() == 4.0  # confident and wrong
    assert generator_hinge_loss(ones).item() == 0.0
    maps = [[torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)]]
    assert feature_matching_loss(maps, maps).item() == 0.0
    assert feature_matching_loss(maps, [[2 * m for m in maps[0]]]).item() == pytest.approx(1.0)


def test_metrics_agree_with_references() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 2, 2400)
    y = x + 0.1 * torch.randn_like(x)
    expected = scale_invariant_signal_noise_ratio(y, x).mean(dim=-1)
    assert torch.allclose(si_snr(y, x), expected)
    assert (si_snr(y, x) > 15).all()
    mel = MelDistance(24000)
    assert torch.equal(mel(x, x), torch.zeros(3))
    assert (mel(y, x) > 0).all()
    with pytest.raises(ValueError, match="same shape"):
        si_snr(y[:, :1], x)


def test_envelope_loss_punishes_smeared_attacks() -> None:
    from audio_codec.losses import EnvelopeLoss

    loss = EnvelopeLoss(24000)
    t = torch.arange(4800) / 24000
    sharp = (t > 0.1).float() * torch.sin(2 * torch.pi * 500 * t) * 0.5
    smeared = sharp * ((t - 0.1) / 0.03).clamp(0, 1)  # 30 ms fade-in instead of an instant attack
    x = sharp.reshape(1, 1, -1)
    assert loss(x, x).item() == 0.0
    assert loss(smeared.reshape(1, 1, -1), x) > 3 * loss(0.9 * x, x)


def test_band_rise_loss_sees_a_quiet_low_sound_under_a_loud_one() -> None:
    """A 150 Hz thud starting under a louder ringing 3 kHz tone barely changes the broadband level,
    but it is a rise in its own band: leaving it out costs much more than getting it right."""
    sr = 24000
    t = torch.arange(12000) / sr
    ring = 0.5 * torch.sin(2 * torch.pi * 3000 * t)
    thud = torch.zeros_like(t)
    thud[6000:] = 0.1 * torch.sin(2 * torch.pi * 150 * t[:6000]) * torch.exp(-t[:6000] / 0.05)
    full, without = (ring + thud).view(1, 1, -1), ring.view(1, 1, -1)
    loss = BandRiseLoss(sr)
    assert loss(full, full).item() == 0.0
    # a level change is no rise: only the missing attack costs
    assert loss(without, full).item() > 3 * loss(0.8 * full, full).item()
    estimate = without.clone().requires_grad_(True)
    loss(estimate, full).backward()
    assert estimate.grad is not None and estimate.grad.abs().sum() > 0


def test_octave_power_puts_a_tone_in_its_band_and_dc_in_the_lowest() -> None:
    from audio_codec.metrics import OctavePower

    op = OctavePower(24000)
    assert [round(e) for e in op.edges_hz] == [0, 94, 188, 375, 750, 1500, 3000, 6000, 12000]
    t = torch.arange(24000) / 24000
    tone = torch.sin(2 * torch.pi * 440 * t).reshape(1, 1, -1)
    assert int(op(tone)[0].argmax()) == 3  # 375-750 Hz
    assert int(op(tone + 2.0)[0].argmax()) == 0  # a DC offset lands in the band down to 0 Hz
    with pytest.raises(ValueError, match="n_bands"):
        OctavePower(24000, n_bands=0)
