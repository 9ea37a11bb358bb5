"""Codec configs: presets, validation, and the YAML files in configs/codec/."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import yaml

from audio_codec import PRESETS, CodecConfig, EncodecCodec, get_preset
from audio_codec.data import CodecDataModule
from audio_codec.lit import LossConfig
from avtrain.optim import OptimConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "codec").glob("*.yaml"))


@pytest.mark.parametrize(("name", "hop", "rate", "dim"), [
    ("encodec_24khz", 320, 75.0, 128), ("encodec_48khz", 320, 150.0, 128), ("small", 320, 75.0, 16),
    ("debug", 64, 375.0, 8),
])
def test_preset_geometry(name: str, hop: int, rate: float, dim: int) -> None:
    cfg = get_preset(name)
    assert (cfg.hop_length, cfg.frame_rate, cfg.dimension) == (hop, rate, dim)


def test_official_bandwidths_match_encodec() -> None:
    # EnCodec 24 kHz: 0.75 kbps per codebook, 32 codebooks at 24 kbps; 48 kHz: 1.5 kbps, 16.
    c24, c48 = get_preset("encodec_24khz"), get_preset("encodec_48khz")
    assert c24.bandwidth_per_codebook == pytest.approx(0.75)
    assert [c24.codebooks_for_bandwidth(b) for b in c24.target_bandwidths] == [2, 4, 8, 16, 32]
    assert [c48.codebooks_for_bandwidth(b) for b in c48.target_bandwidths] == [2, 4, 8, 16]


def test_get_preset_copies_and_overrides() -> None:
    cfg = get_preset("small", dimension=32)
    assert cfg.dimension == 32 and PRESETS["small"].dimension == 16
    with pytest.raises(KeyError, match="unknown codec preset"):
        get_preset("tiny")
    with pytest.raises(ValueError, match="unknown CodecConfig field"):
        get_preset("small", dimensions=3)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("bins", 300, "power of two"),
    ("channels", 3, "mono"),
    ("overlap_seconds", 6.0, "overlap_seconds"),
    ("target_bandwidths", [100.0], "codebooks"),
    ("norm", "batch_norm", "norm"),
    ("dimension", 0, "positive"),
])
def test_bad_config_is_refused(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_preset("small", **{field: value})


def test_chunks_must_hold_two_frames() -> None:
    with pytest.raises(ValueError, match="fewer than 2 latent frames"):
        get_preset("small", chunk_seconds=0.01, overlap_seconds=0.0)


@pytest.mark.parametrize("overrides", [{}, {"causal": True}, {"n_residual_layers": 2, "dilation_base": 3},
                                       {"ratios": [5, 4, 2], "kernel_size": 5}])
def test_receptive_fields_match_autograd(overrides: dict) -> None:
    torch.manual_seed(0)
    cfg = get_preset("debug", **overrides)
    model = EncodecCodec(cfg).model
    # Encoder: the input samples one latent frame (far from the padded ends) has a gradient on.
    x = torch.randn(1, 1, 64 * cfg.hop_length, requires_grad=True)
    model.encoder(x)[0, :, 32].sum().backward()
    assert x.grad is not None
    seen = x.grad[0, 0].nonzero()
    assert int(seen.max() - seen.min()) + 1 == cfg.encoder_receptive_field
    # Decoder: first to last latent frame that the samples of one frame depend on.
    z = torch.randn(1, cfg.dimension, 64, requires_grad=True)
    y = model.decoder(z)
    spans = []
    for u in range(32 * cfg.hop_length, 33 * cfg.hop_length):
        (grad,) = torch.autograd.grad(y[0, 0, u], z, retain_graph=True)
        frames = grad[0].abs().sum(0).nonzero()
        spans.append(int(frames.max() - frames.min()))
    assert max(spans) == math.ceil(cfg.decoder_receptive_span)


def test_edge_frames_of_presets_fit_their_overlap() -> None:
    # debug: encoder field 580 samples = 9.05 hops -> 10 frames; the others 2718 samples at hop 320.
    assert [PRESETS[n].edge_frames for n in ("debug", "small", "encodec_24khz", "encodec_48khz")] == [10, 9, 9, 9]
    assert all(cfg.overlap_frames >= 2 * cfg.edge_frames for cfg in PRESETS.values())


def test_overlap_shorter_than_the_receptive_field_is_refused() -> None:
    # 0.05 s at 375 frames/s is 19 frames; the debug codec's chunk edges corrupt 10 frames each.
    with pytest.raises(ValueError, match=r"share at least 20 frames; set overlap_seconds >= 0\.05333"):
        get_preset("debug", overlap_seconds=0.05)


def test_causal_group_norm_is_refused() -> None:
    with pytest.raises(ValueError, match="not causal"):
        get_preset("encodec_48khz", causal=True)


def test_config_dict_round_trip() -> None:
    cfg = get_preset("encodec_48khz")
    assert CodecConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_yaml_configs_are_serialized_dataclasses(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    model = doc["model"]
    # Every field written out, so the file documents the whole run.
    for section, cls in ((model["codec"], CodecConfig), (model["loss"], LossConfig), (model["optimizer"], OptimConfig)):
        assert set(section) == {f.name for f in dataclasses.fields(cls)}, cls.__name__
    codec = CodecConfig(**model["codec"])
    LossConfig(**model["loss"])
    OptimConfig(**model["optimizer"])
    CodecDataModule(**doc["data"])
    if codec.name in PRESETS and model.get("init_from") is None:
        # A preset's YAML spells the preset out exactly (fine-tuning configs may differ).
        assert codec == PRESETS[codec.name]
    assert set(doc) >= {"model", "data", "trainer"}
