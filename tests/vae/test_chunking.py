"""Chunked and tiled encoding/decoding: windows, blending, and agreement with whole-clip results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from av_model.vae import ChunkConfig, VideoAutoencoder
from av_model.vae.chunking import WindowAxis, blend_windows, count_windows, window_starts

from .conftest import moving_square_clips


@pytest.mark.parametrize(("size", "window", "overlap", "unit"), [(40, 16, 4, 4), (64, 32, 8, 4), (10, 16, 4, 1), (33, 8, 3, 1)])
def test_windows_cover_the_axis(size: int, window: int, overlap: int, unit: int) -> None:
    starts = window_starts(size, window, overlap, unit)
    length = min(window, size)
    covered = torch.zeros(size, dtype=torch.bool)
    for s in starts:
        covered[s : s + length] = True
    assert covered.all()
    assert starts[0] == 0 and starts[-1] + length == size
    assert all(s % unit == 0 for s in starts)
    assert all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))


def test_blending_is_exact_for_a_pointwise_function() -> None:
    x = torch.randn(1, 2, 20, 12, 12)
    axes = [WindowAxis(2, 8, 4), WindowAxis(3, 6, 2), WindowAxis(4, 5, 2)]
    out = blend_windows(lambda w: w * 2 + 1, x, axes)
    torch.testing.assert_close(out, x * 2 + 1)
    assert count_windows(x.shape, axes) > 10


def test_blending_maps_window_sizes_through_the_compression() -> None:
    x = torch.randn(1, 3, 24, 16, 16)
    # a "4x temporal, 2x spatial" pointwise-in-blocks encoder: average pooling
    pool = lambda w: F.avg_pool3d(w, (4, 2, 2))  # noqa: E731
    axes = [WindowAxis(2, 8, 4, unit=4, scale_num=1, scale_den=4), WindowAxis(3, 8, 4, 2, 1, 2)]
    torch.testing.assert_close(blend_windows(pool, x, axes), pool(x))


def test_chunked_matches_whole_within_the_reconstruction_error(trained_vae: VideoAutoencoder) -> None:
    x = moving_square_clips(2, frames=24, size=48, seed=5)
    chunks = ChunkConfig(chunk_frames=8, overlap_frames=4, tile_size=32, tile_overlap=16)
    with torch.no_grad():
        z = trained_vae.encode(x)
        z_chunked = trained_vae.encode_chunked(x, chunks)
        recon = trained_vae.decode(z)
        recon_chunked = trained_vae.decode_chunked(z, chunks)
    assert z_chunked.shape == z.shape and recon_chunked.shape == recon.shape == x.shape
    recon_error = (recon - x).abs().mean()
    assert (recon_chunked - recon).abs().mean() < recon_error
    assert (trained_vae.decode(z_chunked) - recon).abs().mean() < recon_error


def test_chunking_handles_images_and_short_clips(tiny_vae: VideoAutoencoder) -> None:
    chunks = ChunkConfig(chunk_frames=8, overlap_frames=4, tile_size=16, tile_overlap=8)
    with torch.no_grad():
        image = torch.rand(1, 3, 1, 32, 32) * 2 - 1
        z = tiny_vae.encode_chunked(image, chunks)
        assert z.shape == (1, 4, 1, 4, 4)
        assert tiny_vae.decode_chunked(z, chunks, num_frames=1).shape == image.shape
        short = torch.rand(1, 3, 4, 16, 16) * 2 - 1  # shorter and smaller than one window
        torch.testing.assert_close(tiny_vae.encode_chunked(short, chunks), tiny_vae.encode(short))


def test_chunk_sizes_must_fit_the_compression(tiny_vae: VideoAutoencoder) -> None:
    x = torch.zeros(1, 3, 16, 32, 32)
    with pytest.raises(ValueError, match="multiples of the temporal compression 4"):
        tiny_vae.encode_chunked(x, ChunkConfig(chunk_frames=6, overlap_frames=2))
    with pytest.raises(ValueError, match="multiples of the spatial compression 8"):
        tiny_vae.encode_chunked(x, ChunkConfig(chunk_frames=8, overlap_frames=4, tile_size=20, tile_overlap=8))
    with pytest.raises(ValueError, match="overlap_frames must be in"):
        ChunkConfig(chunk_frames=8, overlap_frames=8)
