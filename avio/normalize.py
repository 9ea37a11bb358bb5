"""The one fixed re-encoding of a clip: what every clip shown to raters is made of.

`normalize_clip` writes every clip, whatever its source (a browser-playable mp4, a .mov or .mkv, a
gold pair's altered copy), with one fixed set of options: the same x264 settings, AAC at one sample
rate, layout and bit rate, mp4 muxed bit-exact (no "encoder" tag, no creation time), no metadata
carried over from the source, and the x264 "encoder settings" SEI message removed from the H.264
stream. So the bytes of two normalised files tell neither the system, nor the file's origin, nor
whether a pair is gold. It streams frame by frame (unlike `read_clip`, which holds a whole clip in
memory), so long or large clips encode with constant memory.

`browser_playable` says whether browsers play a file as it is.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import av.bitstream
import av.error
import numpy as np

from avio._decode import SWSCALE_THREADS
from avio.errors import MediaError
from avio.files import atomic_path
from avio.media import MediaInfo, probe

__all__ = ["NORMALIZE_VERSION", "browser_playable", "normalize_clip"]

# The one encoding every served clip gets. Change any of these and bump NORMALIZE_VERSION, so that
# cached copies made with the old settings are not reused next to new ones.
NORMALIZE_VERSION = "1"
# threads=1: x264's decisions (and its reported settings) depend on the thread count, which
# differs between machines; clips are seconds long, so one thread is fast enough.
_X264_OPTIONS = {"preset": "veryfast", "crf": "20", "bf": "0", "g": "250", "threads": "1",
                 "profile": "high", "flags": "+bitexact"}
_AUDIO_RATE = 48000
_AUDIO_LAYOUT = "stereo"
_AUDIO_BITRATE = 128_000
# bitexact: no "encoder=Lavf..." tag and zero creation times; faststart: playable while loading.
_MP4_OPTIONS = {"movflags": "+faststart", "fflags": "+bitexact"}
# x264 writes its version and every option as an SEI user-data message in the first frame; SEI
# NAL units (type 6) carry nothing a player needs here, so FFmpeg's filter_units removes them.
_STRIP_SEI = "filter_units=remove_types=6"

# What every current browser (Chromium, Firefox, Safari) decodes in an mp4 or webm container.
_PLAYABLE = {
    "mp4": ({"h264"}, {"aac", "mp3"}),
    "webm": ({"vp8", "vp9", "av1"}, {"opus", "vorbis"}),
}
_SUFFIX_CONTAINER = {".mp4": "mp4", ".m4v": "mp4", ".webm": "webm"}
_BROWSER_PIX_FMTS = {"yuv420p", "yuvj420p"}


def _pix_fmt(path: Path) -> str | None:
    try:
        with av.open(str(path)) as c:
            return c.streams.video[0].codec_context.pix_fmt if c.streams.video else None
    except av.error.FFmpegError:
        return None


def browser_playable(info: MediaInfo) -> bool:
    """Whether browsers play this file as it is: an mp4 with H.264 (4:2:0) and AAC/MP3, or a webm
    with VP8/VP9/AV1 and Opus/Vorbis."""
    container = _SUFFIX_CONTAINER.get(info.path.suffix.lower())
    if container is None or not info.has_video:
        return False
    video_ok, audio_ok = _PLAYABLE[container]
    if info.video_codec not in video_ok or (info.has_audio and info.audio_codec not in audio_ok):
        return False
    # High 4:4:4 or 10-bit H.264 is valid but most browsers refuse it.
    return _pix_fmt(info.path) in _BROWSER_PIX_FMTS


def normalize_clip(src: str | Path, dst: str | Path, *, audio_delay: float = 0.0, video_downscale: int = 1) -> Path:
    """Encode a clip the one fixed way (see the module docstring).

    H.264 yuv420p with the fixed x264 options (its settings SEI removed) + AAC 48 kHz stereo at a
    fixed bit rate, in a bit-exact mp4 with the moov atom first and no metadata from the source.
    Frames are re-timed at the stream's average rate (constant frame rate) and cropped by one pixel
    where a side is odd (4:2:0 chroma needs even sizes).

    Args:
        src: any file FFmpeg decodes, with a video stream.
        dst: output mp4 (written to a temporary file, then moved, so a crash never leaves half a file).
        audio_delay: seconds of silence put before the sound (the sound is cut at its old end), for
            gold pairs whose audio is out of sync with the picture.
        video_downscale: show the picture at 1/k of its resolution (scaled back up), for gold pairs
            with a visibly worse picture; 1 keeps it.

    Raises:
        MediaError: the source cannot be decoded or has no video; the arguments are out of range.
    """
    src, dst = Path(src), Path(dst)
    if audio_delay < 0:
        raise MediaError(f"{src}: audio_delay must be >= 0 seconds; got {audio_delay}")
    if video_downscale < 1:
        raise MediaError(f"{src}: video_downscale must be >= 1; got {video_downscale}")
    info = probe(src)
    if not info.has_video:
        raise MediaError(f"{src}: has no video stream; a study compares video clips")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dst) as tmp:
            _encode_into(src, tmp, info, audio_delay, video_downscale)
    except av.error.FFmpegError as err:
        raise MediaError(f"{src}: re-encoding failed ({err.strerror or err}); the file is corrupt or "
                         "uses a codec this FFmpeg cannot decode. Re-encode or remove it.") from err
    return dst


def _encode_into(src: Path, dst: Path, info: MediaInfo, audio_delay: float, downscale: int) -> None:
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if info.has_audio and inp.streams.audio else None
        rate = Fraction(vin.average_rate or vin.guessed_rate or 25).limit_denominator(1001)
        width, height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
        if width == 0 or height == 0:
            raise MediaError(f"{src}: the video is {width}x{height} pixels; nothing to show")
        with av.open(str(dst), mode="w", format="mp4", options=dict(_MP4_OPTIONS)) as out:
            vout = out.add_stream("libx264", rate=rate)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            vout.codec_context.options = dict(_X264_OPTIONS)
            vout.codec_context.open()  # the SEI filter reads the opened encoder's parameters
            strip = av.bitstream.BitStreamFilterContext(_STRIP_SEI, vout)

            def mux_video(packets: list[av.Packet]) -> None:
                filtered = [q for p in packets for q in strip.filter(p)]
                for q in filtered:
                    q.stream = vout
                out.mux(filtered)

            aout = resampler = None
            max_samples = written = 0
            if ain is not None:
                aout = out.add_stream("aac", rate=_AUDIO_RATE)
                aout.layout = _AUDIO_LAYOUT
                aout.bit_rate = _AUDIO_BITRATE
                aout.codec_context.options = {"flags": "+bitexact"}
                resampler = av.AudioResampler(format="fltp", layout=_AUDIO_LAYOUT, rate=_AUDIO_RATE)
                # The sound may last as long as the file says; the delayed copy is cut there.
                max_samples = int(round(info.duration * _AUDIO_RATE)) if info.duration > 0 else 0
                if audio_delay > 0:
                    silence = np.zeros((len(aout.layout.channels), int(round(audio_delay * _AUDIO_RATE))), np.float32)
                    written = _encode_audio(out, aout, silence, 0, max_samples)
            n_frames = 0
            streams = [s for s in (vin, ain) if s is not None]
            for frame in inp.decode(*streams):
                if isinstance(frame, av.VideoFrame):
                    if downscale > 1:
                        small = frame.reformat(width=max(width // downscale, 2), height=max(height // downscale, 2),
                                               threads=SWSCALE_THREADS)
                        frame = small.reformat(width=width, height=height, format="yuv420p", threads=SWSCALE_THREADS)
                    else:
                        frame = frame.reformat(width=width, height=height, format="yuv420p", threads=SWSCALE_THREADS)
                    frame.pts, frame.time_base = n_frames, Fraction(1) / rate
                    mux_video(vout.encode(frame))
                    n_frames += 1
                elif isinstance(frame, av.AudioFrame) and aout is not None and resampler is not None:
                    for rf in resampler.resample(frame):
                        written = _encode_audio(out, aout, rf.to_ndarray(), written, max_samples)
            if n_frames == 0:
                raise MediaError(f"{src}: the video stream has no decodable frames; re-encode or remove it")
            mux_video(vout.encode(None))
            mux_video(list(strip.filter(None)))
            if aout is not None and resampler is not None:
                for rf in resampler.resample(None):
                    written = _encode_audio(out, aout, rf.to_ndarray(), written, max_samples)
                out.mux(aout.encode(None))


def _encode_audio(out: av.container.OutputContainer, aout: av.audio.stream.AudioStream, samples: np.ndarray,
                  written: int, max_samples: int) -> int:
    """Encode planar float samples (C, S) starting at sample `written`, stopping at `max_samples`
    (0: no limit)."""
    if max_samples:
        samples = samples[:, : max(max_samples - written, 0)]
    if samples.shape[1] == 0:
        return written
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp",
                                       layout=_AUDIO_LAYOUT)
    frame.sample_rate, frame.pts, frame.time_base = _AUDIO_RATE, written, Fraction(1, _AUDIO_RATE)
    out.mux(aout.encode(frame))
    return written + samples.shape[1]
