"""Media I/O: probe, read and write audio-video files with PyAV.

Every reader places samples and frames by their presentation timestamps on one clock (seconds
from the container's start), so audio and video stay aligned even when a stream starts late, has
gaps, or carries encoder priming (AAC's 1024 samples, which the mp4 edit list removes). Video is
resampled in time by nearest frame, scaled with libswscale (through PyAV) and centre-cropped; audio
is converted to planar float by libswresample and resampled with `torchaudio.functional.resample`
(the decoding internals are in `avio._decode`).

The readers return torch tensors and import torch when first called; probing and writing (which
also take numpy arrays) never import it, so the rating app describes files without torch.

Errors are `MediaError` (a `ValueError`) whose message names the file, the problem and what to do.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.error
import numpy as np

from avio._decode import (
    _AUDIO_GAP_TOLERANCE_S,
    _END_TOLERANCE_S,
    _as_hw,
    _AudioCollector,
    _check_positive,
    _check_stream,
    _check_window,
    _container_start,
    _convert_audio,
    _decodable,
    _decode,
    _decoding,
    _duration,
    _FrameCollector,
    _FramePicker,
    _open,
    _stream_duration,
)
from avio.errors import MediaError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Clip",
    "MediaError",
    "MediaInfo",
    "probe",
    "read_audio",
    "read_clip",
    "read_video",
    "write_audio",
    "write_clip",
]


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` finds in a media file.

    Attributes:
        path: the file.
        duration: seconds, the longest stream (0.0 when the container does not say).
        has_video, has_audio: whether a decodable stream of that kind is present.
        fps: average video frame rate (None without video).
        width, height: video frame size in pixels (None without video).
        num_frames: video frames (counted from the header or estimated from duration and fps).
        video_codec, audio_codec: FFmpeg codec names (None when absent).
        sample_rate, audio_channels: audio format (None without audio).
    """

    path: Path
    duration: float
    has_video: bool
    has_audio: bool
    fps: float | None
    width: int | None
    height: int | None
    num_frames: int | None
    video_codec: str | None
    audio_codec: str | None
    sample_rate: int | None
    audio_channels: int | None

    def __str__(self) -> str:
        parts = [f"{self.path}: {self.duration:.3f} s"]
        if self.has_video:
            parts.append(
                f"video {self.video_codec} {self.width}x{self.height} @ {self.fps:.3f} fps, "
                f"{self.num_frames} frames"
            )
        else:
            parts.append("no video")
        if self.has_audio:
            parts.append(f"audio {self.audio_codec} {self.sample_rate} Hz x {self.audio_channels} ch")
        else:
            parts.append("no audio")
        return " | ".join(parts)


@dataclass
class Clip:
    """A decoded piece of a media file.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        audio: (C, S) float32 in [-1, 1], or None when the file has no audio and none was required.
        fps: frame rate of `frames`.
        sample_rate: sample rate of `audio` (None without audio).
    """

    frames: torch.Tensor
    audio: torch.Tensor | None
    fps: float
    sample_rate: int | None

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return self.frames.shape[0] / self.fps


# ----------------------------------------------------------------------------------------------
# public API


def probe(path: str | Path) -> MediaInfo:
    """Describe a media file without decoding it.

    Raises:
        MediaError: the file is missing, corrupt, or not a media file.
    """
    p = Path(path)
    with _open(p) as container:
        duration = _duration(container)
        vs = next((s for s in container.streams.video if _decodable(s)), None)
        aus = next((s for s in container.streams.audio if _decodable(s)), None)
        fps = width = height = num_frames = None
        if vs is not None:
            rate = vs.average_rate or vs.guessed_rate
            fps = float(rate) if rate else None
            width, height = vs.codec_context.width, vs.codec_context.height
            num_frames = vs.frames or (round(duration * fps) if fps else None)
        return MediaInfo(
            path=p,
            duration=duration,
            has_video=vs is not None,
            has_audio=aus is not None,
            fps=fps,
            width=width,
            height=height,
            num_frames=num_frames,
            video_codec=vs.codec_context.name if vs is not None else None,
            audio_codec=aus.codec_context.name if aus is not None else None,
            sample_rate=aus.codec_context.sample_rate if aus is not None else None,
            audio_channels=aus.codec_context.channels if aus is not None else None,
        )


