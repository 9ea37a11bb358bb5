"""CLAP (contrastive language-audio) embeddings from a local transformers `ClapModel` folder.

Used for FAD-CLAP (audio embeddings) and the CLAP score (cosine between a clip's audio embedding
and its caption's text embedding). The folder is what `save_pretrained` writes for the model and
its processor (e.g. laion/clap-htsat-unfused). Audio is read mono at the processor's rate (48 kHz)
and cut into windows of the processor's maximum length (10 s); shorter audio is handled as the
processor does (repeat-padding). Embeddings are the model's projected, L2-normalized features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.features.base import Preprocessor
from eval.features.hf import PretrainedFolderExtractor, pooled
from eval.reader import read_audio
from eval.sets import ClipRecord

__all__ = ["ClapPreprocessor", "ClapExtractor", "load_clap"]


class ClapPreprocessor(Preprocessor):
    """Clip -> (W, C, T, F) CLAP input features (one row per window of up to `max_length_s`)."""

    def __init__(self, feature_extractor: Any) -> None:
        self.fe = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.max_seconds = float(getattr(feature_extractor, "max_length_s", 10))

    def __call__(self, record: ClipRecord) -> torch.Tensor:
        audio, _ = read_audio(record.path, sample_rate=self.sample_rate, channels=1, start=record.start,
                              duration=record.duration)
        return self.features(audio[0])

    def features(self, wav: np.ndarray) -> torch.Tensor:
        """(S,) mono at the processor's rate -> (W, C, T, F)."""
        win = int(self.max_seconds * self.sample_rate)
        pieces = [wav[i:i + win] for i in range(0, max(len(wav), 1), win)]
        pieces = [p for p in pieces if len(p) >= self.sample_rate // 10] or pieces[:1]  # drop <0.1 s tails
        out = self.fe(pieces, sampling_rate=self.sample_rate, return_tensors="pt")
        feats = out["input_features"]
        return feats if feats.ndim == 4 else feats.unsqueeze(1)


class ClapExtractor(PretrainedFolderExtractor):
    """A transformers ClapModel (with its processor) from a local folder."""

    name = "clap"
    model_class, processor_class = "ClapModel", "ClapProcessor"
    preprocessor: ClapPreprocessor

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu") -> None:
        super().__init__(path, device=device)
        self.fusion = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
        self.preprocessor = ClapPreprocessor(self.processor.feature_extractor)

    def embed(self, units: torch.Tensor) -> torch.Tensor:
        is_longer = torch.zeros(units.shape[0], 1, dtype=torch.bool, device=units.device) if self.fusion else None
        out = pooled(self.model.get_audio_features(input_features=units, is_longer=is_longer))
        return torch.nn.functional.normalize(out, dim=-1)  # already unit length in recent transformers

    def preprocessing(self) -> dict[str, Any]:
        return {
            "sample_rate": self.preprocessor.sample_rate,
            "channels": "mono mix",
            "window": f"up to {self.preprocessor.max_seconds:g} s (processor padding: "
                      f"{getattr(self.processor.feature_extractor, 'padding', '?')})",
            "embedding": "projected, L2-normalized",
        }


def load_clap(path: str | Path, **kwargs: Any) -> ClapExtractor:
    """Load a ClapModel and its processor from a local folder."""
    return ClapExtractor(path, **kwargs)
