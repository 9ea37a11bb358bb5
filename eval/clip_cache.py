"""Per-clip results of an evaluation kept on disk, so a rerun does not redo finished clips.

The metrics keep what they compute per clip (audio onsets, visual events, optical-flow statistics,
attribute evidence) in the run's cache dict under keys that name the clip's file. `ClipCache`
writes those entries to `<out>/.clip_cache.pkl` after every (metric, set) evaluation and reads
them back at the start of the next run with the same --out, keeping only entries whose file has
the same size and modification time as when they were computed: a regenerated clip is measured
again. Set-level results (Fréchet distances, bootstrap intervals) are always recomputed; they are
cheap next to the per-clip work.

Written by hand because the entries are the metrics' own in-memory objects keyed by clip, and a
general memoizer (joblib.Memory) would key on the arguments of functions that take decoded frames.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from avio import atomic_path

__all__ = ["PER_CLIP_PREFIXES", "ClipCache"]

# Cache keys the metrics build as f"{prefix}{path}:{start}:{end}...": per-clip work worth keeping.
PER_CLIP_PREFIXES = ("onsets:", "visual_events:", "flow:", "attributes:")
_FORMAT = 1


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _path_of(key: str, paths: Iterable[str]) -> str | None:
    for p in paths:
        if f":{p}:" in key:
            return p
    return None


class ClipCache:
    """Loads and saves the per-clip entries of an evaluation cache dict.

    Args:
        folder: the evaluation's --out folder (None: nothing is kept).
        paths: the media files of every set being evaluated.
    """

    def __init__(self, folder: str | Path | None, paths: Iterable[str | Path]) -> None:
        self.file = Path(folder) / ".clip_cache.pkl" if folder else None
        self.paths = sorted({str(p) for p in paths}, key=len, reverse=True)  # longest first: no prefix clashes
        self.reused = 0
        self._key_paths: dict[str, str | None] = {}  # resolved once: `save` runs after every set

    def load_into(self, cache: dict[str, Any]) -> int:
        """Put the still-valid entries of an earlier run into `cache`; returns how many."""
        if self.file is None or not self.file.exists():
            return 0
        try:
            with self.file.open("rb") as fh:
                data = pickle.load(fh)  # our own file, written by `save` below
        except Exception:  # a torn or foreign file: start afresh rather than fail the evaluation
            return 0
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return 0
        for key, (path, stamp, value) in data.get("entries", {}).items():
            if key not in cache and _stamp(path) == stamp:
                cache[key] = value
                self.reused += 1
        return self.reused

    def save(self, cache: dict[str, Any]) -> None:
        """Write the per-clip entries of `cache` (atomically: a crash never leaves a torn file)."""
        if self.file is None:
            return
        entries = {}
        for key, value in cache.items():
            if not key.startswith(PER_CLIP_PREFIXES):
                continue
            if key not in self._key_paths:
                self._key_paths[key] = _path_of(key, self.paths)
            path = self._key_paths[key]
            stamp = _stamp(path) if path else None
            if path is not None and stamp is not None:
                entries[key] = (path, stamp, value)
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.file) as tmp, tmp.open("wb") as fh:
            pickle.dump({"format": _FORMAT, "entries": entries}, fh, protocol=pickle.HIGHEST_PROTOCOL)
