"""Hand-made features of a clip's objects, scene and sounds, for the attribute recognisers.

The attribute metric (`eval.metrics.attributes`) asks whether a generated clip shows and sounds
what its prompt says on the synthetic benchmark: the objects' colours and shapes, how many there
are, the background, the kind of motion, and each sound's class and pitch. No library or
pretrained network recognises these procedural attributes (and the 64 x 64 frames are far
outside what image classifiers are trained on), so they are measured here with a few numbers a
person can check, and the classifiers on top are fitted on reference clips whose parameters are
known:

- Background: the most frequent colour of each row over columns and frames. The synthetic
  background is one colour with a vertical ramp, so every row has one background colour, and it
  stays the commonest one where a temporal median fails (the flash family's shapes never move) and
  where a row median fails (a sliding block covers half of its rows over the clip, halos blend
  shapes into the background); a floor fills whole rows and so belongs to the background too.
- Foreground: pixels far from that background, minus static structures that span the frame
  (walls), opened with a 3 x 3 kernel so that thin lines (a pendulum's rod) drop out.
- Objects: connected components of each frame. The count is the most frequent number of
  components over the frames; in the frames showing that many, object k is the k-th component
  from the left (the synthetic families place several objects left to right in index order).
- Colour: chromaticity, hue, saturation and value of an object's inner pixels (edges are mixed
  with the background, and H.264's 4:2:0 chroma smears them).
- Shape: fill of the bounding box, aspect, centroid offsets and the width (height) of the mask at
  seven heights (widths): a ball, square, triangle and diamond have distinct profiles.
- Motion: travel, speed, vertical reversals, how height follows horizontal position (a pendulum's
  arc), how much an object's size and brightness change (a flash), and whether the frame has a
  floor or walls.
- Sound: spectra, harmonic structure, band energies and decay of the audio right after an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from eval.metrics.visual_events import components

__all__ = ["ClipVisualFeatures", "video_features", "sound_features", "FOREGROUND_THRESHOLD"]

FOREGROUND_THRESHOLD = 35.0  # 0-255, max over channels: dim flash shapes differ from the background by >= 50
_PROFILE = np.linspace(0.1, 0.9, 7)  # relative positions of the shape profile samples


@dataclass
class ClipVisualFeatures:
    """Features of one clip's frames.

    Attributes:
        background: (B,) features of the background colour.
        count: (C,) features of the number of objects.
        family: (M,) features of the motion family.
        colours: one (K,) colour feature vector per object found, left to right.
        shapes: one (S,) shape feature vector per object found, left to right.
    """

    background: np.ndarray
    count: np.ndarray
    family: np.ndarray
    colours: list[np.ndarray] = field(default_factory=list)
    shapes: list[np.ndarray] = field(default_factory=list)


def _colour_features(rgb: np.ndarray) -> np.ndarray:
    """(8,): chromaticity (3), hue as cos/sin, saturation, value, log brightness."""
    rgb = np.clip(np.asarray(rgb, np.float64), 0, 255)
    total = rgb.sum() + 1e-6
    hsv = cv2.cvtColor(np.round(rgb).astype(np.uint8).reshape(1, 1, 3), cv2.COLOR_RGB2HSV_FULL)[0, 0].astype(np.float64)
    hue = hsv[0] / 256.0 * 2 * np.pi
    sat = hsv[1] / 255.0
    return np.array([*(rgb / total), sat * np.cos(hue), sat * np.sin(hue), sat, hsv[2] / 255.0,
                     np.log1p(total) / 6.0])


def _shape_features(mask: np.ndarray) -> np.ndarray:
    """(20,) features of a component's mask cropped to its bounding box (h, w) bool."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    rows = mask.sum(axis=1) / w  # (h,) width of each row relative to the box
    cols = mask.sum(axis=0) / h  # (w,)
    row_prof = np.interp(_PROFILE * (h - 1), np.arange(h), rows)
    col_prof = np.interp(_PROFILE * (w - 1), np.arange(w), cols)
    return np.array([mask.mean(), np.log(w / h), (ys.mean() + 0.5) / h - 0.5, (xs.mean() + 0.5) / w - 0.5,
                     np.log(mask.sum()) / 8.0, float(min(h, w) < 4), *row_prof, *col_prof])


