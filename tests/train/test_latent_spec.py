"""The latent contract: `LatentSpec` read from a cache's metadata, and `LatentCodec`, which both encoders are."""

from __future__ import annotations

import dataclasses

import pytest

from av_model.cache.format import CacheError, LatentCodec, LatentSpec

from .conftest import FPS, SIZE, Encoders, meta_for


def test_spec_reads_the_cache_metadata(encoders: Encoders) -> None:
    meta = meta_for(encoders)
    spec = meta.spec
    assert spec == LatentSpec.from_meta(meta.to_json())  # a CacheMeta or its JSON (as checkpoints keep it)
    vae, codec = encoders.vae, encoders.codec
    assert spec.fps == FPS and spec.size == SIZE
    assert (spec.temporal_compression, spec.spatial_compression) == (vae.temporal_compression, vae.spatial_compression)
    assert spec.video_rate == FPS / vae.temporal_compression == meta.video_rate
    assert (spec.sample_rate, spec.hop_length, spec.audio_rate) == (codec.sample_rate, codec.hop_length, codec.frame_rate)
    assert (spec.video_latent_dim, spec.audio_latent_dim) == (vae.latent_dim, codec.latent_dim)
    assert spec.text_dims == tuple(encoders.text.dims)
    assert spec.fingerprint("vae") == vae.fingerprint and spec.fingerprint("codec") == codec.fingerprint
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.fps = 8.0  # type: ignore[misc]


def test_spec_names_a_missing_field(encoders: Encoders) -> None:
    data = meta_for(encoders).to_json()
    del data["audio"]["hop_length"]
    with pytest.raises(CacheError, match="hop_length"):
        LatentSpec.from_meta(data)
    data = meta_for(encoders).to_json()
    data["video"]["height"] = None
    assert LatentSpec.from_meta(data).size is None


def test_both_encoders_are_latent_codecs(encoders: Encoders) -> None:
    assert isinstance(encoders.codec, LatentCodec) and isinstance(encoders.vae, LatentCodec)
    assert not isinstance(encoders.text, LatentCodec)
