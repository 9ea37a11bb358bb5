"""Overlapping windows with linear blending, for encoding and decoding clips of any length or size.

The autoencoder is convolutional, so a window of a clip gives the same result as the whole clip
except within the receptive field of the window's cut edges. Neighbouring windows therefore
overlap, and in the overlap each output position is a weighted mean of the windows that cover it,
with weights ramping linearly from 0 at a cut edge to 1 inside. Peak memory then depends on the
window size only, not on the clip.

Written by hand because no library tiles an arbitrary function along several axes whose input
and output sizes differ by a compression factor (diffusers' VAE tiling is tied to its models).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WindowAxis:
    """How one axis of the input is cut.

    Attributes:
        dim: the tensor dimension (same index in input and output).
        window: window length in input units (clamped to the axis length).
        overlap: overlap of neighbouring windows in input units.
        unit: window starts and lengths are multiples of this (the compression along this axis
            when encoding, 1 when decoding).
        scale_num: output length = input length * scale_num / scale_den.
        scale_den: see `scale_num`.
    """

    dim: int
    window: int
    overlap: int
    unit: int = 1
    scale_num: int = 1
    scale_den: int = 1

    def out_len(self, n: int) -> int:
        return n * self.scale_num // self.scale_den


def window_starts(size: int, window: int, overlap: int, unit: int = 1) -> list[int]:
    """Start offsets of windows of length `window` covering `[0, size)` with at least `overlap` shared.

    The last window is aligned to the end (it may overlap its neighbour by more). Starts are
    multiples of `unit` when `size`, `window` and `overlap` are.
    """
    if size <= window:
        return [0]
    stride = window - overlap
    if stride <= 0:
        raise ValueError(f"window ({window}) must be larger than overlap ({overlap}).")
    stride = max(unit, stride // unit * unit)
    starts = list(range(0, size - window, stride))
    starts.append(size - window)
    return starts


def _ramp(length: int, overlap: int, left: bool, right: bool, device: torch.device) -> torch.Tensor:
    """1D blending weight `(length,)`: rises over `overlap` at a cut left edge, falls at a cut right edge."""
    w = torch.ones(length, device=device)
    if overlap <= 0:
        return w
    pos = torch.arange(length, device=device, dtype=torch.float32)
    # +0.5 keeps every weight strictly positive, so each position has a defined mean.
    rise = ((pos + 0.5) / overlap).clamp(max=1.0)
    if left:
        w = torch.minimum(w, rise)
    if right:
        w = torch.minimum(w, rise.flip(0))
    return w


def _windows(shape: torch.Size, axes: list[WindowAxis]) -> Iterator[list[tuple[int, int, bool, bool]]]:
    """Yield, for every window, one (start, length, cut_left, cut_right) per axis, in input units."""
    per_axis: list[list[tuple[int, int, bool, bool]]] = []
    for ax in axes:
        size = shape[ax.dim]
        length = min(ax.window, size)
        starts = window_starts(size, length, ax.overlap, ax.unit)
        per_axis.append([(s, length, s > 0, s + length < size) for s in starts])
    yield from (list(combo) for combo in itertools.product(*per_axis))


def count_windows(shape: torch.Size | tuple[int, ...], axes: list[WindowAxis]) -> int:
    """Number of windows `blend_windows` will run for an input of this shape."""
    return sum(1 for _ in _windows(torch.Size(shape), axes))


def blend_windows(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    axes: list[WindowAxis],
    progress: Callable[[int], object] | None = None,
) -> torch.Tensor:
    """Apply `fn` to overlapping windows of `x` and blend the results.

    Args:
        fn: maps a window of `x` to its output; along every axis in `axes` the output length is
            the window length times `scale_num / scale_den`; other axes may change freely but
            must be the same for every window (e.g. channels).
        x: the input, e.g. `(B, 3, T, H, W)` pixels or `(B, C, T', H', W')` latents.
        axes: the axes to cut (an axis whose window covers it is left whole).
        progress: called with 1 after every window (e.g. `tqdm.update`).

    Returns:
        The blended output, with each cut axis scaled as described.
    """
    axes = sorted(axes, key=lambda a: a.dim)  # weight axes then follow the tensor's axis order
    out: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    for win in _windows(x.shape, axes):
        index: list[slice] = [slice(None)] * x.ndim
        for ax, (start, length, _, _) in zip(axes, win):
            index[ax.dim] = slice(start, start + length)
        y = fn(x[tuple(index)])
        if out is None:
            shape = list(y.shape)
            for ax in axes:
                shape[ax.dim] = ax.out_len(x.shape[ax.dim])
            out = torch.zeros(shape, dtype=torch.float32, device=y.device)
            weight = torch.zeros([shape[ax.dim] for ax in axes], dtype=torch.float32, device=y.device)
        # The blending weight of this window: outer product of one ramp per axis.
        w_win = torch.ones((), device=y.device)
        out_index: list[slice] = [slice(None)] * y.ndim
        w_index: list[slice] = []
        for k, (ax, (start, length, left, right)) in enumerate(zip(axes, win)):
            o_start, o_len = ax.out_len(start), ax.out_len(length)
            if y.shape[ax.dim] != o_len:
                raise RuntimeError(
                    f"window function returned length {y.shape[ax.dim]} on dim {ax.dim}, expected {o_len}"
                )
            ramp = _ramp(o_len, ax.out_len(ax.overlap), left, right, y.device)
            w_win = w_win.unsqueeze(-1) * ramp if k else ramp
            out_index[ax.dim] = slice(o_start, o_start + o_len)
            w_index.append(slice(o_start, o_start + o_len))
        assert out is not None and weight is not None
        out[tuple(out_index)] += y.float() * _broadcast(w_win, axes, y.ndim)
        weight[tuple(w_index)] += w_win
        if progress is not None:
            progress(1)
    assert out is not None and weight is not None
    return out / _broadcast(weight, axes, out.ndim)


def _broadcast(w: torch.Tensor, axes: list[WindowAxis], ndim: int) -> torch.Tensor:
    """Reshape a weight with one axis per cut axis (in dim order) so it broadcasts over an `ndim` tensor."""
    view = [1] * ndim
    for k, ax in enumerate(axes):
        view[ax.dim] = w.shape[k]
    return w.reshape(view)
