"""The project's own audio codec latents as FAD embeddings.

`--codec PATH` names a codec file written by `avgen codec fit` (read with `audio_codec.load_codec`,
imported only when this extractor is used, so `eval` otherwise depends on no other package of the
project). Each latent frame (the continuous encoder output, before quantization and without the
latent normalization) is one embedding row, as fadtk does for EnCodec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from eval.features.base import FeatureExtractor, Preprocessor
from eval.reader import EvalInputError, read_audio
from eval.sets import ClipRecord

__all__ = ["CodecPreprocessor", "CodecExtractor", "load_codec_extractor"]


class CodecPreprocessor(Preprocessor):
    """Clip -> (1, C, S) waveform at the codec's rate and channel count."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.sample_rate, self.channels = sample_rate, channels

    def __call__(self, record: ClipRecord) -> torch.Tensor:
        audio, _ = read_audio(record.path, sample_rate=self.sample_rate, channels=self.channels,
                              start=record.start, duration=record.duration)
        return torch.from_numpy(audio).unsqueeze(0)


class CodecExtractor(FeatureExtractor):
    """Latent frames of an `audio_codec.AudioCodec`."""

    name = "codec"
    preprocessor: CodecPreprocessor

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu") -> None:
        try:
            from audio_codec import load_codec
        except ImportError as err:  # eval is usable without the codec package
            raise EvalInputError(f"--codec needs the audio_codec package of this project ({err}).") from err
        self.path = Path(path)
        self.device = torch.device(device)
        try:
            self.codec = load_codec(self.path, map_location=self.device)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise EvalInputError(f"{self.path}: not a codec file written by `avgen codec fit` ({err}).") from err
        self.weight_hash = f"fingerprint:{self.codec.fingerprint}"
        self.preprocessor = CodecPreprocessor(int(self.codec.sample_rate), int(self.codec.channels))

    def embed(self, units: torch.Tensor) -> torch.Tensor:
        z = self.codec.encode(units)  # (B, D, T)
        return z.transpose(1, 2)  # (B, T, D): every latent frame is a row

    def preprocessing(self) -> dict[str, Any]:
        return {
            "sample_rate": self.preprocessor.sample_rate,
            "channels": self.preprocessor.channels,
            "frame_rate": float(self.codec.frame_rate),
            "embedding": f"continuous latents, {self.codec.latent_dim}-d per frame, not normalized",
        }


def load_codec_extractor(path: str | Path, **kwargs: Any) -> CodecExtractor:
    """Load the project's audio codec from a local file as a FAD embedding."""
    return CodecExtractor(path, **kwargs)
