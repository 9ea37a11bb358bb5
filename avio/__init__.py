"""Media and file formats: the bottom layer every other package reads and writes files through.

It holds the PyAV readers and writers of mp4 and audio files, probing, the dataset manifest and the
sample sidecar schemas, file hashing and atomic writes, and one error family (`FormatError`: each
message names the file, the problem and what to do). It imports no other package of the project,
and not torch: the readers that return tensors import it when first called, so the rating app can
probe and serve media without it.

Public API:
    probe, MediaInfo: describe a media file without decoding it.
    read_clip, Clip, read_audio: decode frames and sound, placed by their timestamps.
    read_video: every decoded frame of a window as numpy (the metrics' reader).
    write_clip, write_audio: browser-playable mp4 (H.264 + AAC), 16-bit wav.
    normalize_clip, browser_playable: the one fixed re-encoding of a clip (bit-exact mp4, no metadata).
    load_manifest, save_manifest, ManifestEntry: dataset manifests (JSONL or CSV); avio.manifest.read_records
        is the one parser of manifest files, for readers that build their own records.
    read_sidecar, write_sidecar, sidecar_path: a sample's JSON record beside its mp4.
    sha256_file, update_with_file: file hashing.
    atomic_path, atomic_write_text: writes that never leave half a file.
    FormatError, MediaError, ManifestError, SidecarError: the errors.
"""

from avio.errors import FormatError, ManifestError, MediaError, SidecarError
from avio.files import atomic_path, atomic_write_text, sha256_file, update_with_file
from avio.manifest import ManifestEntry, load_manifest, save_manifest
from avio.media import Clip, MediaInfo, probe, read_audio, read_clip, read_video, write_audio, write_clip
from avio.normalize import browser_playable, normalize_clip
from avio.sidecar import read_sidecar, sidecar_path, write_sidecar

__all__ = [
    "Clip",
    "FormatError",
    "ManifestEntry",
    "ManifestError",
    "MediaError",
    "MediaInfo",
    "SidecarError",
    "atomic_path",
    "atomic_write_text",
    "browser_playable",
    "load_manifest",
    "normalize_clip",
    "probe",
    "read_audio",
    "read_clip",
    "read_sidecar",
    "read_video",
    "save_manifest",
    "sha256_file",
    "sidecar_path",
    "update_with_file",
    "write_audio",
    "write_clip",
    "write_sidecar",
]
