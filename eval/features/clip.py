"""CLIP image and text embeddings from a local transformers `CLIPModel` folder, for the CLIP score.

The CLIP score of a clip is the mean, over `frames` frames sampled uniformly in time, of the cosine
between the frame's image embedding and the caption's text embedding (times 100). Frames go
through the folder's own image processor (resize, centre crop, normalization), so the protocol is
the checkpoint's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.features.base import Preprocessor
from eval.features.hf import PretrainedFolderExtractor, pooled
from eval.reader import read_video
from eval.sets import ClipRecord

__all__ = ["ClipFramePreprocessor", "ClipExtractor", "load_clip"]


class ClipFramePreprocessor(Preprocessor):
    """Clip -> (K, 3, S, S) pixel values of K frames sampled uniformly in time."""

    def __init__(self, image_processor: Any, frames: int = 8) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}.")
        self.ip = image_processor
        self.frames = frames

    def __call__(self, record: ClipRecord) -> torch.Tensor:
        video, _ = read_video(record.path, start=record.start, duration=record.duration)
        idx = np.unique(np.linspace(0, video.shape[0] - 1, self.frames).round().astype(int))
        return self.ip(images=list(video[idx]), return_tensors="pt")["pixel_values"]


class ClipExtractor(PretrainedFolderExtractor):
    """A transformers CLIPModel (with its processor) from a local folder."""

    name = "clip"
    model_class, processor_class = "CLIPModel", "CLIPProcessor"
    preprocessor: ClipFramePreprocessor

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", frames: int = 8) -> None:
        super().__init__(path, device=device)
        self.preprocessor = ClipFramePreprocessor(self.processor.image_processor, frames)

    def embed(self, units: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(pooled(self.model.get_image_features(pixel_values=units)), dim=-1)

    def preprocessing(self) -> dict[str, Any]:
        ip = self.processor.image_processor
        return {
            "frames": f"{self.preprocessor.frames} uniformly sampled",
            "image_processor": type(ip).__name__,
            "size": str(getattr(ip, "crop_size", getattr(ip, "size", "?"))),
            "score": "100 * mean cosine(frame, caption)",
        }


def load_clip(path: str | Path, **kwargs: Any) -> ClipExtractor:
    """Load a CLIPModel and its processor from a local folder."""
    return ClipExtractor(path, **kwargs)
