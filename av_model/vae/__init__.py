"""The video autoencoder: clips `(B, 3, T, H, W)` to latents `(B, C, T / tc, H / sc, W / sc)` and back."""

from .config import PRESETS, VAE_OPTIMIZER, ChunkConfig, LossConfig, VAEConfig, get_preset
from .io import VAECheckpointError, load_video_autoencoder
from .model import AutoencoderOutput, VideoAutoencoder

__all__ = [
    "PRESETS",
    "VAE_OPTIMIZER",
    "AutoencoderOutput",
    "ChunkConfig",
    "LossConfig",
    "VAECheckpointError",
    "VAEConfig",
    "VideoAutoencoder",
    "get_preset",
    "load_video_autoencoder",
]
