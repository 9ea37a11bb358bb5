"""Media I/O, the synthetic audio-video dataset, manifests and clip data modules.

Heavier pieces (Lightning data modules) are imported on first use, so `import av_model.data` for
media I/O stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from av_model.data.manifest import ManifestEntry, ManifestError, load_manifest, save_manifest
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
from av_model.data.synthetic import (
    FAMILIES,
    Event,
    SynthClip,
    SynthConfig,
    SyntheticStream,
    generate_clip,
    make_dataset,
)

if TYPE_CHECKING:
    from av_model.data.datamodule import (
        ClipDataConfig,
        ClipDataModule,
        ClipDataset,
        DecodeFailureReport,
        SyntheticDataModule,
        collate_clips,
    )

_LAZY = {"ClipDataConfig", "ClipDataModule", "ClipDataset", "DecodeFailureReport", "SyntheticDataModule", "collate_clips"}

__all__ = [
    "FAMILIES",
    "Clip",
    "ClipDataConfig",
    "ClipDataModule",
    "ClipDataset",
    "DecodeFailureReport",
    "Event",
    "ManifestEntry",
    "ManifestError",
    "MediaError",
    "MediaInfo",
    "SynthClip",
    "SynthConfig",
    "SyntheticDataModule",
    "SyntheticStream",
    "collate_clips",
    "generate_clip",
    "load_manifest",
    "make_dataset",
    "probe",
    "read_audio",
    "read_clip",
    "save_manifest",
    "write_audio",
    "write_clip",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from av_model.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'av_model.data' has no attribute {name!r}")
