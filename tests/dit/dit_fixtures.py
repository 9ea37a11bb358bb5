"""Tiny transformer configs and inputs shared by the transformer, flow and sampler tests."""

from __future__ import annotations

import torch

from av_model.dit import DiTConfig, get_preset
from av_model.text import TextBatch

VIDEO_RATE = 4.0  # latent frames per second (16 fps / 4)
AUDIO_RATE = 12.0  # a small audio latent rate keeps the tests fast


def small_config(**overrides: object) -> DiTConfig:
    """The debug preset with few channels, so a forward pass takes milliseconds."""
    base: dict[str, object] = dict(video_channels=4, audio_channels=8, text_dims=(16,))
    base.update(overrides)
    return get_preset("debug", **base)


def make_inputs(batch: int = 2, seed: int = 0, frames_v: int = 4, frames_a: int = 24,
                text_dims: tuple[int, ...] = (16,)) -> dict[str, object]:
    """Keyword arguments of `AVDiT.forward` for `small_config()`: latents, times, text, rates."""
    g = torch.Generator().manual_seed(seed)
    text = TextBatch(
        tuple(torch.randn(batch, 3, d, generator=g) for d in text_dims),
        tuple(torch.ones(batch, 3, dtype=torch.bool) for _ in text_dims),
    )
    return dict(
        video=torch.randn(batch, 4, frames_v, 4, 4, generator=g),
        audio=torch.randn(batch, 8, frames_a, generator=g),
        t_video=torch.rand(batch, generator=g),
        t_audio=torch.rand(batch, generator=g),
        text=text,
        video_rate=VIDEO_RATE,
        audio_rate=AUDIO_RATE,
    )


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Overwrite the zero initializations so every path of the model carries signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model