def _row_modes(x: np.ndarray, step: float = 12.0) -> np.ndarray:
    """(H, 3): per row of frames (T, H, W, 3), the median of the pixels in the most populated colour
    bin (bins `step` levels wide; the bins are tried at two offsets so that a colour on a bin edge
    is not split in two)."""
    t, h, w = x.shape[:3]
    rows = x.transpose(1, 0, 2, 3).reshape(h, t * w, 3)  # (H, N, 3)
    out = np.empty((h, 3), np.float32)
    for i in range(h):
        best, pick = -1, None
        for shift in (0.0, step / 2):
            q = np.floor((rows[i] + shift) / step).astype(np.int64)  # (N, 3)
            keys = (q[:, 0] * 64 + q[:, 1]) * 64 + q[:, 2]
            uniq, inv, cnt = np.unique(keys, return_inverse=True, return_counts=True)
            if cnt.max() > best:
                best, pick = cnt.max(), inv.reshape(-1) == cnt.argmax()
        out[i] = np.median(rows[i][pick], axis=0)
    return out


def _structure(fg: np.ndarray) -> np.ndarray:
    """(H, W) mask of static foreground spanning most of the frame's height or width (walls)."""
    h, w = fg.shape[1:]
    static = (fg.mean(axis=0) > 0.9).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(static, connectivity=8)
    out = np.zeros((h, w), bool)
    for lab in range(1, n):
        if stats[lab, cv2.CC_STAT_HEIGHT] >= 0.8 * h or stats[lab, cv2.CC_STAT_WIDTH] >= 0.8 * w:
            out |= labels == lab
    return out


def _components(x: np.ndarray, fg: np.ndarray, distance: np.ndarray, min_area: float) -> list[list[dict]]:
    """Per frame, the objects left to right: {x, y, area, contrast, rgb, shape}."""
    kernel = np.ones((3, 3), np.uint8)
    out = []
    for k in range(fg.shape[0]):
        labels, found = components(fg[k], kernel, min_area)
        objs = []
        for c in found:
            left, top, bw, bh = c.left, c.top, c.width, c.height
            comp = labels[top:top + bh, left:left + bw] == c.label  # (bh, bw)
            core = cv2.erode(comp.astype(np.uint8), kernel).astype(bool)
            pix = x[k, top:top + bh, left:left + bw][core if core.sum() >= 3 else comp]  # (P, 3)
            objs.append({"x": c.cx, "y": c.cy, "area": float(c.area),
                         "contrast": float(distance[k, top:top + bh, left:left + bw][comp].mean()),
                         "rgb": np.median(pix, axis=0), "shape": _shape_features(comp)})
        out.append(sorted(objs, key=lambda o: o["x"]))
    return out