def read_clip(
    path: str | Path,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    start: float = 0.0,
    duration: float | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    require_audio: bool = True,
    with_audio: bool = True,
) -> Clip:
    """Decode video frames and audio of `[start, start + duration)` seconds of a file.

    Args:
        path: any container FFmpeg opens (mp4, mkv, webm, mov, ...).
        fps: output frame rate (nearest-frame resampling); None keeps the file's average rate.
        size: output (H, W), or an int for a square; the frame is scaled to cover it, keeping its
            aspect ratio, and centre-cropped. None keeps the file's size.
        start: seconds from the file's start.
        duration: seconds to read; None reads to the end. Exactly `round(duration * fps)` frames
            and `round(duration * sample_rate)` samples come back.
        sample_rate: output audio rate; None keeps the file's rate.
        channels: output audio channels (1 mixes down; a mono file can be repeated); None keeps them.
        require_audio: raise when the file has no audio (else `Clip.audio` is None).
        with_audio: False reads the frames alone (`Clip.audio` is None), whatever the audio track
            holds: for callers that replace the sound (video-to-audio).

    Returns:
        Clip with frames (T, H, W, 3) uint8 and audio (C, S) float32 in [-1, 1].

    Raises:
        MediaError: missing/corrupt file, no video, no audio when required, an undecodable codec,
            or a file shorter than `start + duration`.
    """
    import torch

    p = Path(path)
    hw = _as_hw(size)
    _check_positive(p, fps=fps, sample_rate=sample_rate, channels=channels)
    with _open(p) as container:
        if not container.streams.video:
            raise MediaError(f"{p}: has no video stream; an audio-only file cannot be read as a clip "
                             "(use read_audio) — remove it from the video dataset.")
        vs = container.streams.video[0]
        _check_stream(p, vs, "video")
        aus = container.streams.audio[0] if container.streams.audio and with_audio else None
        if aus is None and require_audio and with_audio:
            raise MediaError(f"{p}: has no audio stream but audio is required; remove the file or "
                             "pass require_audio=False.")
        if aus is not None:
            _check_stream(p, aus, "audio")
        file_duration = _duration(container)
        _check_window(p, start, duration, file_duration)
        out_fps = fps if fps is not None else float(vs.average_rate or vs.guessed_rate or 0)
        if out_fps <= 0:
            raise MediaError(f"{p}: the video has no frame rate in its header; pass fps explicitly.")
        span = duration if duration is not None else file_duration - start
        n_frames = round(span * out_fps) if duration is not None else math.floor(span * out_fps + 1e-6)
        targets = start + np.arange(max(n_frames, 0)) / out_fps
        origin = _container_start(container)
        with _decoding(p, start, span):
            src_rate = float(vs.average_rate or vs.guessed_rate or out_fps)
            picker = _FramePicker(targets, hw, src_rate, origin)
            collector = None
            if aus is not None:
                collector = _AudioCollector(aus, origin, start, None if duration is None else start + duration)
            _decode(container, origin, start, (vs, picker), (aus, collector) if aus and collector else None)
            frames = picker.finish(hold=1.0 / src_rate + _END_TOLERANCE_S)
            audio_t: torch.Tensor | None = None
            sr: int | None = None
            if collector is not None:
                wav, src_sr = collector.finish()
                video_span = len(targets) / out_fps
                if duration is None and collector.covered < video_span - _AUDIO_GAP_TOLERANCE_S:
                    raise MediaError(
                        f"{p}: the audio covers only {collector.covered:.3f} s of the {video_span:.3f} s of video "
                        f"from {start:.3f} s; the rest would be silence. Trim the clip to its audio (an 'end' "
                        "in the manifest), re-encode it with its full sound, or drop the file.")
                audio_t, sr = _convert_audio(wav, src_sr, sample_rate, channels, path=p)
                # exactly as long as the frames: resampling may round one sample either way, and
                # without a duration the audio track may end a little before or after the video
                want = round(len(targets) / out_fps * sr)
                audio_t = torch.nn.functional.pad(audio_t, (0, max(want - audio_t.shape[1], 0)))[:, :want]
    if len(frames) < len(targets) or (len(frames) == 0 and len(targets) > 0):
        raise MediaError(f"{p}: decoded {len(frames)} of {len(targets)} frames; the file is truncated "
                         "or its video stream is empty. Re-encode or remove it.")
    if len(targets) == 0:
        raise MediaError(f"{p}: no frames in the requested window (start {start} s, duration {duration}).")
    video = torch.from_numpy(np.stack(frames))  # (T, H, W, 3)
    return Clip(frames=video, audio=audio_t, fps=float(out_fps), sample_rate=sr)


