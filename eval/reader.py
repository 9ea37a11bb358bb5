"""Decode frames and audio from media files with PyAV, for metrics.

`eval` reads files itself (it depends on no other package of the project, only on file formats).
Video frames and audio samples are both placed by their presentation timestamps on the
container's clock, so audio-video synchrony measured on what these functions return is the
synchrony of the file (AAC priming, late streams and gaps do not shift one against the other).

Errors are `EvalInputError` (a `ValueError`) naming the file, the problem and what to do.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import av.error
import numpy as np
import torch
import torchaudio.functional as AF

__all__ = ["EvalInputError", "read_video", "read_audio", "media_duration"]


class EvalInputError(ValueError):
    """A set, file or option given to the evaluation is not usable; the message says what to do.

    Attributes:
        path: the media file at fault when the error is about one file (a clip the run can skip),
            None when it is about the run as a whole.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


def _open(path: str | Path) -> av.container.InputContainer:
    p = Path(path)
    if not p.is_file():
        raise EvalInputError(f"{p}: no such file (looked for at {p.absolute()}; paths listed in a manifest are "
                             "taken from the manifest's folder); check the set's folder or manifest paths.", path=p)
    try:
        return av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise EvalInputError(f"{p}: not a readable media file ({err}); re-encode it or remove it from the set.",
                             path=p) from err


def _origin(container: av.container.InputContainer) -> float:
    """The container's start time in seconds: both streams are measured from it."""
    return (container.start_time or 0) / av.time_base


