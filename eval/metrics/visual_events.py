"""Weights-free detection of visible sound causes: impacts, turns and appearances.

A text-to-audio-video clip has no ground-truth event list, so the event measure compares the
generated audio's onsets with events seen in the generated video. This detector is built for
scenes like the synthetic dataset's (objects on a static background):

1. Background: the per-pixel temporal median, repaired where an object lingers (see
   `estimate_background`); foreground: pixels far from it in any channel.
2. Objects: connected components of the foreground (OpenCV), with intensity-weighted centroids
   for sub-pixel positions, linked from frame to frame by nearest centroid.
3. Impacts: a contact changes the velocity within one frame interval while gravity changes it
   smoothly, so the detector takes the velocity change across an interval, d_k = v_(k+1) - v_(k-1),
   minus its local median (removing constant acceleration), and keeps peaks above an absolute and
   a speed-relative threshold. The contact time is where the straight trajectories before and
   after intersect, finer than a frame.
4. Turns: smooth reversals of horizontal motion with real travel on both sides (the ends of a
   pendulum's swing), timed at the zero crossing of the horizontal velocity.
5. Flashes and appearances: a tracked blob that grows or brightens in place, or a blob that
   appears from nothing inside the frame, timed at the first frame that shows it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

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
        turn_travel_fraction: a turn needs this fraction of the frame width of horizontal travel
            within a quarter second on each side.
        flash_ratio: a tracked blob whose area or contrast grows by this factor from one frame to
            the next lights up ("flash") ...
        flash_max_shift: ... if its centroid moves less than this fraction of the diagonal.
        min_event_area: blobs that flash or appear must cover at least this fraction of the frame.
        min_gap: events closer than this (seconds) are merged into one.
    """

    foreground_threshold: float = 40.0
    min_area_fraction: float = 0.002
    max_jump_fraction: float = 0.2
    min_change_fraction: float = 0.02
    relative_change: float = 0.3
    area_tolerance: float = 0.3
    turn_travel_fraction: float = 0.08
    flash_ratio: float = 1.5
    min_event_area: float = 0.008
    flash_max_shift: float = 0.05
    min_gap: float = 0.05

    def __post_init__(self) -> None:
        for name in ("foreground_threshold", "min_area_fraction", "max_jump_fraction", "min_change_fraction",
                     "relative_change", "area_tolerance", "turn_travel_fraction", "flash_ratio", "flash_max_shift", "min_event_area"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"VisualEventConfig.{name} must be a positive number, got {value!r}.")
        if not (math.isfinite(self.min_gap) and self.min_gap >= 0):
            raise ValueError(f"VisualEventConfig.min_gap must be >= 0 seconds, got {self.min_gap!r}.")


@dataclass(frozen=True)
class VisualEvent:
    """A detected visible event.

    Attributes:
        time: seconds from the clip's first frame.
        kind: "impact", "turn", "flash" or "appear".
        strength: velocity change (frame fraction per frame) for impacts, travel (frame widths)
            for turns, growth factor for flashes, area (frame fraction) for appearances.
        track: object track index (-1 for appearances).
    """

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


class Component(NamedTuple):
    """A connected component of a mask: its label in the label image, pixel count, box and centroid."""

    label: int
    area: int
    left: int
    top: int
    width: int
    height: int
    cx: float
    cy: float


