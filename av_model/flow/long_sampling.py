"""Clips longer than the training window, sampled chunk by chunk with the recent past as history.

Chunk 0 is the requested task ("t2av", "i2av" or "extend") over one window. Every later chunk is an
"extend" over one window whose given prefix is the last `history` seconds of the latents made so
far, held clean with t = 0: the clean-prefix situation the model is trained on (`FlowConfig.p_prefix`),
so no new training is needed. Both modalities continue together, since both prefixes are given.

Why a sliding window of latents:
  * the model attends over one window, the length it was trained on, whatever the clip's length,
    so memory and per-chunk cost stay flat and the model stays on sequence lengths it has seen;
  * the history is the latents themselves, not a decode and re-encode of them, so no autoencoder
    error accumulates from chunk to chunk, and the whole clip is decoded once at the end (no seam
    in the decoders either);
  * the default history is half the window: training gives clean prefixes of up to
    `FlowConfig.prefix_max_fraction` (0.5) of a clip, so a longer one is outside what the model has
    seen, and a shorter one gives it less context for each chunk to continue.

Chunks start on whole video tokens. The audio latent rate need not divide the video's (75 vs 4
per second for the defaults), so a chunk's audio starts at the latent frame nearest its video
start, at most one audio latent frame away; history frames are selected by the training rule (a
frame is given when its centre lies inside the prefix), so the given audio is exactly the tail of
what the chunk before made.

Shapes: B batch, C channels, T_v/T_a latent frames, H/W latent size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from av_model.flow.sampling import SamplerConfig, Task, sample
from av_model.text.batch import TextBatch

__all__ = ["CHUNK_SEED_STRIDE", "Chunk", "plan_chunks", "retake_crop", "sample_long"]

# Chunk k of a clip with seed s draws its noise from seed s + k * CHUNK_SEED_STRIDE: chunk 0 is the
# clip one window long with that seed, and chunks do not reuse the noise of neighbouring clips' seeds.
CHUNK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Chunk:
    """One window of a long clip, in latent frames of the whole clip.

    Attributes:
        index: position in the clip (0 first).
        video: [start, end) latent video frames it covers.
        audio: [start, end) latent audio frames it covers.
        history_video, history_audio: its leading frames given from the chunks before (0 for chunk 0).
    """

    index: int
    video: tuple[int, int]
    audio: tuple[int, int]
    history_video: int
    history_audio: int

    def seconds(self, video_rate: float) -> dict[str, float]:
        """Start, end and given history of the chunk in seconds (for sidecars and logs)."""
        return {"start": self.video[0] / video_rate, "end": self.video[1] / video_rate,
                "history": self.history_video / video_rate}


def _audio_given(history_seconds: float, audio_rate: float) -> int:
    """Audio latent frames whose centre lies inside the first `history_seconds`: the rule (and the
    arithmetic) by which "extend" selects them, so the count always agrees with the sampler's."""
    n = math.ceil(history_seconds * audio_rate) + 1
    return int(((torch.arange(n, dtype=torch.float64) + 0.5) / audio_rate < history_seconds).sum())


def plan_chunks(video_frames: int, audio_frames: int, video_rate: float, audio_rate: float, window: int,
                history: int) -> list[Chunk]:
    """The windows of a clip of `video_frames` / `audio_frames` latent frames.

    Args:
        video_frames, audio_frames: latent frames of the whole clip.
        video_rate, audio_rate: latent frames per second.
        window: latent video frames per chunk (whole tokens).
        history: latent video frames of each chunk given from the one before (whole tokens, < window).

    Returns:
        one chunk when the clip fits one window, else chunks overlapping by `history` frames, the last
        one shorter when the clip does not end on a window.
    """
    if window < 1 or not 0 < history < window:
        raise ValueError(f"a chunked clip needs 0 < history < window latent frames; got history {history}, "
                         f"window {window}.")

    def audio_end(v_end: int) -> int:
        if v_end >= video_frames:
            return audio_frames
        return min(audio_frames, math.ceil(v_end / video_rate * audio_rate - 1e-9))

    first = min(window, video_frames)
    chunks = [Chunk(0, (0, first), (0, audio_end(first)), 0, 0)]
    history_a = _audio_given(history / video_rate, audio_rate)
    while chunks[-1].video[1] < video_frames:
        prev = chunks[-1]
        v0 = prev.video[1] - history
        v1 = min(video_frames, v0 + window)
        a0 = prev.audio[1] - history_a
        chunks.append(Chunk(prev.index + 1, (v0, v1), (a0, audio_end(v1)), history, history_a))
    return chunks


