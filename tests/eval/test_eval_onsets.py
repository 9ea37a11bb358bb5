"""The onset detector is accurate to a few ms; event matching is one to one and optimal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.onsets import OnsetConfig, detect_onsets, match_events

SR = 24000


def _scene(seed: int, noise: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Impacts (decaying sines), noise bursts and tones with attack and release, at known times."""
    rng = np.random.default_rng(seed)
    x = noise * rng.standard_normal(2 * SR)
    times = np.sort(rng.choice(np.arange(0.1, 1.8, 0.15), size=6, replace=False) + rng.uniform(0, 0.02, 6))
    for t in times:
        s = int(round(t * SR))
        tt = np.arange(len(x) - s) / SR
        amp, kind = rng.uniform(0.15, 0.8), rng.integers(3)
        if kind == 0:
            x[s:] += amp * np.sin(2 * np.pi * rng.uniform(200, 2000) * tt) * np.exp(-tt / 0.05)
        elif kind == 1:
            x[s:] += amp * rng.standard_normal(len(tt)) * np.exp(-tt / 0.03)
        else:  # 5 ms attack, 10 ms release: the release must not count as an onset
            env = np.clip(tt / 0.005, 0, 1) * np.clip((0.12 - tt) / 0.01, 0, 1)
            x[s:] += amp * np.sin(2 * np.pi * rng.uniform(200, 1000) * tt) * env
    return x, times


def test_onsets_are_found_within_a_few_ms() -> None:
    tp = n_pred = n_ref = 0
    offsets: list[float] = []
    for seed in range(10):
        x, times = _scene(seed)
        m = match_events(detect_onsets(x, SR), times, 0.05)
        tp, n_pred, n_ref = tp + m.n_matched, n_pred + m.n_pred, n_ref + m.n_ref
        offsets += m.offsets_ms
    assert tp / n_pred >= 0.97 and tp / n_ref >= 0.9, (tp, n_pred, n_ref)
    assert np.mean(np.abs(offsets)) < 2.0
    assert np.percentile(np.abs(offsets), 95) < 5.0


def test_onsets_on_the_synthetic_dataset() -> None:
    synthetic = pytest.importorskip("av_model.data.synthetic")
    offsets: list[float] = []
    for fam in synthetic.FAMILIES:
        for seed in range(2):
            clip = synthetic.generate_clip(seed, synthetic.SynthConfig(), family=fam)
            m = match_events(detect_onsets(clip.audio, clip.sample_rate), [e.time for e in clip.events], 0.05)
            assert m.recall >= 0.9 and m.precision >= 0.95, (fam, seed, m)
            offsets += m.offsets_ms
    assert np.mean(np.abs(offsets)) < 3.0


def test_silence_channels_scale_and_tensors() -> None:
    assert detect_onsets(np.zeros(SR), SR).size == 0
    assert detect_onsets(np.zeros(0), SR).size == 0
    x, _ = _scene(3)
    mono = detect_onsets(x, SR)
    stereo = detect_onsets(np.stack([x, x]), SR)
    np.testing.assert_allclose(mono, stereo)
    np.testing.assert_allclose(detect_onsets(x * 0.01, SR), mono, atol=2e-3)  # level does not matter
    np.testing.assert_allclose(detect_onsets(torch.from_numpy(x).float(), SR), mono, atol=1e-3)
    pcm = np.round(x / np.abs(x).max() * 20000).astype(np.int16)
    assert detect_onsets(pcm, SR).size == mono.size


@pytest.mark.parametrize(
    ("audio", "sr", "match"),
    [
        (np.zeros((2, 3, 4)), SR, "shape"),
        (np.zeros((1000, 2)), SR, r"\(C, S\)"),
        (np.array([0.0, np.nan, 0.0]), SR, "NaN"),
        (np.zeros(100), 0, "sample_rate"),
        (np.zeros(100), 16000.5, "sample_rate"),
        (np.array(["a", "b"]), SR, "numeric"),
    ],
)
def test_bad_audio_is_refused(audio: np.ndarray, sr: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        detect_onsets(audio, sr)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="hop_seconds"):
        OnsetConfig(hop_seconds=0.05, window_seconds=0.02)
    with pytest.raises(ValueError, match="min_gap"):
        OnsetConfig(min_gap=-1)
    with pytest.raises(ValueError, match="threshold_db"):
        OnsetConfig(threshold_db=0)


def test_min_gap_merges_close_onsets() -> None:
    x = np.zeros(SR)
    for t in (0.3, 0.37, 0.6):
        s = int(t * SR)
        tt = np.arange(SR - s) / SR
        x[s:] += 0.5 * np.sin(2 * np.pi * (440 if t != 0.37 else 1500) * tt) * np.exp(-tt / 0.02)
    assert detect_onsets(x, SR).size == 3
    assert detect_onsets(x, SR, OnsetConfig(min_gap=0.1)).size == 2


def test_match_events_counts_and_offsets() -> None:
    m = match_events([0.10, 0.52, 0.90, 2.0], [0.1, 0.5, 1.0], tolerance=0.05)
    assert (m.n_matched, m.n_pred, m.n_ref) == (2, 4, 3)
    assert m.precision == pytest.approx(0.5) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 * 2 / 7)
    assert sorted(m.offsets_ms) == pytest.approx([0.0, 20.0])
    assert m.mean_offset_ms == pytest.approx(10.0) and m.mean_abs_offset_ms == pytest.approx(10.0)


def test_match_events_is_one_to_one_and_maximal() -> None:
    # Greedy nearest-first would pair 0.50 with 0.52 and leave 0.55 unmatched; the optimum pairs both.
    m = match_events([0.50, 0.55], [0.47, 0.52], tolerance=0.04)
    assert m.n_matched == 2
    # one prediction cannot match two references
    assert match_events([1.0], [0.99, 1.01], tolerance=0.05).n_matched == 1


def test_match_events_empty_sides() -> None:
    assert np.isnan(match_events([], [], 0.1).f1)
    none = match_events([], [1.0], 0.1)
    assert none.recall == 0.0 and np.isnan(none.precision) and none.f1 == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        match_events([1.0], [1.0], 0)
    with pytest.raises(ValueError, match="NaN"):
        match_events([np.nan], [1.0], 0.1)
