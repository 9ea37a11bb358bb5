"""What the codec's discriminator judges: `loss.disc_clips` and `loss.disc_seconds`."""

from __future__ import annotations

import pytest
import torch

from audio_codec import get_preset
from audio_codec.lit import CodecLitModule, LossConfig


def _module(**loss: object) -> CodecLitModule:
    return CodecLitModule(codec=get_preset("debug"), loss=LossConfig(disc_filters=4, disc_n_ffts=[256, 512], **loss))


def test_window_takes_the_first_clips_and_one_random_span_of_both() -> None:
    module = _module(disc_clips=2, disc_seconds=0.05)  # 1200 samples at 24 kHz
    x = torch.arange(4 * 6000, dtype=torch.float32).reshape(4, 1, 6000)
    y = -x
    torch.manual_seed(0)
    starts = set()
    for _ in range(8):
        x_d, y_d = module._disc_window(x, y)
        assert x_d.shape == y_d.shape == (2, 1, 1200)
        assert torch.equal(y_d, -x_d)  # the same span of real and reconstructed audio
        assert torch.equal(x_d[1] - x_d[0], torch.full((1, 1200), 6000.0))  # clips 0 and 1, aligned
        starts.add(int(x_d[0, 0, 0]))
    assert len(starts) > 1  # the span moves between steps


def test_zero_means_everything() -> None:
    x, y = torch.randn(3, 1, 4000), torch.randn(3, 1, 4000)
    x_d, y_d = _module()._disc_window(x, y)
    assert x_d is x and y_d is y


@pytest.mark.parametrize("loss, match", [
    (dict(disc_clips=-1), "disc_clips and loss.disc_seconds must be >= 0"),
    (dict(disc_seconds=float("nan")), "disc_seconds must be >= 0"),
    (dict(disc_seconds=0.01), "shorter than the discriminator's largest FFT"),  # 240 samples < 512
])
def test_bad_settings_are_refused(loss: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _module(**loss)


def test_bf16_discriminator_returns_fp32_close_to_the_fp32_one() -> None:
    torch.manual_seed(0)
    exact, fast = _module(), _module(disc_bf16=True)
    fast.disc.load_state_dict(exact.disc.state_dict())
    audio = 0.3 * torch.randn(2, 1, 4000)
    (logits32, maps32), (logits16, maps16) = exact._judge(audio), fast._judge(audio)
    assert all(t.dtype == torch.float32 for t in [*logits16, *maps16[0]])
    for a, b in zip([*logits32, *maps32[0]], [*logits16, *maps16[0]]):
        assert (a - b).abs().mean() <= 0.05 * a.abs().mean() + 1e-6