def _as_hw(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise EvalInputError(f"frame size must be positive, got {size}.")
        return size, size
    if isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return int(size[0]), int(size[1])
    raise EvalInputError(f"frame size must be an int or (height, width) of positive ints, got {size!r}.")


def _scale_crop(frame: av.VideoFrame, hw: tuple[int, int] | None) -> np.ndarray:
    """RGB (H, W, 3) uint8, scaled to cover `hw` (keeping the aspect) and centre-cropped."""
    if hw is None:
        return frame.to_ndarray(format="rgb24")
    h, w = hw
    scale = max(h / frame.height, w / frame.width)
    sh, sw = max(h, round(frame.height * scale)), max(w, round(frame.width * scale))
    img = frame.to_ndarray(format="rgb24", width=sw, height=sh, interpolation="BILINEAR")
    top, left = (sh - h) // 2, (sw - w) // 2
    return np.ascontiguousarray(img[top:top + h, left:left + w])


def media_duration(path: str | Path) -> float:
    """Duration of a media file in seconds (the longest stream), 0.0 if the container does not say."""
    with _open(path) as container:
        if container.duration is not None:
            return container.duration / av.time_base
        best = 0.0
        for s in container.streams:
            if s.duration is not None and s.time_base is not None:
                best = max(best, float(s.duration * s.time_base))
        return best


def read_video(
    path: str | Path,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, float]:
    """Decode the video stream.

    Args:
        path: media file.
        fps: resample to this rate by nearest frame (None: keep every decoded frame).
        size: None (native), an int (square crop of that side) or (height, width); frames are
            scaled to cover the size, keeping the aspect, and centre-cropped.
        start: seconds from the container's start.
        duration: seconds to read (None: to the end).

    Returns:
        (frames (T, H, W, 3) uint8 RGB, fps of the returned frames).
    """
    p = Path(path)
    hw = _as_hw(size)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise EvalInputError(f"fps must be a positive number, got {fps!r}.")
    with _open(p) as container:
        if not container.streams.video:
            raise EvalInputError(f"{p}: has no video stream; video metrics need mp4 files with video.", path=p)
        stream = container.streams.video[0]
        native = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        origin = _origin(container)
        end = None if duration is None else start + duration
        times: list[float] = []
        frames: list[np.ndarray] = []
        try:
            for i, frame in enumerate(container.decode(stream)):
                t = float(frame.time) - origin if frame.time is not None else i / native
                if t < start - 0.5 / native:
                    continue
                if end is not None and t >= end - 1e-6:
                    break
                times.append(t)
                frames.append(_scale_crop(frame, hw))
        except av.error.FFmpegError as err:
            raise EvalInputError(f"{p}: the video stream cannot be decoded ({err}); re-encode the file.",
                                 path=p) from err
    if not frames:
        raise EvalInputError(f"{p}: no video frames between {start:.3f} s and "
                             f"{end if end is not None else 'the end'}.", path=p)
    stacked = np.stack(frames)  # (T0, H, W, 3)
    if fps is None:
        return stacked, native
    # Nearest frame for each target instant (as FFmpeg's fps filter does); the last frame is held
    # for one native frame period.
    span = (times[-1] - start) + 1.0 / native if end is None else end - start
    n_out = max(1, math.floor(span * fps + 1e-6))
    targets = start + np.arange(n_out) / fps
    idx = np.searchsorted(np.asarray(times), targets, side="left")
    idx = np.clip(idx, 0, len(times) - 1)
    prev = np.clip(idx - 1, 0, len(times) - 1)
    t_arr = np.asarray(times)
    nearest = np.where(np.abs(t_arr[prev] - targets) <= np.abs(t_arr[idx] - targets), prev, idx)
    return stacked[nearest], float(fps)


def read_audio(
    path: str | Path,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode the audio stream, placing every decoded frame at its timestamp.

    Args:
        path: media file (mp4, wav, mp3, ...).
        sample_rate: resample to this rate (torchaudio's band-limited resampler; None keeps it).
        channels: 1 mixes down to mono, 2 duplicates mono to stereo; None keeps the channels.
        start: seconds from the container's start.
        duration: seconds to read (None: to the end); a shorter stream is padded with silence.

    Returns:
        (audio (C, S) float32, sample_rate).
    """
    p = Path(path)
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0):
        raise EvalInputError(f"sample_rate must be a positive int, got {sample_rate!r}.")
    if channels is not None and channels not in (1, 2):
        raise EvalInputError(f"channels must be 1, 2 or None, got {channels!r}.")
    with _open(p) as container:
        if not container.streams.audio:
            raise EvalInputError(
                f"{p}: has no audio stream; audio metrics need clips with sound (generate with audio, "
                "or leave audio metrics out).", path=p,
            )
        stream = container.streams.audio[0]
        sr = stream.codec_context.sample_rate
        origin = _origin(container)
        # libswresample only converts the sample format here (rate unchanged, so no filter delay);
        # the rate is changed below with torchaudio, whose resampler has zero phase.
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=sr)
        chunks: list[tuple[int, np.ndarray]] = []
        cursor = 0
        end_pos = None if duration is None else round(duration * sr)
        try:
            for frame in container.decode(stream):
                for conv in resampler.resample(frame):
                    data = conv.to_ndarray().astype(np.float32, copy=False)  # (C, n)
                    pos = round((float(conv.time) - origin - start) * sr) if conv.time is not None else cursor
                    cursor = pos + data.shape[1]
                    if cursor > 0:
                        chunks.append((pos, data))
                if end_pos is not None and cursor >= end_pos:
                    break
        except av.error.FFmpegError as err:
            raise EvalInputError(f"{p}: the audio stream cannot be decoded ({err}); re-encode the file.",
                                 path=p) from err
    n_ch = chunks[0][1].shape[0] if chunks else max(1, stream.codec_context.channels)
    total = end_pos if end_pos is not None else max((q + d.shape[1] for q, d in chunks), default=0)
    if total <= 0:
        raise EvalInputError(f"{p}: no audio samples from {start:.3f} s on.", path=p)
    out = np.zeros((n_ch, total), dtype=np.float32)
    for pos, data in chunks:
        lo, hi = max(pos, 0), min(pos + data.shape[1], total)
        if hi > lo:
            out[:, lo:hi] = data[:, lo - pos:hi - pos]
    if channels == 1 and out.shape[0] > 1:
        out = out.mean(axis=0, keepdims=True)
    elif channels == 2 and out.shape[0] == 1:
        out = np.repeat(out, 2, axis=0)
    elif channels is not None and out.shape[0] != channels:
        raise EvalInputError(f"{p}: has {out.shape[0]} audio channels; ask for 1 (mono mix) or keep them.", path=p)
    if sample_rate is not None and sample_rate != sr:
        out = AF.resample(torch.from_numpy(out), sr, sample_rate).numpy()
        sr = sample_rate
    return out, int(sr)
