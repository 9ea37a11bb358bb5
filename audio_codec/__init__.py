"""Audio codec: waveform <-> continuous latents (and discrete codes), EnCodec-based.

Public API:
    AudioCodec: the interface the generator uses (encode, decode, normalize, ...).
    EncodecCodec: EnCodec behind that interface; `EncodecCodec.from_pretrained` for Meta's weights.
    CodecConfig, PRESETS, get_preset: architectures ("encodec_24khz", "encodec_48khz", "small", "debug").
    load_codec: read a codec file written by `AudioCodec.save` (or official EnCodec weights).
    compute_latent_stats: per-channel latent mean/std over audio clips.
"""

from audio_codec.base import AudioCodec, CodecInputError
from audio_codec.checkpoint import load_codec
from audio_codec.config import PRESETS, CodecConfig, get_preset
from audio_codec.encodec_codec import CheckpointMismatchError, EncodecCodec
from audio_codec.pretrained import PretrainedWeightsError

__all__ = [
    "AudioCodec",
    "CheckpointMismatchError",
    "CodecConfig",
    "CodecInputError",
    "EncodecCodec",
    "PRESETS",
    "PretrainedWeightsError",
    "get_preset",
    "load_codec",
]
