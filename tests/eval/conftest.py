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
