"""One clock: rotary positions from seconds align modalities and are invariant to time shifts."""

from __future__ import annotations

import math

import pytest
import torch

from av_model.dit import AVDiT
from av_model.dit.rope import AVRotary, TokenLayout, TokenSpan, apply_rotary


def _rotary() -> AVRotary:
    return AVRotary(head_dim=32, dims=(16, 8, 8), time_min_period=0.1, time_max_period=1000.0, space_theta=100.0)


@pytest.mark.parametrize(
    ("fps", "t_comp", "patch_t", "audio_rate", "group"),
    # Geometries chosen so that some token centres coincide (a video token spanning an odd number
    # of audio tokens); the default 16 fps / 75 Hz has none, so its check is the second half below.
    [
        (20.0, 4, 1, 75.0, 3),  # 5 video latents/s, 25 audio tokens/s
        (16.0, 4, 1, 48.0, 4),  # 4 video latents/s, 12 audio tokens/s
        (40.0, 4, 2, 75.0, 1),  # two latent frames per video token, ungrouped 75 Hz audio
        (24.0, 8, 1, 75.0, 1),  # 3 video latents/s
    ],
)
def test_video_and_audio_tokens_of_the_same_instant_rotate_identically(
    fps: float, t_comp: int, patch_t: int, audio_rate: float, group: int
) -> None:
    video_rate = fps / t_comp
    lay = TokenLayout(video_frames=8, video_height=2, video_width=2, audio_tokens=200,
                      video_token_seconds=patch_t / video_rate, audio_token_seconds=group / audio_rate)
    rot = _rotary()
    cos, sin = rot(lay.positions())
    n_t = rot.dims[0] // 2
    pos = lay.positions()
    video_idx = torch.arange(lay.video_tokens)
    audio_idx = torch.arange(lay.video_tokens, lay.num_tokens)
    pairs = 0
    for i in video_idx:
        # audio tokens whose centre time equals this video token's centre time
        same = audio_idx[(pos[audio_idx, 0] - pos[i, 0]).abs() < 1e-9]
        for j in same:
            torch.testing.assert_close(cos[i, :n_t], cos[j, :n_t], atol=1e-6, rtol=0)
            torch.testing.assert_close(sin[i, :n_t], sin[j, :n_t], atol=1e-6, rtol=0)
            pairs += 1
    # Also for arbitrary instants: the temporal rotation is a function of seconds only.
    t = torch.tensor([[0.37, 0.0, 0.0], [0.37, 5.0, 3.0]], dtype=torch.float64)
    c2, s2 = rot(t)
    torch.testing.assert_close(c2[0, :n_t], c2[1, :n_t])
    torch.testing.assert_close(s2[0, :n_t], s2[1, :n_t])
    assert pairs > 0


def test_default_geometry_token_times() -> None:
    lay = TokenLayout(video_frames=8, video_height=4, video_width=4, audio_tokens=50,
                      video_token_seconds=1 / 4.0, audio_token_seconds=3 / 75.0)
    assert lay.num_tokens == 128 + 50
    torch.testing.assert_close(lay.video_times()[:2], torch.tensor([0.125, 0.375], dtype=torch.float64))
    torch.testing.assert_close(lay.audio_times()[:2], torch.tensor([0.02, 0.06], dtype=torch.float64))
    pos = lay.positions()
    assert torch.all(pos[128:, 1] == 1.5) and torch.all(pos[128:, 2] == 1.5)  # audio at the frame centre


def test_shifting_both_modalities_in_time_leaves_attention_scores_unchanged() -> None:
    lay = TokenLayout(video_frames=4, video_height=2, video_width=2, audio_tokens=12,
                      video_token_seconds=0.25, audio_token_seconds=1 / 12)
    rot = _rotary()
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, lay.num_tokens, 32, generator=g)
    k = torch.randn(1, 2, lay.num_tokens, 32, generator=g)

    def scores(offset: float) -> torch.Tensor:
        cos, sin = rot(lay.positions(time_offset=offset))
        return apply_rotary(q, cos, sin) @ apply_rotary(k, cos, sin).transpose(-1, -2)

    base = scores(0.0)
    for offset in (0.5, 3.7, 123.456):
        torch.testing.assert_close(scores(offset), base, atol=2e-4, rtol=1e-4)
    # A shift of one modality alone does change them (the test can fail).
    cos, sin = rot(lay.positions())
    pos = lay.positions()
    pos[lay.video_tokens :, 0] += 0.3
    cos2, sin2 = rot(pos)
    moved = apply_rotary(q, cos2, sin2) @ apply_rotary(k, cos2, sin2).transpose(-1, -2)
    assert (moved - base).abs().max() > 1e-2


def test_model_output_does_not_depend_on_absolute_time(debug_model: AVDiT, inputs_factory, randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory()
    with torch.no_grad():
        a = model(**inputs)
        b = model(**inputs, time_offset=42.25)
    torch.testing.assert_close(b.video, a.video, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.audio, a.audio, atol=1e-4, rtol=1e-4)


def test_rotation_preserves_norms_and_highest_frequency_does_not_alias() -> None:
    rot = _rotary()
    x = torch.randn(1, 1, 5, 32)
    cos, sin = rot(torch.rand(5, 3, dtype=torch.float64) * 10)
    torch.testing.assert_close(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1))
    # 25 audio tokens/s are 0.04 s apart: under half the shortest period (0.1 s), so no aliasing.
    assert float(rot.omega_time.max()) * 0.04 < math.pi


def test_token_spans_modulate_like_the_whole_layout() -> None:
    """Sequence parallelism's shares (the last one ending in padding) modulate each token by its own slot."""
    lay = TokenLayout(video_frames=3, video_height=2, video_width=2, audio_tokens=5, video_token_seconds=0.25,
                      audio_token_seconds=0.04)  # 12 video + 5 audio = 17 tokens: 3 shares of 6, 1 padded
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 17, 8, generator=g)
    shift, scale, gate = (torch.randn(2, lay.num_slots, 8, generator=g) for _ in range(3))
    spans = [TokenSpan.of(lay, start, 6) for start in (0, 6, 12)]
    assert [s.valid for s in spans] == [6, 6, 5]
    padded = torch.nn.functional.pad(x, (0, 0, 0, 1))
    pieces = [s.modulate(padded[:, i * 6 : i * 6 + 6], shift, scale) for i, s in enumerate(spans)]
    torch.testing.assert_close(torch.cat(pieces, dim=1)[:, :17], lay.modulate(x, shift, scale))
    gated = [s.gate(padded[:, i * 6 : i * 6 + 6], gate) for i, s in enumerate(spans)]
    torch.testing.assert_close(torch.cat(gated, dim=1)[:, :17], lay.gate(x, gate))
