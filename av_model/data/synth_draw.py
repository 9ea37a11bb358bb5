"""Vectorized drawing for the synthetic dataset: anti-aliased shapes over all frames at once.

Each shape is a signed distance (negative inside, in pixels) evaluated on the pixel grid for every
frame in one broadcast; coverage is `clip(0.5 - d, 0, 1)`, which anti-aliases edges by one pixel.
Drawing libraries (Pillow, OpenCV) work one frame and one shape at a time through Python calls;
for 32-frame clips of a few shapes a numpy broadcast is several times faster and needs no
extra dependency.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SHAPES", "Canvas"]

SHAPES = ("ball", "square", "triangle", "diamond")
_SQRT3_2 = np.sqrt(3.0) / 2.0


def shape_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    """Signed distance (pixels) to a shape of "radius" r centred at the origin.

    Args:
        shape: one of `SHAPES`.
        dx, dy: (T, H, W) offsets of pixel centres from the shape's centre (y points down).
        r: half the shape's height (scalar or broadcastable to dx): every shape spans [-r, r] vertically, so all touch a floor
            at the same centre height.

    Returns:
        (T, H, W) distance, negative inside.
    """
    if shape == "ball":
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - r
    if shape == "diamond":
        # 1.2 times as wide as tall; divided by the gradient's norm to stay a distance in pixels
        return (np.abs(dx) / 1.2 + np.abs(dy) - r) / 1.3017
    if shape == "triangle":
        # equilateral, apex at (0, -r), base on y = +r: the max of the three edge half-plane
        # distances (outward normals down, up-right, up-left)
        up = -0.5 * (dy + r)
        return np.maximum(dy - r, np.maximum(_SQRT3_2 * dx + up, -_SQRT3_2 * dx + up))
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}.")


class Canvas:
    """T frames of H x W RGB in float32, drawn with per-pixel coverage and turned into uint8.

    Args:
        num_frames, height, width: frame geometry.
        background: (3,) RGB in [0, 255]; a gentle vertical gradient is applied so that the
            background is not one flat colour (flat frames compress to nothing and teach the
            video autoencoder little).
    """

    def __init__(self, num_frames: int, height: int, width: int, background: np.ndarray) -> None:
        self.t, self.h, self.w = num_frames, height, width
        ramp = np.linspace(1.15, 0.85, height, dtype=np.float32)[:, None, None]  # (H, 1, 1)
        bg = np.clip(ramp * background.astype(np.float32)[None, None, :], 0, 255)  # (H, 1, 3)
        self.static = np.broadcast_to(bg, (height, width, 3)).copy()  # (H, W, 3): background, floor, walls
        self._img: np.ndarray | None = None  # (T, H, W, 3), made from `static` at the first sprite
        self.yy = np.arange(height, dtype=np.float32)[None, :, None] + 0.5  # (1, H, 1) pixel centres
        self.xx = np.arange(width, dtype=np.float32)[None, None, :] + 0.5  # (1, 1, W)

    @property
    def img(self) -> np.ndarray:
        """(T, H, W, 3) float32 frames."""
        if self._img is None:
            self._img = np.broadcast_to(self.static[None], (self.t, self.h, self.w, 3)).copy()
        return self._img

    def blend(self, alpha: np.ndarray, colour: np.ndarray, window: tuple[slice, slice] | None = None) -> None:
        """Paint `colour` ((3,) or (T, 3)) with coverage `alpha` ((T, h, w) in [0, 1]).

        `alpha` covers the whole frame, or the (rows, cols) `window` of it. Only covered pixels are
        touched: a sprite covers a few percent of the frame, so gathering them is several times
        cheaper than blending every pixel of every frame.
        """
        t, y, x = np.nonzero(alpha)
        if t.size == 0:
            return
        a = alpha[t, y, x][:, None]  # (N, 1)
        if window is not None:
            y, x = y + window[0].start, x + window[1].start
        c = colour.astype(np.float32)
        c = c[t] if c.ndim == 2 else c[None]  # (N, 3) | (1, 3)
        img = self.img
        px = img[t, y, x]  # (N, 3)
        img[t, y, x] = px + a * (c - px)

    def rect(self, top: float, left: float, bottom: float, right: float, colour: np.ndarray) -> None:
        """A static filled rectangle in pixel coordinates (edges between pixels), under all sprites."""
        if self._img is not None:
            raise RuntimeError("draw static rectangles before the first sprite")
        cov_y = np.clip(np.minimum(self.yy[0] - top, bottom - self.yy[0]) + 0.5, 0, 1)  # (H, 1)
        cov_x = np.clip(np.minimum(self.xx[0] - left, right - self.xx[0]) + 0.5, 0, 1)  # (1, W)
        a = (cov_y * cov_x)[..., None]  # (H, W, 1)
        self.static = self.static * (1.0 - a) + colour.astype(np.float32) * a

    def shape(
        self, shape: str, x: np.ndarray, y: np.ndarray, r: float | np.ndarray, colour: np.ndarray, halo: float = 0.0
    ) -> tuple[np.ndarray, tuple[slice, slice]] | None:
        """Draw a moving shape: x, y (T,) centre per frame, r scalar or (T,).

        Work is limited to the box the shape (plus `halo` pixels) sweeps over the clip.

        Returns:
            (its (T, h, w) distance field, the (rows, cols) window it covers), or None when the
            shape never enters the frame.
        """
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        radius = np.asarray(r, dtype=np.float32)
        reach = 1.3 * float(radius.max()) + halo + 2.0  # every shape fits in 1.3 r of its centre
        r0, r1 = max(int(y.min() - reach), 0), min(int(np.ceil(y.max() + reach)), self.h)
        c0, c1 = max(int(x.min() - reach), 0), min(int(np.ceil(x.max() + reach)), self.w)
        if r0 >= r1 or c0 >= c1:
            return None
        window = (slice(r0, r1), slice(c0, c1))
        dx = self.xx[:, :, c0:c1] - x[:, None, None]  # (T, 1, w)
        dy = self.yy[:, r0:r1, :] - y[:, None, None]  # (T, h, 1)
        dx, dy = np.broadcast_arrays(dx, dy)  # (T, h, w)
        radius = radius[:, None, None] if radius.ndim == 1 else radius
        d = shape_distance(shape, dx, dy, radius)
        self.blend(np.clip(0.5 - d, 0.0, 1.0), colour, window)
        return d, window

    def glow(
        self, drawn: tuple[np.ndarray, tuple[slice, slice]] | None, width: float, strength: np.ndarray,
        colour: np.ndarray,
    ) -> None:
        """A soft halo `width` pixels around a shape drawn by `shape` (with halo >= width); strength (T,)."""
        if drawn is None:
            return
        d, window = drawn
        halo = np.clip(1.0 - d / width, 0.0, 1.0) * (d > 0)  # (T, h, w)
        self.blend(halo * strength[:, None, None].astype(np.float32), colour, window)

    def segment(
        self, x0: float, y0: float, x1: np.ndarray, y1: np.ndarray, width: float, colour: np.ndarray
    ) -> None:
        """A line from a fixed point to a moving one (T,), e.g. a pendulum rod."""
        px, py = self.xx - x0, self.yy - y0  # (1, 1, W), (1, H, 1)
        vx = (np.asarray(x1, np.float32) - x0)[:, None, None]  # (T, 1, 1)
        vy = (np.asarray(y1, np.float32) - y0)[:, None, None]
        u = np.clip((px * vx + py * vy) / np.maximum(vx * vx + vy * vy, 1e-6), 0.0, 1.0)  # (T, H, W)
        d = np.sqrt((px - u * vx) ** 2 + (py - u * vy) ** 2) - width / 2
        self.blend(np.clip(0.5 - d, 0.0, 1.0), colour)

    def to_uint8(self) -> np.ndarray:
        """(T, H, W, 3) uint8."""
        return np.clip(np.rint(self.img), 0, 255).astype(np.uint8)
