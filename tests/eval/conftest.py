"""Fixtures of the metric tests: small mp4 sets with known events, and tiny random-weight models.

Sets are written once per session (they take a few seconds together); everything is CPU, seeded,
64 x 64 pixels and a few seconds long.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from avio import write_clip
from eval.testing import bouncing_clip, dashing_clip

SHIFTS_MS = (0, 40, 80, 160, 320)  # repeated in test_eval_sync.py (conftest modules are not imported)
N_SHIFT_CLIPS = 4


def _clip(kind: str, seed: int, **kwargs: float):
    return (dashing_clip if kind == "dash" else bouncing_clip)(seed, **kwargs)


def _write_set(root: Path, name: str, n: int, *, offset: float = 0.0, min_gap: float = 0.7,
               duration: float = 4.0, sidecars: bool = True, seed0: int = 0, kind: str = "bounce") -> Path:
    folder = root / name
    for i in range(n):
        clip = _clip(kind, seed0 + i, duration=duration, min_event_gap=min_gap, audio_offset=offset)
        write_clip(folder / f"clip{i}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
        if sidecars:
            (folder / f"clip{i}.json").write_text(json.dumps({"prompt": f"a ball bouncing, scene {i}", "id": f"clip{i}",
                                                              "seed": seed0 + i}))
    return folder


def _write_manifest(root: Path, n: int, *, min_gap: float = 0.7, duration: float = 4.0, seed0: int = 0,
                    kind: str = "bounce") -> Path:
    rows = []
    for i in range(n):
        clip = _clip(kind, seed0 + i, duration=duration, min_event_gap=min_gap)
        write_clip(root / "ref" / f"clip{i}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
        rows.append({"id": f"clip{i}", "path": f"ref/clip{i}.mp4", "caption": f"a ball bouncing, scene {i}",
                     "split": "heldout" if i % 2 else "train",
                     "events": [{"time": t, "kind": k, "obj": 0} for t, k in zip(clip.events, clip.kinds)]})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def shift_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Reference manifest (ground-truth events) and one generated folder per audio shift (ms) of
    dashing-square clips (motion peaks at the sounds, as AV-Align expects)."""
    root = tmp_path_factory.mktemp("shift")
    out = {"manifest": _write_manifest(root, N_SHIFT_CLIPS, kind="dash")}
    for ms in SHIFTS_MS:
        out[str(ms)] = _write_set(root, f"shift{ms}", N_SHIFT_CLIPS, offset=ms / 1000.0, kind="dash")
    return out


@pytest.fixture(scope="session")
def small_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two short generated folders (in sync, and 160 ms late) and a reference manifest."""
    root = tmp_path_factory.mktemp("small")
    return {
        "manifest": _write_manifest(root, 4, min_gap=0.3, duration=2.0),
        "sync": _write_set(root, "sync", 4, min_gap=0.3, duration=2.0),
        "late": _write_set(root, "late", 4, offset=0.16, min_gap=0.3, duration=2.0),
    }


@pytest.fixture
def write_set(tmp_path: Path) -> Callable[..., Path]:
    """write_set(name, n, **kwargs) -> folder of procedural mp4 clips under tmp_path."""
    def make(name: str, n: int, **kwargs: object) -> Path:
        return _write_set(tmp_path, name, n, **kwargs)  # type: ignore[arg-type]
    return make


def _audio_only_mp4(path: Path, seconds: float = 1.0, rate: int = 16000) -> None:
    import av
    import numpy as np

    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        wav = (0.1 * np.sin(np.arange(int(seconds * rate)) / 5.0)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wav, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.fixture
def audio_only_mp4() -> Callable[[Path], None]:
    """audio_only_mp4(path): write an mp4 with a sound and no video stream."""
    return _audio_only_mp4


@pytest.fixture
def set_with_bad_clips(small_sets: dict[str, Path], tmp_path: Path) -> Path:
    """The 4 good clips of the in-sync set plus an unreadable, an audio-less and a video-less clip."""
    import shutil

    import numpy as np

    from avio import write_clip

    folder = tmp_path / "gen"
    shutil.copytree(small_sets["sync"], folder)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a movie")
    write_clip(folder / "silent.mp4", np.zeros((16, 64, 64, 3), np.uint8), 16.0)
    _audio_only_mp4(folder / "blind.mp4")
    return folder