def _motion(tracks: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """(12,) motion features of object tracks, each (L, 4) rows (x, y, area, contrast)."""
    rows = []
    for tr in tracks:
        x, y = tr[:, 0] / w, tr[:, 1] / h
        dx, dy = np.diff(x), np.diff(y)
        # pendulum: the bob is highest at the ends of its swing, so y falls as |x - centre| grows
        bend = np.corrcoef(y, (x - x.mean()) ** 2)[0, 1] if x.std() > 0.02 and y.std() > 1e-3 else 0.0
        reversals = np.sum(np.diff(np.sign(dy[np.abs(dy) > 0.004])) != 0) if dy.size else 0
        xrev = np.sum(np.diff(np.sign(dx[np.abs(dx) > 0.004])) != 0) if dx.size else 0
        rows.append([np.ptp(x), np.ptp(y), np.abs(dx).mean() if dx.size else 0.0, np.abs(dy).mean() if dy.size else 0.0,
                     np.mean(np.hypot(dx, dy) < 0.005) if dx.size else 1.0, bend, reversals / 4.0, xrev / 4.0,
                     y.mean(), y.max(), np.std(tr[:, 2]) / (tr[:, 2].mean() + 1e-6),
                     np.std(tr[:, 3]) / (tr[:, 3].mean() + 1e-6)])
    return np.mean(rows, axis=0) if rows else np.zeros(12)


def video_features(frames: np.ndarray, threshold: float = FOREGROUND_THRESHOLD) -> ClipVisualFeatures:
    """Features of a clip's frames.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        threshold: foreground distance from the background (0-255, max over channels).

    Returns:
        The clip's `ClipVisualFeatures`.
    """
    x = np.asarray(frames, np.float32)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 2:
        raise ValueError(f"frames must have shape (T>=2, H, W, 3), got {x.shape}.")
    t, h, w = x.shape[:3]
    # 1. Background: the commonest colour of each row (H, 3), broadcast over the row.
    bg_rows = _row_modes(x)  # (H, 3)
    distance = np.abs(x - bg_rows[None, :, None, :]).max(axis=-1)  # (T, H, W)
    fg = distance > threshold
    walls = _structure(fg)
    fg &= ~walls[None]
    # Floor: bottom rows much brighter than the rows above them (it is part of the row background).
    level = bg_rows.mean(axis=1)  # (H,)
    floor = float((level[int(0.9 * h):].mean() - np.median(level)) / 255.0)
    background = np.median(bg_rows[: int(0.8 * h)], axis=0)  # the floor band left out
    bg_feat = np.array([*(background / 255.0), *_colour_features(background)])
    # 2. Objects per frame and their count.
    comps = _components(x, fg, distance, max(8.0, 0.003 * h * w))
    counts = np.array([len(c) for c in comps])
    mode = int(np.bincount(counts).argmax())
    count_feat = np.array([mode, np.median(counts), counts.mean(), counts.max(), np.mean(counts == 0),
                           np.mean(counts == mode)], float)
    # 3. Objects by rank in the frames that show the usual number of them.
    chosen = [c for c in comps if len(c) == mode and mode > 0]
    colours, shapes, tracks = [], [], []
    for j in range(mode if chosen else 0):
        objs = [c[j] for c in chosen]
        rgb = np.median([o["rgb"] for o in objs], axis=0)
        colours.append(_colour_features(rgb))
        shapes.append(np.median([o["shape"] for o in objs], axis=0))
        tracks.append(np.array([[o["x"], o["y"], o["area"], o["contrast"]] for o in objs]))
    fam_feat = np.array([*_motion(tracks, h, w), floor, walls.mean(), mode, np.mean(counts == mode),
                         fg.mean(axis=(1, 2)).std() / (fg.mean() + 1e-6)])
    return ClipVisualFeatures(background=bg_feat, count=count_feat, family=fam_feat, colours=colours, shapes=shapes)


def _level_at(spec: np.ndarray, freqs: np.ndarray, f: float, peak: float, top: float) -> float:
    """Log level of the spectrum (F,) near frequency f relative to `peak` (-12 above `top` Hz)."""
    sel = np.abs(freqs - f) <= max(15.0, 0.02 * f)
    return float(np.log(spec[sel].max() / peak)) if sel.any() and f < top else -12.0


def sound_features(audio: np.ndarray, sample_rate: int, times: np.ndarray, max_window: float = 0.12) -> np.ndarray:
    """Features of the sound starting at each event time.

    Args:
        audio: (S,) mono waveform.
        sample_rate: samples per second.
        times: (E,) event times in seconds, sorted.
        max_window: seconds analysed after an event (cut short before the next event).

    Returns:
        (E, F) float64 features: log peak frequency and centroid, the spectrum at harmonic and
        inharmonic multiples of the peak, 12 log-spaced band energies, flatness and the decay.
    """
    a = np.asarray(audio, np.float64).reshape(-1)
    times = np.asarray(times, np.float64)
    nfft = 8192
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    edges = np.geomspace(80.0, min(12000.0, 0.49 * sample_rate), 13)
    out = []
    for i, t0 in enumerate(times):
        nxt = times[i + 1] if i + 1 < len(times) else np.inf
        length = max(0.03, min(max_window, nxt - t0 - 0.005))
        s0 = max(0, int(round(t0 * sample_rate)))
        seg = a[s0:s0 + int(length * sample_rate)]
        if seg.size < 16:
            seg = np.zeros(int(0.03 * sample_rate))
        taper = np.ones(seg.size)
        fade = seg.size // 4
        taper[-fade:] = np.hanning(2 * fade)[fade:]  # no window on the attack: impacts are loudest there
        spec = np.abs(np.fft.rfft(seg * taper, nfft)) + 1e-9  # (F,)
        power = spec**2
        band = (freqs >= 60.0) & (freqs <= 0.45 * sample_rate)
        f0 = freqs[band][np.argmax(spec[band])]

        # harmonic (tones) and inharmonic (materials' modes) multiples of the peak
        ratios = [_level_at(spec, freqs, r * f0, spec[band].max(), 0.45 * sample_rate)
                  for r in (0.5, 1.5, 2.0, 2.32, 2.57, 2.76, 3.0, 4.0, 5.0)]
        bands = np.array([power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])])
        bands = np.log(bands / bands.sum() + 1e-9)
        centroid = (freqs[band] * power[band]).sum() / power[band].sum()
        flatness = np.exp(np.mean(np.log(power[band]))) / power[band].mean()
        n10 = max(1, int(0.01 * sample_rate))
        rms = [np.sqrt(np.mean(seg[k * n10:(k + 1) * n10] ** 2) + 1e-12) for k in range(max(1, seg.size // n10))]
        level0 = rms[0]
        decay = [np.log(rms[min(k, len(rms) - 1)] / level0) for k in (1, 2, 4, 8)]
        loud = np.log10(np.sqrt(np.mean(seg**2)) + 1e-6)
        out.append([np.log2(f0), np.log2(centroid), *ratios, *bands, np.log10(flatness + 1e-12), *decay, loud])
    return np.asarray(out, np.float64).reshape(len(times), -1)