def components(mask: np.ndarray, kernel: np.ndarray, min_area: float) -> tuple[np.ndarray, list[Component]]:
    """The 8-connected components of a binary (H, W) mask, opened with `kernel` first (thin lines
    drop out), that cover at least `min_area` pixels: the label image and the components."""
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(opened, connectivity=8)
    found = []
    for lab in range(1, n):
        area, left, top, width, height = (int(stats[lab, f]) for f in (
            cv2.CC_STAT_AREA, cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        if area >= min_area:
            found.append(Component(lab, area, left, top, width, height, float(cents[lab, 0]), float(cents[lab, 1])))
    return labels, found


def _blobs(x: np.ndarray, cfg: VisualEventConfig) -> list[np.ndarray]:
    """Foreground components of each frame: (K, 6) rows (x, y, area, touches_border, contrast,
    compact): contrast is the mean distance from the background over the component; compact is 1
    for solid blobs (at least 3 px thick, filling 30% of their box), 0 for lines and fragments
    (a pendulum's string, edges of a background repair)."""
    t, h, w = x.shape[:3]
    background = estimate_background(x, cfg.foreground_threshold)  # (H, W, 3)
    distance = np.abs(x - background).max(axis=-1)  # (T, H, W)
    min_area = max(2, cfg.min_area_fraction * h * w)
    kernel = np.ones((2, 2), np.uint8)
    out: list[np.ndarray] = []
    for k in range(t):
        labels, found = components(distance[k] > cfg.foreground_threshold, kernel, min_area)
        rows = []
        for c in found:
            ys, xs = np.nonzero(labels == c.label)
            wgt = distance[k, ys, xs]  # soft edges weigh less: sub-pixel centroid
            border = c.left == 0 or c.top == 0 or c.left + c.width >= w or c.top + c.height >= h
            compact = min(c.width, c.height) >= 3 and c.area >= 0.3 * c.width * c.height
            rows.append((float((xs * wgt).sum() / wgt.sum()) + 0.5, float((ys * wgt).sum() / wgt.sum()) + 0.5,
                         float(c.area), float(border), float(wgt.mean()), float(compact)))
        out.append(np.asarray(rows, np.float64).reshape(-1, 6))
    return out


def _link(detections: list[np.ndarray], max_jump: float) -> tuple[list[np.ndarray], list[list[int]]]:
    """Tracks (L, 7) rows (frame, x, y, area, border, contrast, compact) by greedy nearest-centroid
    linking, and for each frame the indices of detections that started a track."""
    tracks: list[list[tuple[float, ...]]] = []
    starts: list[list[int]] = []
    active: dict[int, int] = {}  # detection index in the previous frame -> track index
    for k, cur in enumerate(detections):
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
        started = []
        for j in range(len(cur)):
            if j not in new_active:
                new_active[j] = len(tracks)
                tracks.append([(k, *cur[j])])
                started.append(j)
        starts.append(started)
        active = new_active
    return [np.asarray(tr, np.float64) for tr in tracks], starts


def track_objects(frames: np.ndarray, config: VisualEventConfig | None = None) -> list[np.ndarray]:
    """Centroid tracks of the moving (foreground) objects.

    Args:
        frames: (T, H, W, 3) uint8 or float in 0-255.
        config: detector settings.

    Returns:
        Tracks of at least two frames; each (L, 7) float64 rows (frame index, x, y, area in
        pixels, 1 if the blob touches the frame border, mean contrast to the background, 1 if the
        blob is solid rather than a line or fragment), consecutive frames.
    """
    cfg = config or VisualEventConfig()
    x = np.asarray(frames, dtype=np.float32)
    max_jump = cfg.max_jump_fraction * math.hypot(*x.shape[1:3])
    tracks, _ = _link(_blobs(x, cfg), max_jump)
    return [tr for tr in tracks if len(tr) >= 2]


def _appearances(detections: list[np.ndarray], starts: list[list[int]], fps: float, hw: tuple[int, int],
                 cfg: VisualEventConfig) -> list[VisualEvent]:
    """Blobs that appear from nothing inside the frame (a shape lighting up, popping in).

    A new track is an event unless a blob of the previous frame that did not continue lies near
    it (then it is the same object, its track broken), or it touches the border (an object
    entering) without covering a large part of the frame (a full-screen flash).
    """
    h, w = hw
    max_jump = cfg.max_jump_fraction * math.hypot(h, w)
    out = []
    for k in range(1, len(detections)):
        prev = detections[k - 1]
        ended = _ended(prev, detections[k], starts[k], max_jump)
        for j in starts[k]:
            cx, cy, area, border, contrast, compact = detections[k][j]
            if not compact or area < cfg.min_event_area * h * w or contrast < 1.5 * cfg.foreground_threshold:
                continue  # lines, fragments and faint blobs (a string, a background repair's edge)
            if border and area < 0.25 * h * w:
                continue
            if len(ended) and np.min(np.hypot(ended[:, 0] - cx, ended[:, 1] - cy)) <= max_jump:
                continue
            # The first frame showing it is the frame nearest the cause (camera exposure, or the
            # synthetic renderer's nearest-frame rule).
            out.append(VisualEvent(time=k / fps, kind="appear", strength=float(area / (h * w))))
    return out


def _ended(prev: np.ndarray, cur: np.ndarray, started: list[int], max_jump: float) -> np.ndarray:
    """Blobs of the previous frame that no blob of the current frame continues (K, 6)."""
    if not len(prev):
        return prev
    continuing = [j for j in range(len(cur)) if j not in started]
    if not continuing:
        return prev
    d = np.linalg.norm(prev[:, None, :2] - cur[None, continuing, :2], axis=-1)  # (P, C)
    # A previous blob continued if some continuing blob is its nearest within reach.
    kept = d.min(axis=1) <= max_jump
    return prev[~kept]


def _flashes(track: np.ndarray, fps: float, hw: tuple[int, int], cfg: VisualEventConfig, index: int) -> list[VisualEvent]:
    """A tracked blob that grows or brightens in place from one frame to the next (a shape that
    lights up while its unlit form stays visible)."""
    h, w = hw
    still = cfg.flash_max_shift * math.hypot(h, w)
    out = []
    for i in range(1, len(track)):
        f, x, y, area, _, contrast, compact = track[i]
        _, x0, y0, area0, _, contrast0, compact0 = track[i - 1]
        if not (compact and compact0) or min(area, area0) < cfg.min_event_area * h * w or contrast < 0.9 * contrast0:
            continue  # fragments, or a blob growing by merging with a fainter one (a string)
        grow = max(area / max(area0, 1.0), contrast / max(contrast0, 1e-6))
        if grow >= cfg.flash_ratio and math.hypot(x - x0, y - y0) <= still:
            out.append(VisualEvent(time=float(f / fps), kind="flash", strength=float(grow), track=index))
    return out


def _turns(track: np.ndarray, fps: float, width: int, cfg: VisualEventConfig, index: int) -> list[VisualEvent]:
    """Smooth reversals of horizontal motion (the ends of a pendulum swing): the zero crossing of
    the horizontal velocity, with enough travel on both sides that jitter does not count."""
    if len(track) < 4:
        return []
    vx = np.diff(track[:, 1])  # (L-1,): segment j spans frames f[j] -> f[j+1]
    f = track[:, 0]
    need = cfg.turn_travel_fraction * width
    span = max(2, round(0.25 * fps))  # travel measured over a quarter second each side
    out = []
    for j in range(len(vx) - 1):
        if vx[j] == 0 or np.sign(vx[j]) == np.sign(vx[j + 1]):
            continue
        before = np.abs(vx[max(0, j - span + 1):j + 1]).sum()
        after = np.abs(vx[j + 1:j + 1 + span]).sum()
        if before < need or after < need:
            continue
        # Velocities belong to segment middles; interpolate where vx crosses zero.
        tau = f[j] + 0.5 + vx[j] / (vx[j] - vx[j + 1])
        out.append(VisualEvent(time=float(tau / fps), kind="turn", strength=float(min(before, after) / width), track=index))
    return out


def _impacts(track: np.ndarray, fps: float, short_side: int, cfg: VisualEventConfig, index: int) -> list[VisualEvent]:
    """Impacts along one track (L, 7) of (frame, x, y, area, border, contrast, compact)."""
    if len(track) < 4:
        return []
    f, pos, area = track[:, 0], track[:, 1:3], track[:, 3]
    # A blob whose area departs from the track's usual area is merged with another object or cut
    # by the border: its centroid jumps without any contact, so it may not support an impact.
    reliable = (np.abs(area - np.median(area)) <= cfg.area_tolerance * np.median(area)) & (track[:, 6] == 1)
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


def detect_visual_events(frames: np.ndarray, fps: float, config: VisualEventConfig | None = None) -> list[VisualEvent]:
    """Visible events of a clip.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        fps: frame rate of `frames`.
        config: detector settings.

    Returns:
        Events sorted by time; events closer than `min_gap` are merged into one.
    """
    cfg = config or VisualEventConfig()
    x = _check_frames(frames, fps)
    if x.shape[0] < 3:
        return []
    h, w = x.shape[1:3]
    detections = _blobs(x, cfg)
    tracks, starts = _link(detections, cfg.max_jump_fraction * math.hypot(h, w))
    events: list[VisualEvent] = []
    for i, tr in enumerate(tracks):
        events += _impacts(tr, fps, min(h, w), cfg, i) + _turns(tr, fps, w, cfg, i) + _flashes(tr, fps, (h, w), cfg, i)
    events += _appearances(detections, starts, fps, (h, w), cfg)
    # Among events closer than min_gap keep one: an impact (timed between frames) over a turn or
    # an appearance (timed to a frame).
    rank = {"impact": 0, "turn": 1, "flash": 2, "appear": 3}
    events.sort(key=lambda e: e.time)
    merged: list[VisualEvent] = []
    for ev in events:
        if merged and ev.time - merged[-1].time < cfg.min_gap:
            if rank[ev.kind] < rank[merged[-1].kind]:
                merged[-1] = ev
            continue
        merged.append(ev)
    return merged
