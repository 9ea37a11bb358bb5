"""Samplers: exact on a known flow, conditioning really fixes a modality, guidance, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from av_model.dit import AVDiT
from av_model.dit.model import DiTOutput, MoEAux
from av_model.flow.sampling import SamplerConfig, sample
from av_model.text import TextBatch


class Oracle(nn.Module):
    """The exact velocity field of a flow whose data is the single point (v0, a0) per sample."""

    def __init__(self, v0: torch.Tensor, a0: torch.Tensor) -> None:
        super().__init__()
        self.v0, self.a0 = v0, a0
        self.anchor = nn.Parameter(torch.zeros(1))  # `sample` reads the device from a parameter
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, video, audio, t_video, t_audio, text, video_rate, audio_rate):
        b = video.shape[0]
        reps = b // self.v0.shape[0]
        tv = t_video if t_video.dim() == 2 else t_video[:, None].expand(b, video.shape[2])
        ta = t_audio if t_audio.dim() == 2 else t_audio[:, None].expand(b, audio.shape[2])
        self.calls.append((tv, ta))
        # x_t = (1 - t) x0 + t eps  =>  v = eps - x0 = (x_t - x0) / t
        v = (video - self.v0.repeat(reps, 1, 1, 1, 1)) / tv[:, None, :, None, None].clamp_min(1e-12)
        a = (audio - self.a0.repeat(reps, 1, 1)) / ta[:, None, :].clamp_min(1e-12)
        return DiTOutput(v, a, MoEAux({}, {}))


def _shapes(inputs: dict) -> dict:
    return dict(video_shape=inputs["video"].shape, audio_shape=inputs["audio"].shape,
                video_rate=inputs["video_rate"], audio_rate=inputs["audio_rate"])


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_solvers_land_on_the_data_of_an_exact_flow(inputs_factory, solver: str) -> None:
    inputs = inputs_factory()
    oracle = Oracle(inputs["video"], inputs["audio"])
    cfg = SamplerConfig(steps=5, solver=solver, guidance_video=1.0, guidance_audio=1.0)
    video, audio = sample(oracle, inputs["text"], config=cfg, **_shapes(inputs))
    torch.testing.assert_close(video, inputs["video"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(audio, inputs["audio"], atol=1e-5, rtol=1e-5)
    assert len(oracle.calls) == (5 if solver == "euler" else 9)  # Heun: 2 per step, Euler at the end


def test_v2a_keeps_the_video_and_holds_its_time_at_zero(inputs_factory) -> None:
    inputs = inputs_factory()
    oracle = Oracle(inputs["video"], inputs["audio"])
    given = torch.randn_like(inputs["video"])
    video, _ = sample(oracle, inputs["text"], task="v2a", video_cond=given,
                      config=SamplerConfig(steps=3, guidance_video=1, guidance_audio=1), **_shapes(inputs))
    assert torch.equal(video, given)
    assert all(torch.all(tv == 0) and torch.all(ta > 0) for tv, ta in oracle.calls)


@pytest.mark.parametrize(("task", "given"), [("v2a", "video"), ("a2v", "audio")])
def test_conditioning_fixes_a_modality_and_steers_the_other(debug_model: AVDiT, inputs_factory, randomizer,
                                                           task: str, given: str) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory()
    cfg = SamplerConfig(steps=3)
    kw = _shapes(inputs)
    cond_a = {f"{given}_cond": inputs[given]}
    cond_b = {f"{given}_cond": inputs[given].flip(0)}  # another sample's latents
    va, aa = sample(model, inputs["text"], task=task, config=cfg, **cond_a, **kw)
    vb, ab = sample(model, inputs["text"], task=task, config=cfg, **cond_b, **kw)
    fixed_a, free_a, free_b = (va, aa, ab) if given == "video" else (aa, va, vb)
    assert torch.equal(fixed_a, inputs[given])
    assert (free_a - free_b).abs().max() > 1e-4  # the generated modality depends on the given one


def test_extend_keeps_the_prefix_and_uses_per_frame_times(inputs_factory) -> None:
    inputs = inputs_factory(frames_v=8, frames_a=48)  # 2 s of latents
    oracle = Oracle(torch.zeros_like(inputs["video"]), torch.zeros_like(inputs["audio"]))
    video, audio = sample(
        oracle, inputs["text"], task="extend", extend_seconds=0.5, video_cond=inputs["video"][:, :, :2],
        audio_cond=inputs["audio"][:, :, :6], config=SamplerConfig(steps=4, guidance_video=1, guidance_audio=1),
        **_shapes(inputs),
    )
    # the first 0.5 s: 2 video latents (4/s), 6 audio latents (12/s)
    assert torch.equal(video[:, :, :2], inputs["video"][:, :, :2])
    assert torch.equal(audio[:, :, :6], inputs["audio"][:, :, :6])
    torch.testing.assert_close(video[:, :, 2:], torch.zeros_like(video[:, :, 2:]), atol=1e-5, rtol=0)
    tv, ta = oracle.calls[0]
    assert tv.shape == (2, 8) and torch.all(tv[:, :2] == 0) and torch.all(tv[:, 2:] == 1)
    assert torch.all(ta[:, :6] == 0) and torch.all(ta[:, 6:] == 1)


def test_guidance_batches_cond_and_uncond_and_scales_per_modality(debug_model: AVDiT, inputs_factory,
                                                                  randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory()
    kw = _shapes(inputs)

    def run(gv: float, ga: float) -> tuple[torch.Tensor, torch.Tensor]:
        return sample(model, inputs["text"], config=SamplerConfig(steps=1, guidance_video=gv, guidance_audio=ga),
                      seed=3, **kw)

    v1, a1 = run(1.0, 1.0)  # conditional only
    v0, a0 = run(0.0, 0.0)  # unconditional only (scale 0)
    v2, a2 = run(2.0, 0.5)
    # One Euler step is linear in the velocity: x = noise - v, so guided = uncond + s (cond - uncond).
    torch.testing.assert_close(v2, v0 + 2.0 * (v1 - v0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a2, a0 + 0.5 * (a1 - a0), atol=1e-4, rtol=1e-4)
    assert (v1 - v0).abs().max() > 1e-4


def test_guidance_interval_guides_only_the_steps_inside_it(debug_model: AVDiT, inputs_factory, randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory()
    kw = _shapes(inputs)
    batch_sizes: list[int] = []
    hook = model.register_forward_pre_hook(lambda _m, args: batch_sizes.append(args[0].shape[0]))
    try:
        def run(interval: tuple[float, float], scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
            batch_sizes.clear()
            cfg = SamplerConfig(steps=4, shift=1.0, guidance_video=scale, guidance_audio=scale,
                                guidance_interval=interval)
            return sample(model, inputs["text"], config=cfg, seed=5, **kw)

        b = inputs["video"].shape[0]
        everywhere = run((0.0, 1.0))
        assert batch_sizes == [2 * b] * 4
        middle = run((0.3, 0.8))  # steps at t = 1, 0.75, 0.5, 0.25: the middle two are guided
        assert batch_sizes == [b, 2 * b, 2 * b, b]
        nowhere = run((0.0, 0.0))
        assert batch_sizes == [b] * 4
        unguided = run((0.0, 1.0), scale=1.0)
    finally:
        hook.remove()
    assert torch.equal(nowhere[0], unguided[0]) and torch.equal(nowhere[1], unguided[1])
    assert not torch.allclose(middle[0], everywhere[0]) and not torch.allclose(middle[0], nowhere[0])
    with pytest.raises(ValueError, match="guidance_interval"):
        SamplerConfig(guidance_interval=(0.8, 0.2))


def test_sampling_is_seeded_and_deterministic(debug_model: AVDiT, inputs_factory, randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory()
    kw = dict(config=SamplerConfig(steps=2, solver="heun"), **_shapes(inputs))
    a = sample(model, inputs["text"], seed=1, **kw)
    b = sample(model, inputs["text"], seed=1, **kw)
    c = sample(model, inputs["text"], seed=2, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert model.training  # the model's mode is restored


def test_bad_sampling_requests_are_refused(debug_model: AVDiT, inputs_factory) -> None:
    inputs = inputs_factory()
    kw = _shapes(inputs)
    with pytest.raises(ValueError, match="needs video_cond"):
        sample(debug_model, inputs["text"], task="v2a", **kw)
    with pytest.raises(ValueError, match="unknown task"):
        sample(debug_model, inputs["text"], task="i2v", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extend_seconds"):
        sample(debug_model, inputs["text"], task="extend", video_cond=inputs["video"], audio_cond=inputs["audio"],
               extend_seconds=5.0, **kw)
    with pytest.raises(ValueError, match="batch sizes differ"):
        sample(debug_model, TextBatch.cat([inputs["text"]] * 2), **kw)
    with pytest.raises(ValueError, match="at least"):
        sample(debug_model, inputs["text"], task="extend", video_cond=inputs["video"][:, :, :1],
               audio_cond=inputs["audio"], extend_seconds=0.6, **kw)
    with pytest.raises(ValueError, match="steps"):
        SamplerConfig(steps=0)


class Still(nn.Module):
    """Zero velocity everywhere: the sampler returns its starting noise, which is what is compared."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, video, audio, t_video, t_audio, text, video_rate, audio_rate):
        return DiTOutput(torch.zeros_like(video), torch.zeros_like(audio), MoEAux({}, {}))


def test_one_seed_per_sample_makes_a_sample_independent_of_its_batch(inputs_factory) -> None:
    pair, single = inputs_factory(batch=2), inputs_factory(batch=1)
    cfg = SamplerConfig(steps=1, guidance_video=1.0, guidance_audio=1.0)
    v2, a2 = sample(Still(), pair["text"], config=cfg, seed=[7, 3], **_shapes(pair))
    v1, a1 = sample(Still(), single["text"], config=cfg, seed=[3], **_shapes(single))
    assert torch.equal(v2[1], v1[0]) and torch.equal(a2[1], a1[0])
    assert not torch.equal(v2[0], v2[1])
    with pytest.raises(ValueError, match="2 seeds for a batch of 1"):
        sample(Still(), single["text"], config=cfg, seed=[1, 2], **_shapes(single))
