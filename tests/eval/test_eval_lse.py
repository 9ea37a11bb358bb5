"""LSE-C / LSE-D: the MFCC front end, the official state-dict layout, the offset search and the floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eval.features.syncnet import SyncNet, SyncNetExtractor, mfcc, syncnet_windows
from eval.features.weights import WeightPaths
from eval.metrics.base import MetricOptions
from eval.metrics.lse import LSEC, LSED, lse_scores
from eval.runner import EvalConfig, evaluate
from eval.sets import load_set

TINY = dict(audio_widths=(4, 4, 4, 4, 4, 8), lip_widths=(4, 4, 4, 4, 4, 8), hidden=8, dim=16)


def save_tiny_syncnet(path: Path, seed: int = 0) -> Path:
    """A random SyncNet in syncnet_v2.model's layout: a plain state dict, no BatchNorm counters."""
    torch.manual_seed(seed)
    state = {k: v for k, v in SyncNet(**TINY).state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return path


def test_mfcc_matches_python_speech_features() -> None:
    # python_speech_features 0.6 `mfcc(x, 16000)` of this int16 signal (values computed with the library)
    t = np.arange(1600) / 16000
    x = (3000 * np.sin(2 * np.pi * 440 * t) + 1000 * np.sin(2 * np.pi * 3000 * t)).astype(np.int16)
    got = mfcc(x)
    assert got.shape == (9, 13)
    expected = np.array([[18.79662954, -0.02018552, -48.60537137, 32.33948688],
                         [18.80327033, 4.62922055, -47.51539755, 33.35230932],
                         [18.80327033, 6.37129265, -50.40329860, 25.19411564]])
    np.testing.assert_allclose(got[[0, 3, 7]][:, [0, 1, 5, 12]], expected, rtol=1e-6, atol=1e-6)


def test_official_layout_keys_and_tiny_file_loads(tmp_path: Path) -> None:
    with torch.device("meta"):
        full = SyncNet().state_dict()
    assert "netcnnaud.18.weight" in full and full["netcnnaud.18.weight"].shape == (512, 256, 5, 4)
    assert full["netcnnlip.0.weight"].shape == (96, 3, 5, 7, 7)
    assert full["netfcaud.3.weight"].shape == (1024, 512) and full["netfclip.3.weight"].shape == (1024, 512)
    assert set(SyncNet(**TINY).state_dict()) == set(full)  # same keys at any width
    ext = SyncNetExtractor(save_tiny_syncnet(tmp_path / "syncnet_v2.model"))
    assert ext.weight_hash.startswith("sha256:")
    # A state dict with a foreign key is refused, naming it.
    bad = torch.load(tmp_path / "syncnet_v2.model")
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.model")
    with pytest.raises(ValueError, match="extra.weight"):
        SyncNetExtractor(tmp_path / "bad.model")


def test_windows_follow_the_reference_indices() -> None:
    frames = torch.arange(30.0)[:, None, None, None].expand(30, 3, 2, 2)  # frame t has value t
    cep = torch.arange(200.0)[None, :].expand(13, 200)  # MFCC frame f has value f
    v, a = syncnet_windows(frames, cep, n_samples=16000)  # min(30, 25) - 5 = 20 windows
    assert v.shape == (20, 3, 5, 2, 2) and a.shape == (20, 1, 13, 20)
    assert v[7, 0, :, 0, 0].tolist() == [7, 8, 9, 10, 11]
    assert a[7, 0, 0, [0, -1]].tolist() == [28, 47]


@pytest.mark.parametrize("delay", [-6, -2, 0, 3, 9])
def test_offset_search_finds_a_known_shift(delay: int) -> None:
    # Embeddings that encode time: window t's vector is r_t. Audio delayed by `delay` windows holds
    # r_{t - delay} at t, so video t matches audio t + delay: SyncNet's offset is -delay.
    rng = np.random.default_rng(1)
    r = rng.standard_normal((80, 32))
    video = r[20:60]
    audio = r[20 - delay:60 - delay]
    s = lse_scores(video, audio)
    assert s.offset == -delay
    assert s.mean_dist.shape == (31,)
    assert s.dist < 0.5 * np.median(s.mean_dist)
    assert s.conf == pytest.approx(np.median(s.mean_dist) - s.dist)
    shuffled = lse_scores(video, rng.standard_normal((40, 32)))
    assert shuffled.conf < s.conf


def test_lse_metric_with_floor_and_hash(small_sets: dict[str, Path], tmp_path: Path) -> None:
    opts = MetricOptions(weights=WeightPaths(syncnet=str(save_tiny_syncnet(tmp_path / "s.model"))), n_boot=30)
    cache: dict = {"progress": False}
    clips = load_set(small_sets["sync"]).limit(2)
    c = LSEC().evaluate(clips, None, opts, cache)
    d = LSED().evaluate(clips, None, opts, cache)
    for r in (c, d):
        assert r.ok and np.isfinite(r.value) and r.weights["syncnet"].startswith("sha256:")
        assert np.isfinite(r.extra["floor"]) and r.extra["floor_pairs"] == len(clips) * (len(clips) - 1)
        assert r.ci_low <= r.value <= r.ci_high
        assert "centre crop" in r.extra["deviations"]
        assert len(r.per_clip) == len(clips)
    assert c.value >= 0.0 and d.value > 0.0
    assert c.extra["lse_d"] == pytest.approx(d.value) and d.extra["lse_c"] == pytest.approx(c.value)


def test_missing_syncnet_weights_are_not_computed(small_sets: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("AVGEN_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.delenv("AVGEN_SYNCNET", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    report = evaluate(EvalConfig(generated=[str(small_sets["sync"])], metrics=["lse_c"], progress=False,
                                 options=MetricOptions(n_boot=10)))
    r = report.results[0]
    assert not r.ok and r.value is None and "--syncnet" in (r.reason or "")


class _TimeCode(torch.nn.Module):
    """A stand-in for SyncNet whose embeddings encode time: per video frame, is it lit; per 4 MFCC
    frames (40 ms), is there sound. Only a pipeline that keeps both streams on one clock, pairs
    window v with MFCC frames 4v..4v+19 and searches offsets the reference's way finds the shift."""

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 5, H, W) -> (B, 5)
        return (x.mean(dim=(1, 3, 4)) > 128).float()

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 13, 20) -> (B, 5)
        # c0 is the log frame energy (silence: log(eps) = -36; the bursts: about 20); its mean over
        # each 40 ms group of 4 frames is high only in the group the burst fills
        return (x[:, 0, 0].reshape(-1, 5, 4).mean(dim=2) > 10).float()


