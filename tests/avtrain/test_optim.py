"""The one optimizer/schedule config: its curve, its scheduler, the components' defaults."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from audio_codec.lit import CODEC_OPTIMIZER
from av_model.vae.config import VAE_OPTIMIZER
from avtrain.optim import OptimConfig, ScheduleLR, adamw, schedule_for


def _lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    opt = scheduler.optimizer
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def _opt(lr: float = 1e-3) -> torch.optim.AdamW:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_generator_curve_is_torch_warmup_then_cosine() -> None:
    # The curve the generator trained on before this config existed: LinearLR then CosineAnnealingLR.
    cfg = OptimConfig(lr=1e-3, warmup_steps=5, warmup_start_factor=0.01, decay_steps=20, min_lr_ratio=0.1)
    ours = _lrs(schedule_for(_opt(), cfg, total_steps=25), 25)
    ref_opt = _opt()
    ref = SequentialLR(ref_opt, [LinearLR(ref_opt, start_factor=0.01, total_iters=5),
                                 CosineAnnealingLR(ref_opt, T_max=20, eta_min=1e-4)], milestones=[5])
    assert ours == pytest.approx(_lrs(ref, 25), rel=1e-9, abs=1e-12)


def test_null_start_factor_moves_on_the_first_step_and_the_cosine_ends_at_the_floor() -> None:
    cfg = OptimConfig(warmup_steps=4, warmup_start_factor=None, min_lr_ratio=0.1)
    assert [cfg.lr_factor(s, 100) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cfg.lr_factor(4, 100) == 1.0
    assert cfg.lr_factor(52, 100) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cfg.lr_factor(100, 100) == pytest.approx(0.1)
    assert cfg.lr_factor(500, 100) == pytest.approx(0.1)  # flat after the end, never back up
    assert cfg.lr_factor(500, None) == 1.0  # unbounded run: constant after the warm-up
    assert OptimConfig(warmup_steps=0, schedule="constant").lr_factor(7, 10) == 1.0


def test_vae_defaults_keep_its_curve() -> None:
    # The autoencoder's curve: (step + 1) / warm-up, then a cosine to 10% at trainer.max_steps.
    warm, total = VAE_OPTIMIZER.warmup_steps, 600
    for step in (0, 10, warm, 200, 599, 700):
        if step < warm:
            expected = (step + 1) / warm
        else:
            progress = min(1.0, (step - warm) / (total - warm))
            expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        assert VAE_OPTIMIZER.lr_factor(step, total) == pytest.approx(expected)
    assert VAE_OPTIMIZER.discriminator_betas == (0.5, 0.9) and VAE_OPTIMIZER.discriminator_lr == 2e-4


def test_codec_defaults_are_encodec_adam() -> None:
    assert CODEC_OPTIMIZER.betas == CODEC_OPTIMIZER.discriminator_betas == (0.5, 0.9)
    assert CODEC_OPTIMIZER.weight_decay == 0.0 and not CODEC_OPTIMIZER.disc_follows_schedule
    assert CODEC_OPTIMIZER.lr_factor(1000, 10) == 1.0  # constant by default
    opt = adamw([torch.nn.Parameter(torch.zeros(3))], CODEC_OPTIMIZER, discriminator=True)
    assert opt.param_groups[0]["lr"] == CODEC_OPTIMIZER.discriminator_lr == opt.param_groups[0]["initial_lr"]
    assert opt.param_groups[0]["betas"] == (0.5, 0.9) and opt.param_groups[0]["weight_decay"] == 0.0


def test_old_sequential_scheduler_state_resumes_on_the_same_step() -> None:
    cfg = OptimConfig(lr=1e-3, warmup_steps=3, decay_steps=10)
    old_opt = _opt()
    old = SequentialLR(old_opt, [LinearLR(old_opt, start_factor=0.01, total_iters=3),
                                 CosineAnnealingLR(old_opt, T_max=10, eta_min=1e-4)], milestones=[3])
    _lrs(old, 7)
    opt = _opt()
    new = schedule_for(opt, cfg, total_steps=13)
    new.load_state_dict(old.state_dict())
    assert new.last_epoch == 7
    opt.step()
    new.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * cfg.lr_factor(8, 13))
    # And its own state round-trips.
    again = ScheduleLR(_opt(), lambda step: 1.0)
    again.load_state_dict(new.state_dict())
    assert again.last_epoch == new.last_epoch


@pytest.mark.parametrize("bad, message", [
    ({"lr": 0}, "lr"), ({"betas": (0.9, 1.0)}, "betas"), ({"warmup_start_factor": 0.0}, "warmup_start_factor"),
    ({"schedule": "linear"}, "schedule"), ({"min_lr_ratio": 2}, "min_lr_ratio"), ({"disc_betas": (1.5, 0.9)}, "disc_betas"),
    ({"grad_clip": -1}, "grad_clip"), ({"decay_steps": 0}, "decay_steps"),
])
def test_bad_settings_say_which_field(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OptimConfig(**bad)


def test_set_lrs_follows_the_configured_peaks_even_without_initial_lr() -> None:
    cfg = OptimConfig(lr=1e-3, disc_lr=2e-4, warmup_steps=4, warmup_start_factor=None, min_lr_ratio=0.0)
    gen, disc = _opt(lr=5.0), _opt(lr=5.0)  # lr and no `initial_lr`: what an older checkpoint's state holds
    cfg.set_lrs(1, 10, gen, disc)
    assert gen.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5) and disc.param_groups[0]["lr"] == pytest.approx(1e-4)
    constant_disc = OptimConfig(lr=1e-3, disc_lr=2e-4, disc_follows_schedule=False)
    disc = _opt(lr=2e-4)
    constant_disc.set_lrs(3, 10, _opt(), disc)
    assert disc.param_groups[0]["lr"] == 2e-4  # a discriminator off the schedule is left alone
