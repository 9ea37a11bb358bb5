"""Registered media: one normalised copy of every clip a study shows, gold-pair variants, and serving.

A study registers every clip it shows. Every clip, whatever its source (a browser-playable mp4, a
.mov or .mkv, a gold pair's altered copy), is written by `avio.normalize_clip` with one fixed set
of options, so the bytes a rater receives tell neither the system, nor the file's origin, nor
whether a pair is gold.

Normalised copies are kept under ``<media>/_normalized/`` by a key made of the source file's
SHA-256, the settings version and the alteration, and copied into the study's folder;
a rerun of a study creation that failed half-way reuses them instead of encoding again. The `Sample`
row records the study file's path relative to the media folder. Serving reads only such files, by
sample id, after checking that the resolved path still lies inside the media folder; nothing a
rater sends is ever used as a path.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from avio import MediaError, probe, sha256_file
from avio.normalize import NORMALIZE_VERSION, browser_playable, normalize_clip

__all__ = [
    "MAX_MEDIA_BYTES",
    "NORMALIZED_DIR",
    "RegisteredMedia",
    "register_media",
    "read_registered",
    "resolve_registered",
]

# Clips reach the browser inside the page's websocket messages (see components/av_pair), so a
# clip must stay small; evaluation clips (seconds long, H.264) are a few MB.
MAX_MEDIA_BYTES = 50 * 1024 * 1024

NORMALIZED_DIR = "_normalized"  # under the media folder; study codes are upper case, so never clash


@dataclass(frozen=True)
class RegisteredMedia:
    """A clip normalised into the media folder.

    Attributes:
        relpath: path relative to the media folder (POSIX separators).
        sha256: hex digest of the registered file.
        size_bytes: its size.
        duration: seconds; width, height: pixels; has_audio: whether it has sound.
        transcoded: whether the source itself was in a form browsers cannot play (another codec,
            10-bit, .mov, .mkv); every registered file is re-encoded either way.
        reused: whether the normalised copy was made before (same source bytes, same settings).
    """

    relpath: str
    sha256: str
    size_bytes: int
    duration: float
    width: int
    height: int
    has_audio: bool
    transcoded: bool
    reused: bool = False


def _cache_key(source_sha256: str, audio_delay: float, video_downscale: int) -> str:
    text = f"v{NORMALIZE_VERSION}|{source_sha256}|delay={float(audio_delay)!r}|downscale={int(video_downscale)}"
    return hashlib.sha256(text.encode()).hexdigest()


def register_media(src: str | Path, media_root: str | Path, relpath: str, *, audio_delay: float = 0.0,
                   video_downscale: int = 1, require_audio: bool = False) -> RegisteredMedia:
    """Normalise `src` (see `normalize_clip`) into `media_root/relpath` and describe the file.

    The normalised copy is cached under ``media_root/_normalized/`` by the source's SHA-256, the
    settings version and the alteration; an earlier copy of the same source is reused.

    Args:
        audio_delay, video_downscale: the gold-pair alterations (see `normalize_clip`).
        require_audio: refuse a source without sound (before spending time on encoding it).

    Raises:
        MediaError: the source is missing, not media, has no video (or no sound with
            `require_audio`), or it or its copy is larger than MAX_MEDIA_BYTES; or `relpath` would
            leave the media folder.
    """
    src = Path(src)
    root = Path(media_root).resolve()
    dst = (root / relpath).resolve()
    if not dst.is_relative_to(root) or dst == root or dst.is_relative_to(root / NORMALIZED_DIR):
        raise MediaError(f"{relpath!r}: a registered file must lie inside the media folder {root} "
                         f"(and outside its {NORMALIZED_DIR}/ cache)")
    info = probe(src)  # MediaError for missing files and non-media
    if not info.has_video:
        raise MediaError(f"{src}: has no video stream; a study compares video clips. Remove it from the samples.")
    if require_audio and not info.has_audio:
        raise MediaError(f"{src}: has no sound; raters compare clips with sound. Sample it again with audio "
                         "or remove it from the samples.")
    size = src.stat().st_size
    if size > MAX_MEDIA_BYTES:
        raise MediaError(
            f"{src}: is {size / 2**20:.1f} MB, more than the {MAX_MEDIA_BYTES / 2**20:.0f} MB a study clip may "
            "have (clips are sent to raters' browsers whole); shorten it or re-encode at a lower bit rate"
        )
    cached = root / NORMALIZED_DIR / f"{_cache_key(sha256_file(src), audio_delay, video_downscale)}.mp4"
    reused = cached.is_file()
    if not reused:
        normalize_clip(src, cached, audio_delay=audio_delay, video_downscale=video_downscale)
    out_size = cached.stat().st_size
    if out_size > MAX_MEDIA_BYTES:
        raise MediaError(f"{src}: its normalised copy is {out_size / 2**20:.1f} MB, more than the "
                         f"{MAX_MEDIA_BYTES / 2**20:.0f} MB a study clip may have; shorten the clip")
    # A copy, not a hard link: editing a study's file in place must not change the cache as well.
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, dst)
    out_info = probe(dst)
    return RegisteredMedia(
        relpath=dst.relative_to(root).as_posix(),
        sha256=sha256_file(dst),
        size_bytes=dst.stat().st_size,
        duration=float(out_info.duration),
        width=int(out_info.width or 0),
        height=int(out_info.height or 0),
        has_audio=bool(out_info.has_audio),
        transcoded=not browser_playable(info),
        reused=reused,
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