@pytest.mark.parametrize("shift_frames", [-2, 3])
def test_shifted_sound_moves_the_offset_end_to_end(shift_frames: int, tmp_path: Path) -> None:
    from avio import write_clip

    fps, sr, n = 25, 16000, 75
    rng = np.random.default_rng(shift_frames + 10)
    flashes = np.sort(rng.choice(np.arange(8, n - 8), 6, replace=False))
    frames = np.zeros((n, 32, 32, 3), np.uint8)
    frames[flashes] = 255
    audio = np.zeros((1, n * sr // fps), np.float32)
    t = np.arange(int(0.03 * sr)) / sr
    for f in flashes:  # a 30 ms tone burst at each flash, moved by the shift
        s0 = (f + shift_frames) * sr // fps
        audio[0, s0:s0 + t.size] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    write_clip(tmp_path / "c.mp4", frames, fps, audio, sr)
    ext = SyncNetExtractor(save_tiny_syncnet(tmp_path / "s.model"))
    ext.model = _TimeCode()  # type: ignore[assignment]
    emb = ext.clip(load_set(tmp_path).records[0])
    s = lse_scores(emb.video, emb.audio)
    assert s.offset == -shift_frames  # syncnet_python's sign: negative when the sound is late
    assert s.conf > 0.3
