"""Flow matching: times, clean modalities and prefixes, text dropout, loss bookkeeping."""

from __future__ import annotations

import pytest
import torch

from av_model.dit import AVDiT
from av_model.flow.matching import FlowConfig, FlowMatching, resolution_shift, time_shift


def _loss(model: AVDiT, inputs: dict, seed: int = 0, **cfg: object):
    fm = FlowMatching(FlowConfig(**cfg))  # type: ignore[arg-type]
    return fm.loss(model, inputs["video"], inputs["audio"], inputs["text"], inputs["video_rate"],
                   inputs["audio_rate"], generator=torch.Generator().manual_seed(seed))


def test_loss_is_deterministic_and_backpropagates(debug_model: AVDiT, inputs_factory) -> None:
    inputs = inputs_factory(batch=4)
    a, b = _loss(debug_model, inputs), _loss(debug_model, inputs)
    torch.testing.assert_close(a.loss, b.loss)
    torch.testing.assert_close(a.t_video, b.t_video)
    a.loss.backward()
    assert debug_model.video_out.linear.weight.grad.abs().sum() > 0
    # A fresh model predicts zero velocity, so each modality's loss is E|eps - x0|^2 ~ 2 for
    # unit-variance latents, and the flow loss is their (unit-weighted) sum.
    assert 1.0 < float(a.video_loss.detach()) < 3.5 and 1.0 < float(a.audio_loss.detach()) < 3.5
    torch.testing.assert_close(a.flow_loss, a.video_loss + a.audio_loss)
    assert torch.isclose(a.loss, a.flow_loss + sum(a.aux.losses.values()))


def test_independent_times_per_modality(debug_model: AVDiT, inputs_factory) -> None:
    out = _loss(debug_model, inputs_factory(batch=16), p_clean_video=0, p_clean_audio=0, p_prefix=0)
    assert not torch.allclose(out.t_video, out.t_audio)
    assert torch.all((out.t_video > 0) & (out.t_video < 1))
    assert out.video_valid.all() and out.audio_valid.all()


def test_clean_video_carries_no_video_loss(debug_model: AVDiT, inputs_factory) -> None:
    out = _loss(debug_model, inputs_factory(batch=4), p_clean_video=1.0, p_clean_audio=0.0)
    assert torch.all(out.t_video == 0) and not out.video_valid.any()
    assert torch.all(out.video == 0) and out.video_loss == 0
    assert out.audio_valid.all() and out.audio_loss > 0
    out = _loss(debug_model, inputs_factory(batch=4), p_clean_video=0.0, p_clean_audio=1.0)
    assert torch.all(out.t_audio == 0) and not out.audio_valid.any() and out.video_valid.all()


def test_clean_prefix_is_whole_video_tokens_and_not_in_the_loss(debug_model: AVDiT, inputs_factory) -> None:
    out = _loss(debug_model, inputs_factory(batch=8, frames_v=8, frames_a=48), p_clean_video=0,
                p_clean_audio=0, p_prefix=1.0, prefix_max_fraction=0.5)
    # video tokens last 1/4 s (patch 1 at 4 latent frames/s); prefixes of 1..4 tokens
    assert torch.all(out.prefix_seconds > 0) and torch.all(out.prefix_seconds <= 1.0)
    torch.testing.assert_close(out.prefix_seconds * 4, (out.prefix_seconds * 4).round())
    assert out.video_valid.all() and out.audio_valid.all()


def test_prefix_frames_get_time_zero_in_the_model(inputs_factory) -> None:
    seen: dict[str, torch.Tensor] = {}

    class Spy(torch.nn.Module):
        def __init__(self, inner: AVDiT) -> None:
            super().__init__()
            self.module = inner

        def forward(self, video, audio, t_video, t_audio, text, video_rate, audio_rate):
            seen.update(video=video, t_video=t_video, t_audio=t_audio)
            return self.module(video, audio, t_video, t_audio, text, video_rate, audio_rate)

    from dit_fixtures import small_config

    inputs = inputs_factory(batch=4, frames_v=8, frames_a=48)
    out = _loss(Spy(AVDiT(small_config())), inputs, p_clean_video=0, p_clean_audio=0, p_prefix=1.0)
    for b in range(4):
        k_v = int(round(float(out.prefix_seconds[b]) * 4))  # video latent frames in the prefix
        k_a = int(((torch.arange(48) + 0.5) / 12 < out.prefix_seconds[b]).sum())
        assert torch.all(seen["t_video"][b, :k_v] == 0) and torch.all(seen["t_video"][b, k_v:] > 0)
        assert torch.all(seen["t_audio"][b, :k_a] == 0) and torch.all(seen["t_audio"][b, k_a:] > 0)
        torch.testing.assert_close(seen["video"][b, :, :k_v], inputs["video"][b, :, :k_v])  # clean


def test_text_dropout(debug_model: AVDiT, inputs_factory) -> None:
    out = _loss(debug_model, inputs_factory(batch=4), p_drop_text=1.0)
    assert out.text_dropped.all()
    out = _loss(debug_model, inputs_factory(batch=4), p_drop_text=0.0)
    assert not out.text_dropped.any()


def test_loss_weights(debug_model: AVDiT, inputs_factory) -> None:
    inputs = inputs_factory(batch=4)
    out = _loss(debug_model, inputs, video_weight=0.0, audio_weight=2.0)
    torch.testing.assert_close(out.flow_loss, 2.0 * out.audio_loss)


def test_bucketed_losses(debug_model: AVDiT, inputs_factory) -> None:
    out = _loss(debug_model, inputs_factory(batch=8))
    buckets = out.by_t_bucket(4)
    assert set(buckets) == {f"{m}_t{q}" for m in ("video", "audio") for q in range(4)}
    assert any(torch.isfinite(v) for v in buckets.values())


def test_time_shift_moves_mass_towards_noise() -> None:
    t = torch.linspace(0.01, 0.99, 99)
    assert torch.all(time_shift(t, 3.0) > t) and torch.allclose(time_shift(t, 1.0), t)
    assert resolution_shift(1024, 256) == pytest.approx(2.0)
    assert resolution_shift(64, 256) == 1.0  # never below 1
    fm = FlowMatching()
    g = torch.Generator().manual_seed(0)
    few = fm.sample_t(4000, 256, torch.device("cpu"), g).mean()
    many = fm.sample_t(4000, 256 * 16, torch.device("cpu"), g).mean()
    assert many > few + 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(p_clean_video=0.7, p_clean_audio=0.6), "must be <= 1"),
        (dict(p_drop_text=1.5), "p_drop_text"),
        (dict(logit_std=0.0), "logit_std"),
        (dict(shift=-1.0), "shift"),
        (dict(video_weight=0.0, audio_weight=0.0), "loss weights"),
    ],
)
def test_bad_flow_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FlowConfig(**kwargs)
