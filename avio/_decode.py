"""Decoding internals of `avio.media`: opening, timestamp-placed frame and audio collection, checks.

Frames and audio samples are placed by their presentation timestamps on one clock (seconds from
the container's start), in a single demuxing pass, so audio and video stay aligned even when a
stream starts late, has gaps, or carries encoder priming.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import av
import av.error
import numpy as np

from avio.errors import MediaError

if TYPE_CHECKING:
    import torch

# A request may overrun the file's end by this much before it counts as "shorter than asked":
# containers round durations and AAC pads the last frame, so the last few ms are not reliable.
_END_TOLERANCE_S = 0.02
# Read to the end (no duration asked), the audio may cover this much less of the clip than its
# video does before the clip counts as having partial audio: audio and video tracks of ordinary
# files end up to a few frames apart; a longer gap would be filled with invented silence.
_AUDIO_GAP_TOLERANCE_S = 0.1
# Seek this far before the requested start so that audio packets interleaved just before the
# video keyframe are decoded too (seeking lands on a video keyframe, not on an audio packet).
_SEEK_MARGIN_S = 1.0
# libswscale's own threads stay off. With FFmpeg 8.1.3 (PyAV 18.1.1) a process that has scaled a
# frame with the default (automatic) threads and then forks, as DataLoader workers do, hangs for
# ever in the child's first scale. Frames here are small and the loaders parallelise over clips.
SWSCALE_THREADS = 1


class _ShortAudio(Exception):
    """The audio stream ends before the requested window does (internal; becomes a MediaError)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


@contextmanager
def _decoding(path: Path, start: float, asked: float) -> Iterator[None]:
    """Turns what decoding `asked` seconds from `start` raises into a MediaError that says what to do:
    an audio stream that ends early (`_ShortAudio`), or FFmpeg failing on a corrupt file."""
    try:
        yield
    except _ShortAudio as short:
        raise MediaError(f"{path}: the clip is shorter than asked: its audio ends {short.seconds:.3f} s "
                         f"after {start:.3f} s but {asked:.3f} s were asked; ask for a shorter duration "
                         "or drop the file.") from None
    except av.error.FFmpegError as err:
        raise MediaError(f"{path}: decoding failed ({err.strerror or err}); the file is corrupt or "
                         "truncated. Re-encode or remove it.") from err


def _check_positive(path: Path, **options: float | None) -> None:
    """Each option given (not None) must be > 0."""
    for name, value in options.items():
        if value is not None and value <= 0:
            raise MediaError(f"{path}: {name} must be > 0; got {value}.")


