"""Fixtures for the media tests: tiny clips with a known flash and click."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from avio import write_clip


@dataclass
class ClickClip:
    """An mp4 whose frame `flash_frame` is white and whose audio clicks at the same instant."""

    path: Path
    fps: float
    sample_rate: int
    num_frames: int
    flash_frame: int


def make_click_clip(
    path: Path, *, fps: float = 16.0, sample_rate: int = 24000, seconds: float = 2.0, flash_frame: int = 10,
    size: tuple[int, int] = (32, 48), audio: bool = True,
) -> ClickClip:
    n = round(seconds * fps)
    frames = np.full((n, *size, 3), 20, dtype=np.uint8)
    frames[flash_frame] = 255
    wav = None
    if audio:
        rng = np.random.default_rng(0)
        wav = (0.005 * rng.standard_normal((1, round(seconds * sample_rate)))).astype(np.float32)
        onset = round(flash_frame / fps * sample_rate)
        wav[0, onset : onset + 240] = 0.9 * np.sin(np.arange(240) * 0.7)
    write_clip(path, frames, fps, wav, sample_rate if audio else None)
    return ClickClip(path, fps, sample_rate, n, flash_frame)


@pytest.fixture()
def click_clip(tmp_path: Path) -> ClickClip:
    return make_click_clip(tmp_path / "click.mp4")


@pytest.fixture()
def click_clip_maker() -> Callable[..., ClickClip]:
    """`make_click_clip` for tests that need other rates or lengths."""
    return make_click_clip


