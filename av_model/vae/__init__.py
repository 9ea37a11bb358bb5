"""The video autoencoder: clips `(B, 3, T, H, W)` to latents `(B, C, T / tc, H / sc, W / sc)` and back."""

from .config import PRESETS, ChunkConfig, LossConfig, OptimConfig, VAEConfig, get_preset
from .io import VAECheckpointError, load_video_autoencoder
from .model import AutoencoderOutput, VideoAutoencoder

__all__ = [
    "PRESETS",
    "AutoencoderOutput",
    "ChunkConfig",
    "LossConfig",
    "OptimConfig",
    "VAECheckpointError",
    "VAEConfig",
    "VideoAutoencoder",
    "get_preset",
    "load_video_autoencoder",
]
