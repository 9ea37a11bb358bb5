"""The synthetic audio-video dataset and the clip data modules.

Media I/O and manifests are `avio`'s. Heavier pieces (Lightning data modules) are imported on first
use, so `import av_model.data` for the synthetic generator stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    "ClipDataConfig",
    "ClipDataModule",
    "ClipDataset",
    "DecodeFailureReport",
    "Event",
    "SynthClip",
    "SynthConfig",
    "SyntheticDataModule",
    "SyntheticStream",
    "collate_clips",
    "generate_clip",
    "make_dataset",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from av_model.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'av_model.data' has no attribute {name!r}")
