"""ImageBind AV score: the official key layout at tiny sizes, av-benchmark's inputs, and the floor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.features.imagebind import (
    ImageBindAV,
    ImageBindConfig,
    ImageBindExtractor,
    audio_clips,
    clip_timepoints,
    video_clips,
)
from eval.features.weights import WeightPaths
from eval.metrics.base import MetricOptions
from eval.metrics.floors import pair_floor
from eval.metrics.imagebind import ImageBindScore
from eval.sets import load_set

TINY = ImageBindConfig(vision_dim=16, vision_blocks=1, vision_heads=2, audio_dim=16, audio_blocks=1, audio_heads=2,
                       out_dim=8)


def save_tiny_imagebind(path: Path) -> Path:
    """Random vision/audio towers plus a few keys of the other modalities, as imagebind_huge.pth has."""
    torch.manual_seed(0)
    state = ImageBindAV(TINY).state_dict()
    state = {k: v + 0.1 * torch.randn_like(v) for k, v in state.items()}
    state["modality_trunks.text.blocks.0.norm_1.weight"] = torch.ones(16)
    state["modality_postprocessors.text.1.log_logit_scale"] = torch.tensor(2.0)
    torch.save(state, path)
    return path


def test_official_key_layout() -> None:
    with torch.device("meta"):
        huge = ImageBindAV().state_dict()
    assert huge["modality_preprocessors.vision.rgbt_stem.proj.1.weight"].shape == (1280, 3, 2, 14, 14)
    assert huge["modality_preprocessors.vision.pos_embedding_helper.pos_embed"].shape == (1, 257, 1280)
    assert huge["modality_preprocessors.audio.rgbt_stem.proj.weight"].shape == (768, 1, 16, 16)
    assert huge["modality_preprocessors.audio.pos_embedding_helper.pos_embed"].shape == (1, 229, 768)
    assert huge["modality_trunks.audio.blocks.11.attn.bias_k"].shape == (1, 1, 768)
    assert huge["modality_trunks.vision.pre_transformer_layer.0.weight"].shape == (1280,)
    assert huge["modality_heads.vision.2.weight"].shape == (1024, 1280)
    assert "modality_postprocessors.audio.1.log_logit_scale" in huge
    assert len(huge) == 569  # every vision and audio key of imagebind_huge.pth


def test_tiny_file_loads_and_other_modalities_are_set_aside(tmp_path: Path) -> None:
    ext = ImageBindExtractor(save_tiny_imagebind(tmp_path / "imagebind_huge.pth"))
    assert ext.ignored_modalities == ["text"]
    assert ext.weight_hash.startswith("sha256:")


def test_inputs_follow_av_benchmark() -> None:
    assert clip_timepoints(8.0) == [(0.0, 2.0), (3.0, 5.0), (6.0, 8.0)]
    a = audio_clips(torch.randn(1, 16000 * 8))
    assert a.shape == (3, 1, 128, 204)
    torch.testing.assert_close(a[..., 198:], torch.full((3, 1, 128, 6), 4.268 / 9.138))  # 198 frames, padded to 204
    v = video_clips(np.zeros((4, 90, 160, 3), np.uint8))  # 4 frames at 0.5 fps, 16:9
    assert v.shape == (9, 3, 2, 224, 224)  # 3 crops x 3 consecutive pairs
    black = (0 - 0.48145466) / 0.26862954
    assert v[0, 0].mean().item() == pytest.approx(black, abs=1e-5)


def test_pair_floor_separates_matched_from_mismatched() -> None:
    rng = np.random.default_rng(0)
    e = rng.standard_normal((12, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    m = 100 * e @ e.T  # matched pairs: 100; mismatched: near 0
    fl = pair_floor(m, higher_is_better=True, n_boot=200, ci_level=0.95, seed=0)
    assert fl.value == pytest.approx(100.0) and abs(fl.floor) < 15 and fl.cleared
    assert fl.gap_ci[0] > 50 and fl.n_pairs == 12 * 11
    same = pair_floor(np.full((6, 6), 3.0), higher_is_better=False, n_boot=50, ci_level=0.95, seed=0)
    assert same.value == same.floor and not same.cleared


def test_imagebind_metric(write_set: Callable[..., Path], tmp_path: Path) -> None:
    clips = load_set(write_set("ib", 2, duration=4.0))
    opts = MetricOptions(weights=WeightPaths(imagebind=str(save_tiny_imagebind(tmp_path / "ib.pth"))), n_boot=20)
    r = ImageBindScore().evaluate(clips, None, opts, {"progress": False})
    assert r.ok and -100.0 <= r.value <= 100.0 and np.isfinite(r.extra["floor"])
    assert r.weights["imagebind"].startswith("sha256:") and r.extra["floor_pairs"] == 2
    assert set(r.per_clip) == {rec.id for rec in clips}