def read_audio(
    path: str | Path,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    start: float = 0.0,
    duration: float | None = None,
    lenient: bool = False,
) -> tuple[torch.Tensor, int]:
    """Decode the audio of any file FFmpeg opens (wav, mp3, flac, mp4, ...).

    Args:
        lenient: read what the file holds, as the metrics do: no check that the window lies inside
            the file, a sound that ends early is padded with silence, values are not clipped, and
            without a duration the audio runs to its last decoded sample (not the stream's stated
            end, before AAC's padding) and the length is not trimmed after resampling.

    Returns:
        (audio (C, S) float32 in [-1, 1], sample rate). With `duration` (and not `lenient`),
        exactly `round(duration * sample_rate)` samples.

    Raises:
        MediaError: missing/corrupt file, no audio stream, undecodable codec, or shorter than asked.
    """
    import torch

    p = Path(path)
    _check_positive(p, sample_rate=sample_rate, channels=channels)
    with _open(p) as container:
        if not container.streams.audio:
            raise MediaError(f"{p}: has no audio stream; pass a file with sound.")
        aus = container.streams.audio[0]
        _check_stream(p, aus, "audio")
        if not lenient:
            _check_window(p, start, duration, _duration(container))
        origin = _container_start(container)
        # without a duration, read to the stream's stated end: AAC pads its last frame with silence
        stream_end = None if lenient else _stream_duration(aus)
        end = start + duration if duration is not None else stream_end
        with _decoding(p, start, (end or 0.0) - start):
            collector = _AudioCollector(aus, origin, start, end)
            _decode(container, origin, start, None, (aus, collector))
            wav, src_sr = collector.finish(pad=lenient)
    audio, sr = _convert_audio(wav, src_sr, sample_rate, channels, path=p, clamp=not lenient)
    if duration is not None and not lenient:
        want = round(duration * sr)
        audio = torch.nn.functional.pad(audio, (0, max(want - audio.shape[1], 0)))[:, :want]
    return audio, sr


def read_video(
    path: str | Path,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    start: float = 0.0,
    duration: float | None = None,
    interpolation: str = "BILINEAR",
) -> tuple[np.ndarray, float]:
    """Every decoded frame of a window, as numpy, for measuring (no torch, nothing required of the audio).

    Unlike `read_clip`, whose frame count follows the asked duration exactly, this keeps what the
    video stream holds: without `fps` every decoded frame at the stream's rate; with `fps` the
    nearest decoded frame to each instant `start + k / fps` (ties to the earlier; the last frame
    is held to the end of the window).

    Args:
        path: media file with a video stream.
        fps: resample to this rate by nearest frame (None: keep every decoded frame).
        size: None (native), an int (square) or (height, width); frames are scaled to cover the
            size, keeping the aspect, and centre-cropped.
        start: seconds from the container's start.
        duration: seconds to read (None: to the end).
        interpolation: libswscale's scaling filter (BILINEAR as the metrics specify, or AREA).

    Returns:
        (frames (T, H, W, 3) uint8 RGB, fps of the returned frames).

    Raises:
        MediaError: missing/corrupt file, no video stream, an undecodable stream, or no frames in
            the window.
    """
    p = Path(path)
    hw = _as_hw(size)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise MediaError(f"{p}: fps must be a positive number; got {fps!r}.")
    with _open(p) as container:
        if not container.streams.video:
            raise MediaError(f"{p}: has no video stream; video metrics need files with video.", path=p)
        vs = container.streams.video[0]
        _check_stream(p, vs, "video")
        native = float(vs.average_rate or vs.guessed_rate or 0) or 25.0
        origin = _container_start(container)
        end = None if duration is None else start + duration
        collector = _FrameCollector(hw, native, origin, start, end, interpolation)
        try:
            _decode(container, origin, start, (vs, collector), None)
        except av.error.FFmpegError as err:
            raise MediaError(f"{p}: the video stream cannot be decoded ({err.strerror or err}); re-encode the "
                             "file.", path=p) from err
    times, frames = collector.times, collector.frames
    if not frames:
        raise MediaError(f"{p}: no video frames between {start:.3f} s and "
                         f"{end if end is not None else 'the end'}.", path=p)
    stacked = np.stack(frames)  # (T0, H, W, 3)
    if fps is None:
        return stacked, native
    span = (times[-1] - start) + 1.0 / native if end is None else end - start
    targets = start + np.arange(max(1, math.floor(span * fps + 1e-6))) / fps
    t_arr = np.asarray(times)
    idx = np.clip(np.searchsorted(t_arr, targets, side="left"), 0, len(times) - 1)
    prev = np.clip(idx - 1, 0, len(times) - 1)
    nearest = np.where(np.abs(t_arr[prev] - targets) <= np.abs(t_arr[idx] - targets), prev, idx)
    return stacked[nearest], float(fps)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    torch = sys.modules.get("torch")  # a tensor means torch is loaded already; never import it here
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    raise MediaError(f"{name} must be a torch.Tensor or numpy.ndarray; got {type(x).__name__}.")


_LAYOUTS = {1: "mono", 2: "stereo"}


