"""Frozen text encoders and the per-token text conditioning of the diffusion transformer."""

from av_model.text.base import TextEncoder
from av_model.text.batch import TextBatch
from av_model.text.cache import CachedTextEncoder
from av_model.text.encoders import (
    MINILM,
    HFTextEncoder,
    MultiTextEncoder,
    TextEncoderError,
    load_text_encoder,
    resolve_encoder_path,
)

__all__ = [
    "MINILM",
    "CachedTextEncoder",
    "HFTextEncoder",
    "MultiTextEncoder",
    "TextBatch",
    "TextEncoder",
    "TextEncoderError",
    "load_text_encoder",
    "resolve_encoder_path",
]
