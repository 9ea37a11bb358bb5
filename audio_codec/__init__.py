"""Audio codec: waveform <-> continuous latents (and discrete codes), built on EnCodec.

Public API:
    AudioCodec: the interface the generator uses (encode, decode, normalize, frame_rate, ...).
    EncodecCodec: EnCodec behind that interface; `EncodecCodec.from_pretrained` reads Meta's weights
        from a local file or the torch hub cache.
    CodecConfig, PRESETS, get_preset: architectures ("encodec_24khz", "encodec_48khz", "small", "debug").
    load_codec: read a codec file written by `AudioCodec.save` (or official EnCodec weights).
    compute_latent_stats, LatentStats: per-channel latent mean/std over audio.
    CodecInputError, CheckpointMismatchError, PretrainedWeightsError: what bad inputs raise.
"""

from audio_codec.base import AudioCodec, CodecInputError
from audio_codec.checkpoint import load_codec
from audio_codec.config import PRESETS, CodecConfig, get_preset
from audio_codec.encodec_codec import CheckpointMismatchError, EncodecCodec
from audio_codec.pretrained import PretrainedWeightsError
from audio_codec.stats import LatentStats, compute_latent_stats

__all__ = [
    "AudioCodec",
    "CheckpointMismatchError",
    "CodecConfig",
    "CodecInputError",
    "EncodecCodec",
    "LatentStats",
    "PRESETS",
    "PretrainedWeightsError",
    "compute_latent_stats",
    "get_preset",
    "load_codec",
]
