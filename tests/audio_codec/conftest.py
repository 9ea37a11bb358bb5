"""Fixtures of the codec tests: tiny codecs, synthetic sounds with known onsets, tiny manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_codec import EncodecCodec, get_preset

SR = 24000


def click_track(seconds: float = 1.0, sr: int = SR, onsets: tuple[float, ...] = (0.2, 0.55, 0.8),
                seed: int = 0) -> np.ndarray:
    """Mono (1, S) float32: decaying noise bursts and a tone starting at `onsets` seconds."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    audio = 0.001 * rng.standard_normal(n)
    for i, start in enumerate(o for o in onsets if o < seconds):
        a = int(start * sr)
        env = np.exp(-(t[a:] - start) * 30.0)
        if i % 2:
            audio[a:] += 0.4 * env * np.sin(2 * np.pi * 660.0 * (t[a:] - start))
        else:
            audio[a:] += 0.5 * env * rng.standard_normal(n - a)
    return np.clip(audio, -1, 1).astype(np.float32)[None]


@pytest.fixture
def debug_codec() -> EncodecCodec:
    torch.manual_seed(0)
    return EncodecCodec(get_preset("debug")).eval()


@pytest.fixture
def wav() -> torch.Tensor:
    """(2, 1, 12000): two half-second clips."""
    return torch.from_numpy(np.stack([click_track(0.5, seed=0), click_track(0.5, seed=1, onsets=(0.1, 0.3))]))


def write_manifest(root: Path, clips: dict[str, list[tuple[str, float]]]) -> Path:
    """Write wav clips and a JSONL manifest: {split: [(id, seconds), ...]} -> manifest path."""
    from avio import write_audio

    rows = []
    for split, items in clips.items():
        for k, (clip_id, seconds) in enumerate(items):
            rel = Path(split) / f"{clip_id}.wav"
            write_audio(root / rel, click_track(seconds, seed=k), SR)
            rows.append({"id": clip_id, "path": str(rel), "caption": "clicks", "split": split,
                         "start": 0.0, "end": seconds, "events": [{"time": 0.2, "kind": "impact", "obj": 0}]})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.fixture
def tiny_manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "data", {
        "train": [("train-0", 1.0), ("train-1", 1.0), ("train-2", 0.8)],
        "val": [("val-0", 0.6)],
    })
