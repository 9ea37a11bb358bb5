"""Tiny sample folders for the app tests: clips with sound and a JSON sidecar holding the prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avio import write_clip

FPS = 8
SAMPLE_RATE = 16000
SIZE = 32


def make_clip(path: Path, seed: int, *, seconds: float = 1.0, with_audio: bool = True) -> Path:
    """A small mp4: a square moving over a coloured background, a click at a random moment."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    frames = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    frames[...] = rng.integers(0, 255, 3, dtype=np.uint8)
    for t in range(n):
        x = (4 * t) % (SIZE - 8)
        frames[t, 12:20, x : x + 8] = 255
    audio = None
    if with_audio:
        audio = np.zeros((1, int(round(seconds * SAMPLE_RATE))), np.float32)
        start = int(rng.uniform(0.2, 0.6) * SAMPLE_RATE)
        k = np.arange(int(0.05 * SAMPLE_RATE))
        audio[0, start : start + k.size] = 0.5 * np.sin(2 * np.pi * 660 * k / SAMPLE_RATE) * np.exp(-k / 200)
    return write_clip(path, frames, FPS, audio, SAMPLE_RATE if with_audio else None)


def make_system(folder: Path, prompts: list[str], seed: int, **kwargs: object) -> Path:
    """A folder like `avgen sample` writes: <id>.mp4 + <id>.json with the prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(prompts):
        make_clip(folder / f"clip{i:03d}.mp4", seed * 1000 + i, **kwargs)  # type: ignore[arg-type]
        (folder / f"clip{i:03d}.json").write_text(json.dumps({"id": f"clip{i:03d}", "prompt": prompt}))
    return folder


def make_foreign_clip(path: Path, seed: int, *, seconds: float = 1.0, title: str = "") -> Path:
    """A clip as another toolchain writes it: H.264 with B-frames and its own x264 settings, 44.1 kHz
    stereo AAC, in Matroska, with a title and an encoder tag in its metadata."""
    import av

    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    with av.open(str(path), "w", format="matroska") as out:
        out.metadata["title"] = title
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = SIZE, SIZE, "yuv420p"
        vs.codec_context.options = {"crf": "30", "preset": "slow", "bf": "3"}
        vs.metadata["title"] = title
        aus = out.add_stream("aac", rate=44100)
        aus.layout = "stereo"
        colour = rng.integers(0, 255, 3, dtype=np.uint8)
        for t in range(n):
            img = np.empty((SIZE, SIZE, 3), np.uint8)
            img[...] = colour
            img[12:20, (4 * t) % (SIZE - 8):][:, :8] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = t
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        tone = np.zeros((2, int(seconds * 44100)), np.float32)
        tone[:, 8000:10000] = 0.3 * np.sin(np.arange(2000) * 2 * np.pi * 440 / 44100)
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 44100, 0
        out.mux(aus.encode(frame))
        out.mux(aus.encode(None))
    return path


def make_foreign_system(folder: Path, prompts: list[str], seed: int) -> Path:
    """A sample folder of .mkv clips (see `make_foreign_clip`), each titled with the system's name."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(prompts):
        make_foreign_clip(folder / f"clip{i:03d}.mkv", seed * 1000 + i, title=f"made by {folder.name}")
        (folder / f"clip{i:03d}.json").write_text(json.dumps({"id": f"clip{i:03d}", "prompt": prompt}))
    return folder