def _check_audio_array(path: Path, audio: torch.Tensor | np.ndarray, sample_rate: int | None) -> np.ndarray:
    a = _to_numpy(audio, "audio")
    if a.ndim != 2 or a.shape[0] not in _LAYOUTS:
        raise MediaError(f"{path}: audio must have shape (channels, samples) with 1 or 2 channels; "
                         f"got {tuple(a.shape)}.")
    if sample_rate is None or sample_rate <= 0:
        raise MediaError(f"{path}: pass a positive sample_rate with the audio; got {sample_rate}.")
    if not np.issubdtype(a.dtype, np.floating):
        raise MediaError(f"{path}: audio must be float in [-1, 1]; got dtype {a.dtype}.")
    if not np.isfinite(a).all():
        raise MediaError(f"{path}: audio contains NaN or infinite values.")
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0), dtype=np.float32)


def write_clip(
    path: str | Path,
    frames: torch.Tensor | np.ndarray,
    fps: float,
    audio: torch.Tensor | np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    crf: int = 18,
    preset: str = "veryfast",
    audio_bitrate: int = 128_000,
) -> Path:
    """Write an mp4 that browsers play: H.264 (yuv420p) video, AAC audio, moov atom first.

    Args:
        path: output file (its folder is created).
        frames: (T, H, W, 3) uint8 RGB; H and W must be even (yuv420p halves chroma).
        fps: frame rate; frame k is shown from k / fps seconds.
        audio: (C, S) float in [-1, 1], C in {1, 2}, starting at 0 s like the frames; or None.
        sample_rate: rate of `audio` (required with audio).
        crf: x264 quality (0 lossless .. 51 worst; 18 is visually lossless).
        preset: x264 speed preset.
        audio_bitrate: AAC bit rate in bits per second.

    Returns:
        The path written.
    """
    p = Path(path)
    video = _to_numpy(frames, "frames")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise MediaError(f"{p}: frames must have shape (T, H, W, 3); got {tuple(video.shape)}.")
    if video.dtype != np.uint8:
        raise MediaError(f"{p}: frames must be uint8 in [0, 255]; got {video.dtype}. Convert floats in "
                         "[-1, 1] with ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).")
    t, h, w, _ = video.shape
    if t == 0:
        raise MediaError(f"{p}: no frames to write.")
    if h % 2 or w % 2:
        raise MediaError(f"{p}: H.264 in yuv420p needs an even width and height; got {w}x{h}. "
                         "Crop or pad one pixel.")
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise MediaError(f"{p}: fps must be a positive number; got {fps}.")
    wav = _check_audio_array(p, audio, sample_rate) if audio is not None else None
    p.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(str(p), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            vs = out.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            # Same frames must give the same bytes (the dataset is reproducible from its seeds):
            # - one x264 thread (clips are written many at a time by worker processes anyway);
            # - no B-frames: x264's adaptive B-frame decision was measured to give different
            #   output for the same frames depending on what the process encoded before. Without
            #   B-frames files are ~3% larger, and decoding needs no frame reordering.
            vs.codec_context.options = {"crf": str(crf), "preset": preset, "threads": "1", "bf": "0"}
            vs.codec_context.thread_count = 1
            aus = None
            if wav is not None:
                aus = out.add_stream("aac", rate=sample_rate)
                aus.layout = _LAYOUTS[wav.shape[0]]
                aus.bit_rate = audio_bitrate
                # FFmpeg's "fast" AAC coder is 3x faster than the default two-loop search and, on
                # these signals at 128 kb/s, measured ~5 dB better SNR (55 vs 50 dB)
                aus.codec_context.options = {"aac_coder": "fast"}
            for i in range(t):
                frame = av.VideoFrame.from_ndarray(video[i], format="rgb24")
                frame.pts = i
                out.mux(vs.encode(frame))
            out.mux(vs.encode(None))
            if aus is not None and wav is not None:
                # one frame holding all samples: the encoder re-frames it into 1024-sample packets
                aframe = av.AudioFrame.from_ndarray(wav, format="fltp", layout=_LAYOUTS[wav.shape[0]])
                aframe.sample_rate = int(sample_rate or 0)  # validated with the audio above
                aframe.pts = 0
                out.mux(aus.encode(aframe))
                out.mux(aus.encode(None))
    except av.error.FFmpegError as err:
        raise MediaError(f"{p}: writing failed ({err.strerror or err}).") from err
    return p


def write_audio(path: str | Path, audio: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write (C, S) float audio in [-1, 1] (C in {1, 2}) as 16-bit PCM wav; returns the path."""
    p = Path(path)
    wav = _check_audio_array(p, audio, sample_rate)
    pcm = np.round(wav * 32767.0).astype(np.int16)  # (C, S)
    p.parent.mkdir(parents=True, exist_ok=True)
    layout = _LAYOUTS[wav.shape[0]]
    try:
        with av.open(str(p), mode="w", format="wav") as out:
            stream = out.add_stream("pcm_s16le", rate=sample_rate)
            stream.layout = layout
            # packed s16 wants (1, S * C) interleaved samples
            frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = 0
            out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    except av.error.FFmpegError as err:
        raise MediaError(f"{p}: writing failed ({err.strerror or err}).") from err
    return p
