"""DeSync: Synchformer's official layout at tiny sizes, av-benchmark's segments and scoring, the floor.

A random tiny Synchformer has not learned which way sound leads picture, so the shift checks test
the mechanics the number rests on: both streams are cut on the same 0.32 s grid (a sound and a
flash at the same instant land in the same segments, and a 0.32 s audio shift moves the sound by
one segment), the score reads the first and the last 14 segments and averages |grid offset|, and,
end to end on mp4 files, a stand-in model whose features encode time reads a 0.4 s audio delay as
DeSync 0.4 s and an in-sync clip as 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.features.desync import SynchformerExtractor, audio_segments, desync_of, resize_crop, video_segments
from eval.features.synchformer import (
    OFFSET_GRID,
    Synchformer,
    SynchformerConfig,
    synchformer_config_from_state,
)
from eval.features.weights import WeightPaths
from eval.metrics.base import MetricOptions
from eval.metrics.desync import DeSync
from eval.sets import load_set

TINY = SynchformerConfig(dim=16, v_depth=1, v_heads=2, v_mlp=32, a_depth=1, a_heads=2, a_mlp=32, agg_mlp_v=32,
                         agg_mlp_a=32, s_depth=1, s_heads=8, s_mlp=32)


def save_tiny_synchformer(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = Synchformer(TINY)
    for p in model.parameters():  # the reference zero-initialises several tensors; make every one matter
        torch.nn.init.normal_(p, std=0.2)
    torch.save(model.state_dict(), path)
    return path


def test_official_layout_and_sizes_read_from_the_state_dict(tmp_path: Path) -> None:
    with torch.device("meta"):  # shapes only: no 237M parameters to initialise
        full = Synchformer().state_dict()
    assert full["vfeat_extractor.pos_embed"].shape == (1, 197, 768)
    assert full["vfeat_extractor.patch_embed_3d.proj.weight"].shape == (768, 3, 2, 16, 16)
    assert full["afeat_extractor.ast.embeddings.position_embeddings"].shape == (1, 74, 768)
    assert full["transformer.pos_emb_cfg.pos_emb"].shape == (1, 198, 768)
    assert full["transformer.off_head.weight"].shape == (21, 768)
    assert synchformer_config_from_state(full) == SynchformerConfig()
    tiny = Synchformer(TINY).state_dict()
    assert {re.sub(r"\.\d+\.", ".N.", k) for k in tiny} == {re.sub(r"\.\d+\.", ".N.", k) for k in full}
    assert synchformer_config_from_state(tiny) == TINY
    ext = SynchformerExtractor(save_tiny_synchformer(tmp_path / "synchformer_state_dict.pth"))
    assert ext.weight_hash.startswith("sha256:")
    broken = dict(tiny)
    broken.pop("transformer.MOD_tok")
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="MOD_tok"):
        SynchformerExtractor(tmp_path / "broken.pth")


def test_offset_grid() -> None:
    assert OFFSET_GRID.shape == (21,)
    np.testing.assert_allclose(OFFSET_GRID.numpy(), np.round(np.arange(-2.0, 2.01, 0.2), 6), atol=1e-6)
    assert OFFSET_GRID[10].item() == 0.0  # an in-sync prediction scores exactly 0


def test_both_streams_share_the_segment_clock() -> None:
    def active_audio(at: float) -> list[int]:
        wav = torch.zeros(16000 * 5)
        wav[int(at * 16000)] = 1.0
        spec = audio_segments(wav)  # (S, 128, 66)
        energy = spec.mean(dim=(1, 2))
        return torch.nonzero(energy > energy.min() + 1e-3).flatten().tolist()

    def active_video(at: float) -> list[int]:
        frames = np.zeros((125, 32, 32, 3), np.uint8)
        frames[int(round(at * 25))] = 255
        seg = video_segments(resize_crop(frames))  # (S, 16, 3, 224, 224)
        return torch.nonzero(seg.amax(dim=(1, 2, 3, 4)) > 0).flatten().tolist()

    assert active_audio(1.0) == active_video(1.0) == [2, 3]  # 0.32 i <= 1.0 < 0.32 i + 0.64
    assert active_audio(1.32) == [3, 4]  # 0.32 s later: one segment later
    assert audio_segments(torch.zeros(80000)).shape == (14, 128, 66)
    assert video_segments(torch.zeros(125, 3, 8, 8)).shape == (14, 16, 3, 8, 8)


def test_scoring_reads_first_and_last_14_segments() -> None:
    class Probe(torch.nn.Module):
        """compare_v_a whose arg-max class is the index of the first segment it is given."""

        def compare_v_a(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(v.shape[0], 21)
            logits[torch.arange(v.shape[0]), v[:, 0, 0, 0].long()] = 1.0
            return logits

    seg = torch.arange(24.0)[:, None, None].expand(24, 8, 4)  # segment i's features hold i
    value, signed = desync_of(Probe(), seg, torch.zeros(24, 6, 4))  # type: ignore[arg-type]
    assert signed == pytest.approx([OFFSET_GRID[0].item(), OFFSET_GRID[10].item()])  # first = 0, last starts at 10
    assert value == pytest.approx((2.0 + 0.0) / 2)


@pytest.fixture
def long_set(write_set: Callable[..., Path]) -> Path:
    return write_set("long", 2, duration=4.9, min_gap=0.5)


def test_desync_metric_with_floor(long_set: Path, tmp_path: Path) -> None:
    opts = MetricOptions(weights=WeightPaths(synchformer=str(save_tiny_synchformer(tmp_path / "sf.pth"))),
                         n_boot=30, desync_duration=8.0)
    r = DeSync().evaluate(load_set(long_set), None, opts, {"progress": False})
    assert r.ok and r.weights["synchformer"].startswith("sha256:")
    assert 0.0 <= r.value <= 2.0 and np.isfinite(r.extra["floor"]) and r.extra["floor_pairs"] == 2
    for v in r.per_clip.values():  # each clip: mean of two grid magnitudes, a multiple of 0.1 s
        assert round(v * 10) == pytest.approx(v * 10, abs=1e-4)
    assert "14 segments" in r.preprocessing["scoring"]


def test_short_clips_are_refused(small_sets: dict[str, Path], tmp_path: Path) -> None:
    ext = SynchformerExtractor(save_tiny_synchformer(tmp_path / "sf.pth"))
    with pytest.raises(ValueError, match="4.8 s"):
        ext.clip(load_set(small_sets["sync"]).records[0])


class _TimeCodeSynchformer(torch.nn.Module):
    """A stand-in for Synchformer whose features encode time: a video token is 1 when its tubelet
    (2 frames, 80 ms) is lit, an audio token when its spectrogram column (160 ms every 100 ms) is
    loud; `compare_v_a` lays both on a 10 ms clock and votes for the grid offset that overlaps them
    most. It finds a known shift only if the files are cut into segments on one clock and the
    first/last 14 segments of both streams are paired as av-benchmark pairs them."""

    def extract_vfeats(self, seg: torch.Tensor) -> torch.Tensor:  # (B, S, 16, 3, H, W) -> (B, S, 8, 1)
        lit = seg.mean(dim=(3, 4, 5)) > 0  # (B, S, 16)
        return lit.reshape(*lit.shape[:2], 8, 2).any(dim=-1, keepdim=True).float()

    def extract_afeats(self, spec: torch.Tensor) -> torch.Tensor:  # (B, S, 128, 66) -> (B, S, 6, 1)
        loud = spec.amax(dim=2) > 0  # (B, S, 66)
        cols = [loud[..., 10 * c + 3:10 * c + 13].any(dim=-1) for c in range(6)]
        return torch.stack(cols, dim=-1)[..., None].float()

    def compare_v_a(self, vis: torch.Tensor, aud: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(vis.shape[0], 21)
        for b in range(vis.shape[0]):
            v, a = torch.zeros(600), torch.zeros(600)  # 10 ms bins over the 4.8 s window (+ margin)
            for s, k in torch.nonzero(vis[b, :, :, 0]).tolist():
                v[32 * s + 8 * k:32 * s + 8 * k + 8] = 1
            for s, c in torch.nonzero(aud[b, :, :, 0]).tolist():
                a[32 * s + 10 * c:32 * s + 10 * c + 16] = 1
            votes = [float((v * torch.roll(a, -round(float(g) * 100))).sum()) for g in OFFSET_GRID]
            logits[b, int(np.argmax(votes))] = 1.0
        return logits


def test_shifted_sound_moves_desync_end_to_end(tmp_path: Path) -> None:
    from avio import write_clip

    fps, sr, n = 25, 16000, 120  # 4.8 s: exactly the 14 segments Synchformer compares
    t = np.arange(int(0.03 * sr)) / sr
    for shift in (0.0, 0.4):
        frames = np.zeros((n, 32, 32, 3), np.uint8)
        audio = np.zeros((1, n * sr // fps), np.float32)
        for f in (15, 45, 80, 100):
            frames[f] = 255
            s0 = round((f / fps + shift) * sr)
            audio[0, s0:s0 + t.size] = 0.5 * np.sin(2 * np.pi * 1000 * t)
        write_clip(tmp_path / "clips" / f"shift{int(shift * 1000)}.mp4", frames, fps, audio, sr)
    opts = MetricOptions(weights=WeightPaths(synchformer=str(save_tiny_synchformer(tmp_path / "sf.pth"))), n_boot=0)
    ext = SynchformerExtractor(opts.weights.synchformer or "")
    ext.model = _TimeCodeSynchformer()  # type: ignore[assignment]
    r = DeSync().evaluate(load_set(tmp_path / "clips"), None, opts, {"progress": False,
                                                                    "extractor:synchformer:8.0": ext})
    assert r.per_clip == pytest.approx({"shift0": 0.0, "shift400": 0.4}, abs=1e-6)
    assert r.value == pytest.approx(0.2, abs=1e-6)
