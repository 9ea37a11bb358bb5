"""Fixtures of the video autoencoder tests: tiny models and clips of a moving square, all on CPU."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from av_model.vae import VAEConfig, VideoAutoencoder, get_preset


def moving_square_clips(n: int, frames: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """`(n, 3, frames, size, size)` in [-1, 1]: a coloured square moving in a straight line on a dark background."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.full((n, 3, frames, size, size), -0.7)
    for i in range(n):
        colour = torch.rand(3, generator=g) * 1.6 - 0.6
        x0, y0 = (torch.rand(2, generator=g) * (size - 10)).tolist()
        vx, vy = ((torch.rand(2, generator=g) - 0.5) * 2).tolist()
        for t in range(frames):
            x = int(min(max(x0 + vx * t, 0), size - 8))
            y = int(min(max(y0 + vy * t, 0), size - 8))
            clips[i, :, t, y : y + 8, x : x + 8] = colour[:, None, None]
    return clips


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and OpenMP threads that spin-wait on a busy
    2-core machine make a step an order of magnitude slower than one thread does."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_vae() -> VideoAutoencoder:
    torch.manual_seed(0)
    return VideoAutoencoder(get_preset("debug")).eval()


@pytest.fixture(scope="session")
def trained_vae() -> VideoAutoencoder:
    """A tiny autoencoder fitted for a few seconds on moving squares, so reconstructions mean something."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = VAEConfig(temporal_compression=4, spatial_compression=8, latent_channels=8, patch_size=2,
                    channels=(8, 8, 8))
    vae = VideoAutoencoder(cfg)
    data = moving_square_clips(16, frames=8, size=32)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for step in range(60):
        x = data[(step * 2) % 16 : (step * 2) % 16 + 2]
        loss = (vae(x, sample=False).recon - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(before)
    return vae.eval()
