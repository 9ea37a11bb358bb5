"""Dense optical flow (OpenCV Farneback) per clip, shared by AV-Align, flicker and motion.

The Farneback parameters are AV-Align's published ones: pyramid scale 0.5, 3 levels, window 15,
3 iterations, polynomial neighbourhood 5, sigma 1.2, no flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from eval.parallel import ClipTask
from eval.reader import read_video
from eval.sets import ClipRecord

__all__ = ["FARNEBACK", "FlowStats", "flow_magnitudes", "warp_errors", "clip_flow_stats", "flow_stats", "flow_task"]

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) from luma frame a to b with AV-Align's parameters."""
    return np.asarray(cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0))  # type: ignore[call-overload]


def _gray(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) uint8 luma."""
    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])


def flow_magnitudes(frames: np.ndarray) -> np.ndarray:
    """Mean forward flow magnitude of each consecutive pair, in pixels per frame.

    Args:
        frames: (T, H, W, 3) uint8.

    Returns:
        (T-1,) float64; entry i is the flow from frame i to frame i+1.
    """
    g = _gray(frames)
    out = np.empty(max(len(g) - 1, 0))
    for i in range(len(g) - 1):
        flow = _farneback(g[i], g[i + 1])  # (H, W, 2)
        out[i] = float(np.linalg.norm(flow, axis=-1).mean())
    return out


def warp_errors(frames: np.ndarray) -> np.ndarray:
    """Motion-compensated change between consecutive frames (the flicker left after motion).

    Frame i is warped onto frame i+1 with the backward flow (i+1 -> i), and the mean absolute luma
    difference over pixels whose source lies inside the frame is taken.

    Args:
        frames: (T, H, W, 3) uint8.

    Returns:
        (T-1,) float64 in luma levels (0-255).
    """
    g = _gray(frames)
    h, w = g.shape[1:]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = np.empty(max(len(g) - 1, 0))
    for i in range(len(g) - 1):
        back = _farneback(g[i + 1], g[i])  # (H, W, 2)
        map_x, map_y = grid_x + back[..., 0], grid_y + back[..., 1]
        warped = cv2.remap(g[i], map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        valid = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        diff = np.abs(warped.astype(np.float32) - g[i + 1].astype(np.float32))
        out[i] = float(diff[valid].mean()) if valid.any() else 0.0
    return out


@dataclass
class FlowStats:
    """Per-clip flow series: `fps`, frame size (`height`, `width`), `magnitude` (T-1,) px/frame,
    `warp_error` (T-1,) luma levels or None if not computed."""

    fps: float
    height: int
    width: int
    magnitude: np.ndarray
    warp_error: np.ndarray | None = None


def flow_stats(path: Path, start: float, duration: float | None, warp: bool = False) -> FlowStats:
    """Flow series of a clip at its native rate and size (with warp errors if `warp`)."""
    frames, fps = read_video(path, start=start, duration=duration)
    return FlowStats(fps=fps, height=frames.shape[1], width=frames.shape[2], magnitude=flow_magnitudes(frames),
                     warp_error=warp_errors(frames) if warp else None)


def _key(record: ClipRecord) -> str:
    return f"flow:{record.path}:{record.start}:{record.end}"


def flow_task(record: ClipRecord, *, warp: bool = False) -> ClipTask:
    """The per-clip task of `clip_flow_stats` (eval.parallel); with warp errors it wins over one without."""
    return ClipTask(_key(record), flow_stats, (record.path, record.start, record.duration, warp), priority=int(warp))


def clip_flow_stats(record: ClipRecord, cache: dict[str, Any], *, warp: bool = False) -> FlowStats:
    """Flow series of a clip at its native rate and size, computed once per run (cached)."""
    key = _key(record)
    stats: FlowStats | None = cache.get(key)
    if stats is None:
        stats = cache[key] = flow_stats(record.path, record.start, record.duration, warp)
    elif warp and stats.warp_error is None:  # computed without warp errors for another metric: add them
        frames, _ = read_video(record.path, start=record.start, duration=record.duration)
        stats = cache[key] = replace(stats, warp_error=warp_errors(frames))
    return stats
