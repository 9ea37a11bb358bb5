"""Registered media: import (copy or transcode to H.264 + AAC), gold-pair variants, and serving.

A study registers every clip it shows: the file is copied (or transcoded, when a browser could not
play it) into the store's media folder under the study's code, and the `Sample` row records its
path relative to that folder. Serving reads only such files, by sample id, after checking that the
resolved path still lies inside the media folder; nothing a rater sends is ever used as a path.

Transcoding streams frame by frame through PyAV (not `av_model.data.media.read_clip`, which holds a
whole clip in memory) so that long or large clips import with constant memory; `probe` from the
data package describes files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from av_model.data.media import MediaError, MediaInfo, probe

__all__ = [
    "MAX_MEDIA_BYTES",
    "MediaError",
    "RegisteredMedia",
    "browser_playable",
    "register_media",
    "transcode",
    "read_registered",
    "resolve_registered",
]

# Clips reach the browser inside the page's websocket messages (see components/av_pair), so a
# clip must stay small; evaluation clips (seconds long, H.264) are a few MB.
MAX_MEDIA_BYTES = 50 * 1024 * 1024

# What every current browser (Chromium, Firefox, Safari) decodes in an mp4 or webm container.
_PLAYABLE = {
    "mp4": ({"h264"}, {"aac", "mp3"}),
    "webm": ({"vp8", "vp9", "av1"}, {"opus", "vorbis"}),
}
_SUFFIX_CONTAINER = {".mp4": "mp4", ".m4v": "mp4", ".webm": "webm"}
_BROWSER_PIX_FMTS = {"yuv420p", "yuvj420p"}


@dataclass(frozen=True)
class RegisteredMedia:
    """A clip copied into the media folder.

    Attributes:
        relpath: path relative to the media folder (POSIX separators).
        sha256: hex digest of the registered file.
        size_bytes: its size.
        duration: seconds; width, height: pixels; has_audio: whether it has sound.
        transcoded: whether it was re-encoded (else a byte-exact copy of the source).
    """

    relpath: str
    sha256: str
    size_bytes: int
    duration: float
    width: int
    height: int
    has_audio: bool
    transcoded: bool


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def transcode(src: str | Path, dst: str | Path, *, audio_delay: float = 0.0, video_downscale: int = 1,
              crf: int = 20) -> Path:
    """Re-encode a clip as a browser-playable mp4 (H.264 yuv420p + AAC, moov atom first).

    Frames are re-timed at the stream's average rate (constant frame rate) and cropped by one pixel
    where a side is odd (4:2:0 chroma needs even sizes).

    Args:
        src: any file FFmpeg decodes, with a video stream.
        dst: output mp4 (written to a temporary file, then moved, so a crash never leaves half a file).
        audio_delay: seconds of silence put before the sound (the sound is cut at its old end), for
            gold pairs whose audio is out of sync with the picture.
        video_downscale: show the picture at 1/k of its resolution (scaled back up), for gold pairs
            with a visibly worse picture; 1 keeps it.
        crf: x264 quality.

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
    fd, tmp_name = tempfile.mkstemp(suffix=".mp4", dir=dst.parent, prefix=".transcode-")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _transcode_into(src, tmp, info, audio_delay, video_downscale, crf)
        os.replace(tmp, dst)
    except av.error.FFmpegError as err:
        raise MediaError(f"{src}: transcoding failed ({err.strerror or err}); the file is corrupt or "
                         "uses a codec this FFmpeg cannot decode. Re-encode or remove it.") from err
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def _transcode_into(src: Path, dst: Path, info: MediaInfo, audio_delay: float, downscale: int,
                    crf: int) -> None:
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if info.has_audio and inp.streams.audio else None
        rate = Fraction(vin.average_rate or vin.guessed_rate or 25).limit_denominator(1001)
        width, height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
        if width == 0 or height == 0:
            raise MediaError(f"{src}: the video is {width}x{height} pixels; nothing to show")
        with av.open(str(dst), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            vout = out.add_stream("libx264", rate=rate)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            vout.codec_context.options = {"crf": str(crf), "preset": "veryfast"}
            aout = resampler = None
            if ain is not None:
                sr = ain.codec_context.sample_rate
                layout = "mono" if ain.codec_context.channels == 1 else "stereo"
                aout = out.add_stream("aac", rate=sr)
                aout.layout = layout
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=sr)
                # The sound may last as long as the file says; the delayed copy is cut there.
                max_samples = int(round(info.duration * sr)) if info.duration > 0 else None
                written = 0
                if audio_delay > 0:
                    written = _encode_audio(out, aout, np.zeros((len(aout.layout.channels),
                                                                 int(round(audio_delay * sr))), np.float32),
                                            layout, sr, 0, max_samples)
            n_frames = 0
            streams = [s for s in (vin, ain) if s is not None]
            for frame in inp.decode(*streams):
                if isinstance(frame, av.VideoFrame):
                    if downscale > 1:
                        small = frame.reformat(width=max(width // downscale, 2), height=max(height // downscale, 2))
                        frame = small.reformat(width=width, height=height, format="yuv420p")
                    else:
                        frame = frame.reformat(width=width, height=height, format="yuv420p")
                    frame.pts, frame.time_base = n_frames, Fraction(1) / rate
                    out.mux(vout.encode(frame))
                    n_frames += 1
                elif isinstance(frame, av.AudioFrame) and aout is not None and resampler is not None:
                    for rf in resampler.resample(frame):
                        written = _encode_audio(out, aout, rf.to_ndarray(), layout, sr, written, max_samples)
            if n_frames == 0:
                raise MediaError(f"{src}: the video stream has no decodable frames; re-encode or remove it")
            out.mux(vout.encode(None))
            if aout is not None:
                out.mux(aout.encode(None))


def _encode_audio(out: av.container.OutputContainer, aout: av.audio.stream.AudioStream, samples: np.ndarray,
                  layout: str, sr: int, written: int, max_samples: int | None) -> int:
    """Encode planar float samples (C, S) starting at sample `written`, stopping at `max_samples`."""
    if max_samples is not None:
        samples = samples[:, : max(max_samples - written, 0)]
    if samples.shape[1] == 0:
        return written
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp",
                                       layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = sr, written, Fraction(1, sr)
    out.mux(aout.encode(frame))
    return written + samples.shape[1]


def register_media(src: str | Path, media_root: str | Path, relpath: str, *, audio_delay: float = 0.0,
                   video_downscale: int = 1) -> RegisteredMedia:
    """Copy (or transcode) `src` to `media_root/relpath` and describe the registered file.

    A file browsers play as it is is copied byte for byte; anything else (another codec, 10-bit,
    a .mov or .mkv) is transcoded to H.264 + AAC. With `audio_delay` or `video_downscale` the clip
    is always re-encoded (gold-pair variants).

    Raises:
        MediaError: the source is missing, not media, has no video, or is larger than
            MAX_MEDIA_BYTES; or `relpath` would leave the media folder.
    """
    src = Path(src)
    root = Path(media_root).resolve()
    dst = (root / relpath).resolve()
    if not dst.is_relative_to(root) or dst == root:
        raise MediaError(f"{relpath!r}: a registered file must lie inside the media folder {root}")
    info = probe(src)  # MediaError for missing files and non-media
    if not info.has_video:
        raise MediaError(f"{src}: has no video stream; a study compares video clips. Remove it from the samples.")
    size = src.stat().st_size
    if size > MAX_MEDIA_BYTES:
        raise MediaError(
            f"{src}: is {size / 2**20:.1f} MB, more than the {MAX_MEDIA_BYTES / 2**20:.0f} MB a study clip may "
            "have (clips are sent to raters' browsers whole); shorten it or re-encode at a lower bit rate"
        )
    must_encode = audio_delay > 0 or video_downscale > 1
    if must_encode or not browser_playable(info):
        transcode(src, dst, audio_delay=audio_delay, video_downscale=video_downscale)
        transcoded = True
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        transcoded = False
    out_info = probe(dst) if transcoded else info
    return RegisteredMedia(
        relpath=dst.relative_to(root).as_posix(),
        sha256=_sha256(dst),
        size_bytes=dst.stat().st_size,
        duration=float(out_info.duration),
        width=int(out_info.width or 0),
        height=int(out_info.height or 0),
        has_audio=bool(out_info.has_audio),
        transcoded=transcoded,
    )


def resolve_registered(media_root: str | Path, relpath: str) -> Path:
    """The file of a registered sample, checked to lie inside the media folder.

    Raises:
        MediaError: the path leaves the media folder (a damaged or tampered database) or the file
            is gone.
    """
    root = Path(media_root).resolve()
    path = (root / relpath).resolve()  # resolves symlinks too: a link out of the folder is refused
    if not path.is_relative_to(root) or path == root:
        raise MediaError(f"refusing to serve {relpath!r}: it is not inside the media folder {root}")
    if not path.is_file():
        raise MediaError(f"registered media {relpath!r} is missing from {root}; restore the media folder "
                         "or recreate the study")
    return path


def read_registered(media_root: str | Path, relpath: str, sha256: str | None = None) -> bytes:
    """The bytes of a registered file (see `resolve_registered`); with `sha256`, also checked to be
    the very file that was registered.

    Raises:
        MediaError: as `resolve_registered`, or the content changed since registration.
    """
    path = resolve_registered(media_root, relpath)
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise MediaError(f"registered media {relpath!r} changed since the study was created; it is not served")
    return data
