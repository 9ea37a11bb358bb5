"""Latent statistics: normalized latents have zero mean and unit variance per channel."""

from __future__ import annotations

import pytest
import torch

from audio_codec import EncodecCodec
from audio_codec.stats import compute_latent_stats


def test_statistics_normalize_to_zero_mean_unit_variance(debug_codec: EncodecCodec) -> None:
    torch.manual_seed(0)
    batches = [0.2 * torch.randn(2, 1, 3000), 0.05 * torch.randn(1, 1, 5000), None]
    stats = compute_latent_stats(debug_codec, batches, progress=False)
    debug_codec.set_latent_stats(stats.mean, stats.std, stats.num_frames)
    with torch.inference_mode():
        z = torch.cat([debug_codec.encode(b).transpose(0, 1).reshape(8, -1) for b in batches if b is not None], 1)
        n = debug_codec.normalize(z.T[None].transpose(1, 2))[0]  # (D, frames)
    assert stats.num_frames == z.shape[1] == 2 * debug_codec.num_frames(3000) + debug_codec.num_frames(5000)
    assert torch.allclose(n.mean(dim=1), torch.zeros(8), atol=1e-4)
    assert torch.allclose(n.std(dim=1, unbiased=False), torch.ones(8), atol=1e-3)
    # Independent check of the running sums against torch's own reductions.
    assert torch.allclose(stats.mean, z.mean(dim=1), atol=1e-5)
    assert torch.allclose(stats.std, z.std(dim=1, unbiased=False), atol=1e-4)


def test_batches_as_loader_dicts_and_constant_channels(debug_codec: EncodecCodec) -> None:
    with torch.no_grad():
        # Make channel 0 constant: the last encoder conv's bias alone drives it.
        last = debug_codec.model.encoder.model[-1].conv.conv
        last.weight_g[0].zero_()  # weight norm: a zero gain zeroes the filter
    stats = compute_latent_stats(debug_codec, [{"audio": 0.1 * torch.randn(1, 1, 2000)}], progress=False)
    assert stats.std[0] > 0  # floored, so normalization stays finite
    debug_codec.set_latent_stats(stats.mean, stats.std, stats.num_frames)


def test_no_audio_is_an_error(debug_codec: EncodecCodec) -> None:
    with pytest.raises(ValueError, match="no audio"):
        compute_latent_stats(debug_codec, [None, None], progress=False)


def test_codec_without_stats_warns_once(debug_codec: EncodecCodec, caplog: pytest.LogCaptureFixture) -> None:
    z = torch.randn(1, 8, 4)
    assert not debug_codec.has_latent_stats
    assert torch.equal(debug_codec.normalize(z), z)
    debug_codec.normalize(z)
    assert caplog.text.count("no latent statistics") == 1