def retake_crop(video_frames: int, audio_frames: int, video_rate: float, audio_rate: float,
                span: tuple[int, int], window: int) -> Chunk | None:
    """The window of a long clip that a retake of the latent video frames `span` = [start, end) samples.

    A retake of a clip longer than the window looks at one window centred on the span (clamped to
    the clip), the sequence length the model was trained on; the given frames around the span in
    that window are its context, the rest of the clip is kept as it is. The window's audio starts
    at the latent frame at or before its video start (at most one audio latent frame earlier).

    Returns:
        the window as a `Chunk` (no history), or None when the clip fits one window or the span
        leaves no given frame in it (then the whole clip is sampled in one pass).
    """
    start, end = span
    if video_frames <= window or end - start >= window:
        return None
    v0 = min(max(0, (start + end - window) // 2), video_frames - window)
    v1 = v0 + window
    a0 = math.floor(v0 / video_rate * audio_rate + 1e-9)
    a1 = audio_frames if v1 >= video_frames else min(audio_frames, math.ceil(v1 / video_rate * audio_rate - 1e-9))
    return Chunk(0, (v0, v1), (a0, a1), 0, 0)


@torch.no_grad()
def sample_long(
    model: nn.Module,
    text: TextBatch,
    *,
    video_shape: Sequence[int],
    audio_shape: Sequence[int],
    video_rate: float,
    audio_rate: float,
    chunks: list[Chunk],
    config: SamplerConfig | None = None,
    task: Task = "t2av",
    video_cond: Tensor | None = None,
    audio_cond: Tensor | None = None,
    extend_seconds: float | None = None,
    seed: int | Sequence[int] = 0,
    on_chunk: Callable[[Chunk, Tensor, Tensor], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Generate normalized latents of a long clip, chunk by chunk (see the module's docstring).

    Args:
        model, text, video_rate, audio_rate, config: as for `sample`.
        video_shape, audio_shape: (B, C_v, T_v, H_v, W_v) and (B, C_a, T_a) of the whole clip.
        chunks: the plan (`plan_chunks`) covering T_v and T_a.
        task: the task of chunk 0: "t2av", "i2av" or "extend" (later chunks are "extend").
        video_cond, audio_cond, extend_seconds: chunk 0's conditioning, as for `sample`.
        seed: as for `sample`; chunk k uses seed + k * CHUNK_SEED_STRIDE (per sample).
        on_chunk: called with each chunk and its latents (B, C_v, t_v, H_v, W_v), (B, C_a, t_a) as made.

    Returns:
        (video (B, C_v, T_v, H_v, W_v), audio (B, C_a, T_a)) latents at t = 0.
    """
    # 1. Check inputs.
    if task not in ("t2av", "i2av", "extend"):
        raise ValueError(f"a long clip starts with 't2av', 'i2av' or 'extend'; got task {task!r}.")
    b, _, tv, *_ = video_shape
    if not chunks or chunks[-1].video[1] != tv or chunks[-1].audio[1] != audio_shape[2]:
        raise ValueError(f"the chunks must cover the clip's {tv} video and {audio_shape[2]} audio latent frames.")
    device = next(model.parameters()).device
    z_v = torch.zeros(tuple(video_shape), device=device)  # (B, C_v, T_v, H_v, W_v)
    z_a = torch.zeros(tuple(audio_shape), device=device)  # (B, C_a, T_a)

    def chunk_seed(k: int) -> int | list[int]:
        if isinstance(seed, int):
            return seed + k * CHUNK_SEED_STRIDE
        return [int(s) + k * CHUNK_SEED_STRIDE for s in seed]

    # 2. Chunks in order, each given the clean tail of what came before.
    for c in chunks:
        (v0, v1), (a0, a1) = c.video, c.audio
        shape_v = (b, video_shape[1], v1 - v0, *video_shape[3:])
        shape_a = (b, audio_shape[1], a1 - a0)
        if c.index == 0:
            given: dict = dict(task=task, extend_seconds=extend_seconds,
                               video_cond=None if video_cond is None else video_cond[:, :, :v1],
                               audio_cond=None if audio_cond is None else audio_cond[:, :, :a1])
        else:
            given = dict(task="extend", extend_seconds=c.history_video / video_rate,
                         video_cond=z_v[:, :, v0:v0 + c.history_video], audio_cond=z_a[:, :, a0:a0 + c.history_audio])
        out_v, out_a = sample(model, text, video_shape=shape_v, audio_shape=shape_a, video_rate=video_rate,
                              audio_rate=audio_rate, config=config, seed=chunk_seed(c.index), **given)
        z_v[:, :, v0:v1] = out_v  # its history frames are the given ones, unchanged
        z_a[:, :, a0:a1] = out_a
        if on_chunk is not None:
            on_chunk(c, out_v, out_a)
    return z_v, z_a
