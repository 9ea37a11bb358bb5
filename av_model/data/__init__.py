"""Media I/O, the synthetic audio-video dataset, manifests and clip data modules."""

from av_model.data.media import (
    Clip,
    MediaError,
    MediaInfo,
    probe,
    read_audio,
    read_clip,
    write_audio,
    write_clip,
)

__all__ = [
    "Clip",
    "MediaError",
    "MediaInfo",
    "probe",
    "read_audio",
    "read_clip",
    "write_audio",
    "write_clip",
]
