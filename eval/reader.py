"""The media reader of the metrics: `avio`'s readers, with errors as `EvalInputError`.

`eval` reads files only through `avio` (the media and formats layer), never another package of
the project. Video frames and audio samples are both placed by their presentation timestamps on
the container's clock, so audio-video synchrony measured on what these functions return is the
synchrony of the file (AAC priming, late streams and gaps do not shift one against the other).
They read what a file holds (`avio.read_video`; `avio.read_audio(lenient=True)`): generated clips
whose sound ends early are measured as they are, not refused.

Errors are `EvalInputError` (a `ValueError`) naming the file, the problem and what to do.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import avio

__all__ = ["EvalInputError", "read_video", "read_audio"]


class EvalInputError(ValueError):
    """A set, file or option given to the evaluation is not usable; the message says what to do.

    Attributes:
        path: the media file at fault when the error is about one file (a clip the run can skip),
            None when it is about the run as a whole.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


def read_video(
    path: str | Path,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, float]:
    """Decode the video stream (`avio.read_video`, bilinear scaling).

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
    # options are the run's fault (no path); whatever avio refuses after them is the file's
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise EvalInputError(f"fps must be a positive number, got {fps!r}.")
    if size is not None and not _valid_size(size):
        raise EvalInputError(f"frame size must be an int or (height, width) of positive ints, got {size!r}.")
    try:
        return avio.read_video(path, fps=fps, size=size, start=start, duration=duration)
    except avio.MediaError as err:
        raise EvalInputError(str(err), path=path) from err


def _valid_size(size: object) -> bool:
    if isinstance(size, int) and not isinstance(size, bool):
        return size > 0
    return isinstance(size, tuple | list) and len(size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)


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
    try:
        audio, sr = avio.read_audio(p, sample_rate=sample_rate, channels=channels, start=start, duration=duration,
                                    lenient=True)
    except avio.MediaError as err:
        raise EvalInputError(str(err), path=p) from err
    if audio.shape[1] == 0:
        raise EvalInputError(f"{p}: no audio samples from {start:.3f} s on.", path=p)
    return audio.numpy(), int(sr)
