"""Weights-free detection of visible sound causes: impacts (abrupt velocity changes) and flashes.

A text-to-audio-video clip has no ground-truth event list, so the event measure compares the
generated audio's onsets with events seen in the generated video. This detector is built for
scenes like the synthetic dataset's (objects on a mostly static background):

1. Background: the per-pixel temporal median; foreground: pixels far from it (any channel).
2. Objects: connected components of the foreground (OpenCV), with intensity-weighted centroids
   for sub-pixel positions, tracked from frame to frame by nearest centroid.
3. Impacts: a contact reverses or changes the velocity within one frame interval while gravity
   changes it smoothly, so the detector looks at the velocity change across a frame interval,
   d_k = v_(k+1) - v_(k-1), minus its local median (which removes constant acceleration), and
   takes peaks larger than both an absolute and a speed-relative threshold. The contact time is
   where the straight trajectories before and after intersect, which is finer than a frame.
4. Flashes: spikes of the net brightening sum(L_t - L_(t-1)) over the frame (moving objects
   brighten and darken equal areas; a flash only brightens). The flash started between the previous frame and the first
   frame that shows it, so the estimate is half a frame before that frame.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["VisualEventConfig", "VisualEvent", "detect_visual_events", "estimate_background", "track_objects"]


@dataclass(frozen=True)
class VisualEventConfig:
    """Settings of the visual event detector.

    Attributes:
        foreground_threshold: a pixel is foreground when it differs from the background by more
            than this (0-255) in any channel.
        min_area_fraction: components smaller than this fraction of the frame are noise.
        max_jump_fraction: a centroid may move at most this fraction of the frame diagonal per
            frame and still belong to the same track.
        min_change_fraction: smallest velocity change of an impact, as a fraction of the frame's
            shorter side per frame.
        relative_change: the velocity change must also exceed this times the speed before/after.
        area_tolerance: a blob whose area differs from its track's median area by more than this
            fraction is unreliable (merged, occluded, cut by the border).
        flash_threshold: a brightening spike must exceed the median brightening by this many
            median absolute deviations ...
        min_flash_fraction: ... and brighten at least this fraction of the frame by one full step
            of 255 (summed), so flicker of a few pixels does not count.
        min_gap: events closer than this (seconds) are merged into the earlier one.
    """

    foreground_threshold: float = 40.0
    min_area_fraction: float = 0.002
    max_jump_fraction: float = 0.2
    min_change_fraction: float = 0.02
    relative_change: float = 0.3
    area_tolerance: float = 0.3
    flash_threshold: float = 8.0
    min_flash_fraction: float = 0.004
    min_gap: float = 0.05

    def __post_init__(self) -> None:
        for name in ("foreground_threshold", "min_area_fraction", "max_jump_fraction", "min_change_fraction",
                     "relative_change", "area_tolerance", "flash_threshold", "min_flash_fraction"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"VisualEventConfig.{name} must be a positive number, got {value!r}.")
        if not (math.isfinite(self.min_gap) and self.min_gap >= 0):
            raise ValueError(f"VisualEventConfig.min_gap must be >= 0 seconds, got {self.min_gap!r}.")


@dataclass(frozen=True)
class VisualEvent:
    """A detected visible event: `time` in seconds, `kind` ("impact" or "flash"), `strength`
    (velocity change in frame fractions per frame for impacts, brightened fraction for flashes),
    `track` (object track index, -1 for flashes)."""

    time: float
    kind: str
    strength: float
    track: int = -1


def _check_frames(frames: np.ndarray, fps: float) -> np.ndarray:
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {x.shape}.")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    return x.astype(np.float32)


def estimate_background(frames: np.ndarray, threshold: float, contamination: float = 0.15) -> np.ndarray:
    """Static background (H, W, 3) float32 of frames (T, H, W, 3).

    The per-pixel temporal median fails where an object lingers (the apex of a slow arc, the end
    of a pendulum swing): there the object is in the median. Such pixels show two clusters of
    values over time, so they are found as those that differ from the median in more than
    `contamination` of the frames; their background is then taken as the median of the frame
    values that agree with an inpainting of the clean surroundings (OpenCV's Telea inpainting),
    or the inpainting itself when no frame shows the background there.
    """
    x = np.asarray(frames, dtype=np.float32)
    median = np.median(x, axis=0)  # (H, W, 3)
    far = np.abs(x - median).max(axis=-1) > threshold  # (T, H, W)
    suspect = far.mean(axis=0) > contamination  # (H, W)
    if not suspect.any():
        return median
    fill = cv2.inpaint(np.clip(median, 0, 255).astype(np.uint8), suspect.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    fill = fill.astype(np.float32)
    agree = np.abs(x - fill).max(axis=-1) <= threshold  # (T, H, W)
    votes = np.where(agree[..., None], x, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels are handled just below
        clean = np.nanmedian(votes[:, suspect], axis=0)  # (P, 3); NaN where no frame agrees
    clean = np.where(np.isnan(clean), fill[suspect], clean)
    out = median.copy()
    out[suspect] = clean
    return out


def track_objects(frames: np.ndarray, config: VisualEventConfig | None = None) -> list[np.ndarray]:
    """Centroid tracks of the moving (foreground) objects.

    Args:
        frames: (T, H, W, 3) uint8 or float in 0-255.
        config: detector settings.

    Returns:
        Tracks; each (L, 4) float64 rows (frame index, x, y, area in pixels), consecutive frames.
    """
    cfg = config or VisualEventConfig()
    x = np.asarray(frames, dtype=np.float32)
    t, h, w = x.shape[:3]
    background = estimate_background(x, cfg.foreground_threshold)  # (H, W, 3)
    distance = np.abs(x - background).max(axis=-1)  # (T, H, W)
    min_area = max(2, cfg.min_area_fraction * h * w)
    max_jump = cfg.max_jump_fraction * math.hypot(h, w)
    kernel = np.ones((2, 2), np.uint8)
    detections: list[np.ndarray] = []  # per frame (K, 2) centroids
    for k in range(t):
        mask = (distance[k] > cfg.foreground_threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        cents = []
        for lab in range(1, n):
            if stats[lab, cv2.CC_STAT_AREA] < min_area:
                continue
            ys, xs = np.nonzero(labels == lab)
            wgt = distance[k, ys, xs]  # soft edges weigh less: sub-pixel centroid
            cents.append((float((xs * wgt).sum() / wgt.sum()) + 0.5, float((ys * wgt).sum() / wgt.sum()) + 0.5,
                          float(stats[lab, cv2.CC_STAT_AREA])))
        detections.append(np.asarray(cents, np.float64).reshape(-1, 3))
    tracks: list[list[tuple[float, ...]]] = []
    active: dict[int, int] = {}  # detection index in previous frame -> track index
    for k in range(t):
        cur = detections[k]
        new_active: dict[int, int] = {}
        if k > 0 and len(cur) and active:
            prev = detections[k - 1]
            dist = np.linalg.norm(prev[:, None, :2] - cur[None, :, :2], axis=-1)  # (P, C)
            # Greedy by distance: each previous detection continues into at most one current one.
            for flat in np.argsort(dist, axis=None):
                i, j = divmod(int(flat), dist.shape[1])
                if dist[i, j] > max_jump:
                    break
                if i in active and j not in new_active and active[i] not in new_active.values():
                    new_active[j] = active[i]
                    tracks[active[i]].append((k, *cur[j]))
        for j in range(len(cur)):
            if j not in new_active:
                new_active[j] = len(tracks)
                tracks.append([(k, *cur[j])])
        active = new_active
    return [np.asarray(tr, np.float64) for tr in tracks if len(tr) >= 2]


def _impacts(track: np.ndarray, fps: float, short_side: int, cfg: VisualEventConfig, index: int) -> list[VisualEvent]:
    """Impacts along one track (L, 4) of (frame, x, y, area)."""
    if len(track) < 4:
        return []
    f, pos, area = track[:, 0], track[:, 1:3], track[:, 3]
    # A blob whose area departs from the track's usual area is merged with another object or cut
    # by the border: its centroid jumps without any contact, so it may not support an impact.
    reliable = np.abs(area - np.median(area)) <= cfg.area_tolerance * np.median(area)
    v = np.diff(pos, axis=0)  # (L-1, 2): v[j] spans frames f[j] -> f[j+1]
    d = np.zeros_like(v)
    d[1:-1] = v[2:] - v[:-2]  # change across segment j
    # Constant acceleration (gravity) gives a constant d; subtract its local median.
    med = np.stack([np.median(d[max(1, j - 3):min(len(d) - 1, j + 4)], axis=0) if len(d) > 2 else np.zeros(2)
                    for j in range(len(d))])
    jerk = d - med
    jerk[[0, -1]] = 0.0
    mag = np.linalg.norm(jerk, axis=1)
    speed = np.linalg.norm(v, axis=1)
    out: list[VisualEvent] = []
    for j in range(1, len(v) - 1):
        around = 0.5 * (speed[j - 1] + speed[j + 1])
        if mag[j] < cfg.min_change_fraction * short_side or mag[j] < cfg.relative_change * around:
            continue
        if mag[j] < mag[j - 1] or mag[j] < mag[j + 1]:
            continue  # not the local maximum
        if not reliable[max(0, j - 1):j + 3].all():
            continue
        vb, va = v[j - 1], v[j + 1]
        axis = int(np.argmax(np.abs(va - vb)))
        tk, tk1 = f[j], f[j + 1]
        denom = vb[axis] - va[axis]
        tau = (pos[j + 1, axis] - pos[j, axis] + vb[axis] * tk - va[axis] * tk1) / denom if denom != 0 else 0.5 * (tk + tk1)
        tau = float(np.clip(tau, tk - 0.5, tk1 + 0.5))
        out.append(VisualEvent(time=tau / fps, kind="impact", strength=float(mag[j] / short_side), track=index))
    return out


def _flashes(x: np.ndarray, fps: float, cfg: VisualEventConfig) -> list[VisualEvent]:
    """Spikes of the net brightening of the frame; x is (T, H, W, 3) float.

    The net change (brightening minus darkening) is used because an object moving over the
    background brightens its leading edge and darkens its trailing edge by the same amount, while
    a flash only brightens.
    """
    t, h, w = x.shape[:3]
    if t < 3:
        return []
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)  # (T, H, W)
    net = np.diff(luma, axis=0).sum(axis=(1, 2)) / (255.0 * h * w)  # (T-1,) fraction of full scale
    med = float(np.median(net))
    mad = float(np.median(np.abs(net - med))) + 1e-6
    out = []
    for j in range(len(net)):
        b = net[j]
        if b < cfg.min_flash_fraction or b < med + cfg.flash_threshold * mad:
            continue
        if (j > 0 and net[j - 1] > b) or (j + 1 < len(net) and net[j + 1] >= b):
            continue
        # Frame j+1 is the first to show it; the flash began in the interval before it.
        out.append(VisualEvent(time=(j + 0.5) / fps, kind="flash", strength=float(b)))
    return out


def detect_visual_events(frames: np.ndarray, fps: float, config: VisualEventConfig | None = None) -> list[VisualEvent]:
    """Visible events of a clip.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        fps: frame rate of `frames`.
        config: detector settings.

    Returns:
        Events sorted by time; events of any kind closer than `min_gap` are merged (the stronger
        kind's time is kept, flashes counting as stronger since their timing is not interpolated
        from a track that might have merged with another).
    """
    cfg = config or VisualEventConfig()
    x = _check_frames(frames, fps)
    if x.shape[0] < 3:
        return []
    short = min(x.shape[1], x.shape[2])
    events: list[VisualEvent] = []
    for i, tr in enumerate(track_objects(x, cfg)):
        events += _impacts(tr, fps, short, cfg, i)
    events += _flashes(x, fps, cfg)
    events.sort(key=lambda e: e.time)
    merged: list[VisualEvent] = []
    for ev in events:
        if merged and ev.time - merged[-1].time < cfg.min_gap:
            if ev.kind == "flash" and merged[-1].kind != "flash":
                merged[-1] = ev
            continue
        merged.append(ev)
    return merged
