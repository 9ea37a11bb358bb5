"""Inputs of the image and retake tasks of `avgen sample`: reading a first frame, snapping a span to
latent frames, and splicing regenerated pieces into a clip.

Images of another size are resized, not refused: scaled to cover the model's frame size keeping
their aspect ratio, then centre-cropped, the rule `read_clip` applies to videos (so an image taken
from a video of the training size comes back unchanged, and a photo is treated as a video would
be). Only images that cannot be read, or have no pixels, are refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["psnr", "read_image", "snap_span", "splice_audio", "splice_frames"]


def read_image(path: str | Path, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read an image (PNG, JPEG, WebP, BMP, TIFF...) as one RGB frame of `size`.

    Args:
        path: the image file.
        size: (H, W) of the frame wanted.

    Returns:
        (frame (H, W, 3) uint8, (height, width) of the file's image).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not an image that can be decoded, or is empty.
    """
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--image {p} does not exist.")
    data = np.frombuffer(p.read_bytes(), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # alpha dropped, grey made RGB
    if bgr is None or bgr.size == 0:
        raise ValueError(f"{p} cannot be read as an image (PNG, JPEG, WebP, BMP or TIFF); it is empty, corrupt or "
                         "another kind of file.")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # (h, w, 3)
    h0, w0 = rgb.shape[:2]
    h, w = size
    scale = max(h / h0, w / w0)  # cover the frame, then crop the overflow
    nh, nw = max(h, math.ceil(h0 * scale - 1e-9)), max(w, math.ceil(w0 * scale - 1e-9))
    if (nh, nw) != (h0, w0):
        shrink = nh * nw < h0 * w0
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    top, left = (nh - h) // 2, (nw - w) // 2
    frame = np.ascontiguousarray(rgb[top:top + h, left:left + w])
    return torch.from_numpy(frame), (h0, w0)


def snap_span(span: tuple[float, float], step: float, duration: float) -> tuple[float, float]:
    """The span widened to whole steps of `step` seconds (video tokens), inside [0, duration].

    Raises:
        ValueError: the span is empty, reversed, or not inside the clip.
    """
    start, end = float(span[0]), float(span[1])
    if not start < end:
        raise ValueError(f"--span START END needs START < END; got {start:g} {end:g}.")
    if start < 0 or end > duration + 1e-6:
        raise ValueError(f"--span {start:g} {end:g} is outside the clip, which lasts {duration:g} s; give a span "
                         f"inside 0 .. {duration:g}.")
    lo = math.floor(start / step + 1e-6) * step
    hi = min(math.ceil(end / step - 1e-6) * step, duration)
    return lo, hi


def splice_frames(kept: torch.Tensor, made: torch.Tensor, span: tuple[float, float], fps: float) -> torch.Tensor:
    """`kept` (T, H, W, 3) with the frames of `span` taken from `made` (same shape)."""
    f0, f1 = round(span[0] * fps), round(span[1] * fps)
    out = kept.clone()
    out[f0:f1] = made[f0:f1]
    return out


def splice_audio(kept: torch.Tensor, made: torch.Tensor, span: tuple[float, float], sample_rate: int,
                 fade: float = 0.01) -> torch.Tensor:
    """`kept` (C, S) with `span` taken from `made` (C, S), cross-faded over `fade` seconds at each edge.

    The fades lie inside the span, so the audio outside it is the original to the sample; they
    hide the small step between the original and the codec's decoding of the regenerated latents.
    """
    s0, s1 = round(span[0] * sample_rate), min(round(span[1] * sample_rate), kept.shape[-1])
    n = max(0, min(round(fade * sample_rate), (s1 - s0) // 2))
    w = torch.ones(s1 - s0)
    if n:
        ramp = torch.linspace(0.0, 1.0, n + 2)[1:-1]  # strictly inside (0, 1)
        if s0 > 0:
            w[:n] = ramp
        if s1 < kept.shape[-1]:
            w[-n:] = ramp.flip(0)
    out = kept.clone()
    out[:, s0:s1] = w * made[:, s0:s1] + (1 - w) * kept[:, s0:s1]
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when equal)."""
    mse = (a.float() - b.float()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
