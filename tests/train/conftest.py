"""Fixtures of the training tests: tiny encoders saved to disk, latent caches, a trained checkpoint.

Geometry of the test caches: 32x32 frames at 16 fps, 24 kHz mono audio, a debug video autoencoder
(4x8x8 compression, 4 channels) and a debug codec with hop 320 (75 latent frames/s, 8 channels).
A 1 s clip is 16 video + 25 audio tokens for the debug DiT, so a training step takes milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from av_model.cache.format import (
    SHARD_DIR,
    CacheEntry,
    CacheMeta,
    write_index,
    write_meta,
    write_shard,
)

SIZE = (32, 32)
FPS = 16.0


@pytest.fixture(scope="package", autouse=True)
def _single_thread() -> object:
    """One intra-op thread while these tests run: the tiny models gain nothing from a second one, and
    on a busy machine OpenMP threads waiting for each other make a step ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Encoders:
    """Paths and loaded objects of the tiny codec and video autoencoder, plus the text encoder."""

    codec_path: Path
    vae_path: Path
    codec: object
    vae: object
    text: object


@pytest.fixture(scope="package")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> Encoders:
    from audio_codec import EncodecCodec
    from audio_codec import get_preset as codec_preset
    from av_model.text import load_text_encoder
    from av_model.vae import VideoAutoencoder
    from av_model.vae import get_preset as vae_preset

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("encoders")
    codec = EncodecCodec(codec_preset("debug", ratios=[8, 8, 5], target_bandwidths=[0.45, 0.9, 1.8], chunk_seconds=None)).eval()
    vae = VideoAutoencoder(vae_preset("debug")).eval()
    codec.save(root / "codec.pt")
    vae.save(str(root / "vae.pt"))
    return Encoders(root / "codec.pt", root / "vae.pt", codec, vae, load_text_encoder("minilm"))


def meta_for(enc: Encoders, *, num_shards: int = 1, extra_build: dict | None = None) -> CacheMeta:
    """Cache metadata consistent with the tiny encoders (what `avgen cache build` would write)."""
    return CacheMeta(
        fingerprints={"codec": enc.codec.fingerprint, "vae": enc.vae.fingerprint, "text": enc.text.fingerprint},
        encoders={"codec": str(enc.codec_path), "vae": str(enc.vae_path), "text": ["minilm"]},
        video={"fps": FPS, "height": SIZE[0], "width": SIZE[1], "latent_dim": enc.vae.latent_dim,
               "latent_rate": FPS / enc.vae.temporal_compression,
               "temporal_compression": enc.vae.temporal_compression,
               "spatial_compression": enc.vae.spatial_compression},
        audio={"sample_rate": enc.codec.sample_rate, "channels": enc.codec.channels,
               "latent_dim": enc.codec.latent_dim, "latent_rate": enc.codec.frame_rate,
               "hop_length": enc.codec.hop_length},
        text={"dims": list(enc.text.dims), "specs": ["minilm"]},
        build={"manifest_sha256": "test", "split": None, "shard_size": 64, **(extra_build or {})},
        num_shards=num_shards,
    )


CAPTIONS = ["a red ball bounces on the floor", "a blue square flashes with a beep",
            "two balls collide with a click", "a green ring slides and hits the wall"]


def write_fake_cache(root: Path, enc: Encoders, splits: dict[str, int], *, durations: tuple[float, ...] = (1.0,),
                     seed: int = 0, nan_video: bool = False) -> Path:
    """A complete cache of random latents shaped like the tiny encoders' output.

    Args:
        splits: clips per split.
        durations: clips cycle through these durations (several give several buckets).
        nan_video: every video latent is NaN (for the NaN guard).
    """
    g = torch.Generator().manual_seed(seed)
    meta = meta_for(enc)
    tc, sc = enc.vae.temporal_compression, enc.vae.spatial_compression
    tensors, rows = {}, []
    texts = enc.text.encode(CAPTIONS)
    n = 0
    for split, count in splits.items():
        for i in range(count):
            d = durations[i % len(durations)]
            cid = f"{split}-{i:04d}"
            frames = round(d * FPS)
            video = torch.randn(enc.vae.latent_dim, frames // tc, SIZE[0] // sc, SIZE[1] // sc, generator=g)
            if nan_video:
                video.fill_(math.nan)
            audio = torch.randn(enc.codec.latent_dim, math.ceil(d * enc.codec.frame_rate), generator=g)
            k = n % len(CAPTIONS)
            length = int(texts.masks[0][k].sum())
            tensors[f"{cid}/video"] = video
            tensors[f"{cid}/audio"] = audio
            tensors[f"{cid}/text_0"] = texts.embeddings[0][k, :length]
            tensors[f"{cid}/text_mask_0"] = texts.masks[0][k, :length]
            rows.append(CacheEntry(id=cid, caption=CAPTIONS[k], split=split, duration=d, fps=FPS, height=SIZE[0],
                                   width=SIZE[1], shard="shard_00000.safetensors", video_shape=tuple(video.shape),
                                   audio_shape=tuple(audio.shape), text_lengths=(length,)))
            n += 1
    root.mkdir(parents=True, exist_ok=True)
    write_shard(root / SHARD_DIR / "shard_00000.safetensors", tensors, rows)
    meta.shards = [{"name": "shard_00000.safetensors", "clips": len(rows), "skipped": []}]
    meta.complete = True
    write_index(root, rows)
    write_meta(root, meta)
    return root


@pytest.fixture(scope="package")
def fake_cache(tmp_path_factory: pytest.TempPathFactory, encoders: Encoders) -> Path:
    """16 train clips (1 s and 2 s: two buckets) and 4 validation clips of random latents."""
    return write_fake_cache(tmp_path_factory.mktemp("cache") / "cache", encoders, {"train": 16, "val": 4},
                            durations=(1.0, 2.0))


def fit_args(cache: Path, root: Path, *extra: str) -> list[str]:
    """Arguments of a fast debug `avgen fit` on a test cache."""
    return [
        "-c", "configs/dit/debug.yaml",
        "--data.cache_dir", str(cache),
        "--data.num_workers", "0",
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory, fake_cache: Path, encoders: Encoders) -> Path:
    """A debug generator trained for a few steps with validation and sample clips; returns its run dir."""
    from av_model.train.cli import fit_main

    root = tmp_path_factory.mktemp("run")
    rc = fit_main(fit_args(fake_cache, root, "--trainer.max_steps", "4", "--trainer.val_check_interval", "4",
                           "--trainer.log_every_n_steps", "1", "--checkpoint.every_n_train_steps", "2",
                           "--throughput.window_size", "2", "--throughput.peak_tflops", "1.0",
                           "--samples.codec", str(encoders.codec_path), "--samples.vae", str(encoders.vae_path),
                           "--samples.num_samples", "1", "--samples.steps", "2"))
    assert rc == 0
    return root
