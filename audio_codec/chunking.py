"""Chunk planning and cross-faded overlap-add for long audio.

A codec's encoder and decoder are convolutional (plus an optional LSTM), so memory grows with the
length of the input. Long inputs are cut into equal chunks of latent frames that overlap; each
chunk is processed alone and the results are blended over the overlaps. Near an inner chunk edge
an output's receptive field reaches past the chunk and sees padding instead of the neighbouring
signal, so those `margin` positions get zero weight; the rest of the overlap is cross-faded
linearly and normalized by the summed weights. With a margin that covers the receptive field of a
convolutional codec the blend equals the whole-signal result up to float rounding.

Written here rather than taken from `encodec.utils._linear_overlap_add` because that helper is
private, works in samples only, and uses triangle windows that also down-weight chunk centres.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm


def plan_chunks(total: int, chunk: int, overlap: int) -> list[int]:
    """Start indices of chunks of length `chunk` covering `[0, total)`.

    All chunks have the same length (so they could be batched); the last one is aligned to the end,
    which can make its overlap with the previous chunk larger than `overlap`.

    Args:
        total: length to cover (> chunk).
        chunk: chunk length.
        overlap: minimum overlap between consecutive chunks (0 <= overlap < chunk).
    """
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap must lie in [0, chunk={chunk}), got {overlap}.")
    if total <= chunk:
        return [0]
    stride = chunk - overlap
    starts = list(range(0, total - chunk, stride))
    starts.append(total - chunk)
    return starts


def crossfade_window(length: int, fade: int, *, skip_start: int = 0, skip_end: int = 0,
                     device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Blending window (length,): `skip_*` zeros at either end, then linear ramps of `fade`, 1 in between.

    Ramp values are strictly positive, so a position covered by one chunk only keeps its value
    after normalization; skipped positions must be covered by a neighbouring chunk.
    """
    window = torch.ones(length, device=device, dtype=dtype)
    if fade > 0:
        ramp = (torch.arange(fade, device=device, dtype=dtype) + 0.5) / fade  # (fade,) in (0, 1)
        window[skip_start:skip_start + fade] = ramp
        end = length - skip_end
        window[end - fade:end] = torch.minimum(window[end - fade:end], ramp.flip(0))
    window[:skip_start] = 0
    window[length - skip_end:] = 0
    return window


def chunked_apply(
    x: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    in_chunk: int,
    in_overlap: int,
    scale: int,
    in_margin: int = 0,
    progress: bool = False,
    desc: str = "chunks",
) -> torch.Tensor:
    """Apply a length-scaling function `fn` chunk by chunk along the last axis and blend.

    Args:
        x: input (B, C, N).
        fn: the per-chunk transform (an encoder or a decoder): (B, C, in_chunk) ->
            (B, C', in_chunk * scale) for `scale` > 0, or (B, C', in_chunk // -scale) for
            `scale` < 0 (downsampling by -scale; `in_chunk`, `in_overlap` and every chunk start
            are then multiples of -scale).
        in_chunk: chunk length in input positions.
        in_overlap: overlap in input positions (at least 2 * in_margin).
        scale: output positions per input position (> 0), or -k for k input positions per output.
        in_margin: input positions at each inner chunk edge whose outputs are dropped because `fn`
            sees padding there instead of the neighbouring input (its receptive field reaches past
            the edge); the outer edges of `x` are kept, as a whole-signal pass pads them too.
        progress: show a progress bar over the chunks.
        desc: label of the progress bar.

    Returns:
        (B, C', N * scale) or (B, C', N // k): the blended output.
    """
    if scale == 0:
        raise ValueError("scale must be non-zero.")

    def out_len(length: int) -> int:
        return length * scale if scale > 0 else length // -scale

    if not 0 <= 2 * in_margin <= in_overlap:
        raise ValueError(f"in_overlap ({in_overlap}) must be at least 2 * in_margin ({in_margin}) so every position "
                         "has a chunk whose receptive field covers it.")
    n = x.shape[-1]
    starts = plan_chunks(n, in_chunk, in_overlap)
    margin, fade = out_len(in_margin), out_len(in_overlap - 2 * in_margin)
    out: torch.Tensor | None = None
    weight_sum: torch.Tensor | None = None
    for k, start in enumerate(tqdm(starts, desc=desc, disable=not progress or len(starts) < 2, leave=False)):
        y = fn(x[..., start:start + in_chunk])  # (B, C', out_len(in_chunk))
        if out is None:
            out = y.new_zeros(*y.shape[:-1], out_len(n))  # (B, C', out_len(N))
            weight_sum = y.new_zeros(out_len(n))
        assert weight_sum is not None
        window = crossfade_window(y.shape[-1], fade, skip_start=margin if k > 0 else 0,
                                  skip_end=margin if k < len(starts) - 1 else 0, device=y.device, dtype=y.dtype)
        a = out_len(start)
        out[..., a:a + y.shape[-1]] += y * window
        weight_sum[a:a + y.shape[-1]] += window
    assert out is not None and weight_sum is not None
    return out / weight_sum