def _open(path: str | Path) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        where = "" if p.is_absolute() else f" (a relative path, looked for from the current folder: {p.absolute()})"
        raise MediaError(f"{p}: no such file{where}; check the path.")
    if p.is_dir():
        raise MediaError(f"{p}: is a folder, not a media file; pass a file inside it.")
    try:
        return av.open(str(p), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise MediaError(
            f"{p}: cannot be opened as media ({getattr(err, 'strerror', None) or err}); the file is corrupt, truncated "
            "or not audio/video. Re-encode it (e.g. `ffmpeg -i in -c:v libx264 -c:a aac out.mp4`) or "
            "remove it from the dataset.", path=p,
        ) from err


def _decodable(stream: av.stream.Stream) -> bool:
    # An unknown codec gives a stream without a codec context: the container is fine, FFmpeg
    # simply has no decoder for it.
    return stream.codec_context is not None


def _check_stream(path: Path, stream: av.stream.Stream, kind: str) -> None:
    if not _decodable(stream):
        raise MediaError(
            f"{path}: the {kind} stream uses a codec this FFmpeg build cannot decode; re-encode it "
            "(H.264/AAC in mp4 always works) or remove the file."
        )


def _container_start(container: av.container.InputContainer) -> float:
    return (container.start_time or 0) / av.time_base


def _stream_duration(stream: av.stream.Stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _duration(container: av.container.InputContainer) -> float:
    if container.duration is not None:
        return container.duration / av.time_base
    durations = [d for s in container.streams if (d := _stream_duration(s)) is not None]
    return max(durations, default=0.0)


def _as_hw(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise MediaError(f"size must be a positive int or (height, width); got {size!r}.")
    return int(size[0]), int(size[1])


def _scale_crop(frame: av.VideoFrame, hw: tuple[int, int] | None, interpolation: str = "AREA") -> np.ndarray:
    """Frame -> (H, W, 3) uint8: scale to cover `hw` keeping the aspect ratio, then centre-crop.

    `interpolation` is libswscale's filter: AREA for training data, BILINEAR where a metric's
    preprocessing is specified that way (I3D, CLIP).
    """
    if hw is None or (frame.height, frame.width) == hw:
        return frame.reformat(format="rgb24", threads=SWSCALE_THREADS).to_ndarray()
    h, w = hw
    scale = max(h / frame.height, w / frame.width)
    sh, sw = max(h, round(frame.height * scale)), max(w, round(frame.width * scale))
    img = frame.reformat(width=sw, height=sh, format="rgb24", interpolation=interpolation,
                         threads=SWSCALE_THREADS).to_ndarray()
    top, left = (sh - h) // 2, (sw - w) // 2
    return img[top : top + h, left : left + w]


class _FramePicker:
    """For each target time, the decoded frame whose timestamp is nearest (ties to the earlier).

    Fed one decoded frame at a time, so only two frames are held at once. This mirrors FFmpeg's
    `fps` filter (round to nearest); written here because the filter graph offers no way to also
    scale-to-cover and crop, or to share one demuxing pass with the audio.
    """

    def __init__(self, targets: np.ndarray, hw: tuple[int, int] | None, rate: float, origin: float) -> None:
        self.targets, self.hw, self.rate, self.origin = targets, hw, rate, origin
        self.out: list[np.ndarray] = []
        self.prev: tuple[float, av.VideoFrame] | None = None
        self.count = 0

    @property
    def done(self) -> bool:
        return len(self.out) == len(self.targets)

    def push(self, frame: av.VideoFrame) -> None:
        # no timestamps at all: count frames
        t = float(frame.time) - self.origin if frame.time is not None else self.count / self.rate
        self.count += 1
        while not self.done:
            target = self.targets[len(self.out)]
            if t <= target:
                break  # this frame, or a later one, is nearer to the target than the previous one
            prev = self.prev
            best = frame if prev is None or abs(t - target) < abs(prev[0] - target) else prev[1]
            self.out.append(_scale_crop(best, self.hw))
        self.prev = (t, frame)

    def finish(self, hold: float) -> list[np.ndarray]:
        """The frames; past the last decoded frame, it stays on screen for `hold` seconds."""
        if self.prev is not None:
            t, frame = self.prev
            self.out.extend(_scale_crop(frame, self.hw) for x in self.targets[len(self.out) :] if x - t <= hold)
        return self.out


class _FrameCollector:
    """Every decoded frame whose timestamp lies in [start - half a frame, end), scaled and cropped."""

    def __init__(self, hw: tuple[int, int] | None, rate: float, origin: float, start: float, end: float | None,
                 interpolation: str) -> None:
        self.hw, self.rate, self.origin, self.interpolation = hw, rate, origin, interpolation
        self.start, self.end = start, end
        self.times: list[float] = []
        self.frames: list[np.ndarray] = []
        self.count = 0
        self.done = False

    def push(self, frame: av.VideoFrame) -> None:
        # no timestamps at all: count frames
        t = float(frame.time) - self.origin if frame.time is not None else self.count / self.rate
        self.count += 1
        if t < self.start - 0.5 / self.rate:
            return
        if self.end is not None and t >= self.end - 1e-6:
            self.done = True
            return
        self.times.append(t)
        self.frames.append(_scale_crop(frame, self.hw, self.interpolation))


class _AudioCollector:
    """Places decoded audio of [start, end) into a (C, S) float32 buffer at the stream's own rate.

    Each decoded frame goes where its timestamp says, so a late first packet, a gap or the
    encoder's priming leaves silence where it belongs instead of shifting the rest.
    """

    def __init__(self, stream: av.audio.stream.AudioStream, origin: float, start: float, end: float | None) -> None:
        self.sr = stream.codec_context.sample_rate
        self.channels = stream.codec_context.channels
        # libswresample converts any sample format / layout to planar float; the rate is kept here
        # and changed later with torchaudio, as the project does everywhere.
        self.resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=self.sr)
        self.origin, self.start = origin, start
        self.end_pos = None if end is None else round((end - start) * self.sr)
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.cursor = 0
        self.covered = 0.0  # seconds of the window that decoded audio covers (set by `finish`)

    @property
    def done(self) -> bool:
        return self.end_pos is not None and self.cursor >= self.end_pos

    def push(self, frame: av.AudioFrame) -> None:
        for conv in self.resampler.resample(frame):
            data = conv.to_ndarray().astype(np.float32, copy=False)  # (C, n)
            pos = round((conv.time - self.origin - self.start) * self.sr) if conv.time is not None else self.cursor
            self.cursor = pos + data.shape[1]
            if self.cursor > 0:
                self.chunks.append((pos, data))

    def finish(self, pad: bool = False) -> tuple[np.ndarray, int]:
        """The (C, S) buffer and its rate; a stream ending before the window does raises `_ShortAudio`,
        or with `pad` leaves silence there."""
        covered = max((p + d.shape[1] for p, d in self.chunks), default=0)
        total = covered if self.end_pos is None else self.end_pos
        if not pad and self.end_pos is not None and covered < self.end_pos - _END_TOLERANCE_S * self.sr:
            raise _ShortAudio(covered / self.sr)
        out = np.zeros((self.channels, max(total, 0)), dtype=np.float32)
        have = np.zeros(max(total, 0), dtype=bool)  # samples some decoded frame covers (gaps stay False)
        for pos, data in self.chunks:
            lo, hi = max(pos, 0), min(pos + data.shape[1], total)
            if hi > lo:
                out[:, lo:hi] = data[:, lo - pos : hi - pos]
                have[lo:hi] = True
        self.covered = float(have.sum()) / self.sr
        return out, self.sr


def _decode(
    container: av.container.InputContainer,
    origin: float,
    start: float,
    picker: tuple[av.video.stream.VideoStream, _FramePicker | _FrameCollector] | None,
    collector: tuple[av.audio.stream.AudioStream, _AudioCollector] | None,
) -> None:
    """One demuxing pass feeding both streams' decoders, stopping once both have what they need.

    One pass, not one per stream: seeking back to decode the second stream would restart the
    AAC decoder without its pre-roll, which zeroes the first ~20 ms of audio.
    """
    if start > _SEEK_MARGIN_S:
        container.seek(int((origin + start - _SEEK_MARGIN_S) * av.time_base), backward=True)
    streams = [x[0] for x in (picker, collector) if x is not None]
    for packet in container.demux(*streams):
        is_video = picker is not None and packet.stream.index == picker[0].index
        sink = picker[1] if picker is not None and is_video else collector[1] if collector is not None else None
        if sink is None or sink.done:
            continue  # that stream has what it needs: skip decoding its packets
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame) and picker is not None:
                picker[1].push(frame)
            elif isinstance(frame, av.AudioFrame) and collector is not None:
                collector[1].push(frame)
        if all(x[1].done for x in (picker, collector) if x is not None):
            break


def _convert_audio(
    audio: np.ndarray, sr: int, sample_rate: int | None, channels: int | None, *, path: Path | None = None,
    clamp: bool = True,
) -> tuple[torch.Tensor, int]:
    """(C, S) float audio of `path` to `channels` (mono mix, or mono repeated) at `sample_rate`,
    clamped to [-1, 1] unless `clamp` is False."""
    import torch  # the readers return tensors; probing and writing never need torch
    import torchaudio.functional as AF

    wav = torch.from_numpy(np.ascontiguousarray(audio))  # (C, S)
    if channels is not None and channels != wav.shape[0]:
        if channels == 1:
            wav = wav.mean(dim=0, keepdim=True)
        elif wav.shape[0] == 1:
            wav = wav.expand(channels, -1).contiguous()
        else:
            raise MediaError(
                f"{path if path is not None else 'audio'}: cannot turn {wav.shape[0]} audio channels into "
                f"{channels}; ask for 1 (mono mix) or {wav.shape[0]}, or downmix the file first "
                f"(e.g. `ffmpeg -i IN -ac {channels} OUT`)."
            )
    if sample_rate is not None and sample_rate != sr:
        wav = AF.resample(wav, sr, sample_rate)
        sr = sample_rate
    return (wav.clamp_(-1.0, 1.0) if clamp else wav), sr


def _check_window(path: Path, start: float, duration: float | None, file_duration: float) -> None:
    if start < 0:
        raise MediaError(f"{path}: start must be >= 0 seconds; got {start}.")
    if duration is not None and duration <= 0:
        raise MediaError(f"{path}: duration must be > 0 seconds; got {duration}.")
    if file_duration > 0:
        if start >= file_duration:
            raise MediaError(
                f"{path}: start {start:.3f} s is past the end of the file ({file_duration:.3f} s long); "
                "ask for an earlier start."
            )
        if duration is not None and start + duration > file_duration + _END_TOLERANCE_S:
            raise MediaError(
                f"{path}: the clip is shorter than asked: {duration:.3f} s from {start:.3f} s were asked "
                f"but the file is {file_duration:.3f} s long; ask for a shorter duration or drop the file."
            )
