"""Configuration of the video autoencoder: architecture, losses, chunking, and named presets.

`VAEConfig` is the single source of truth for the architecture; a saved `vae.pt` stores it as a plain
dict and `VideoAutoencoder(VAEConfig(**d))` rebuilds the same network. The YAML files under
`configs/vae/` are serialized instances of these dataclasses (read by LightningCLI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from avtrain.optim import OptimConfig


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


@dataclass
class VAEConfig:
    """Architecture of a factorized ("2.5D") temporal autoencoder, as in Movie Gen's TAE.

    Every convolution is a 2D spatial (1x3x3) convolution followed by a 1D temporal (3x1x1) one.
    Down- and upsampling are strided in time and space; the latent is a diagonal Gaussian.

    Attributes:
        temporal_compression: frames per latent frame (1, 2, 4 or 8).
        spatial_compression: pixels per latent pixel along height and width (8 or 16 in practice;
            any power of two >= `patch_size`).
        latent_channels: channels of the latent `z` (Movie Gen uses 16).
        patch_size: space-to-depth factor applied to the input before the first convolution. It is
            part of the spatial compression and makes full-resolution work cheap (the first
            convolutions run at H/p x W/p); 1 disables it.
        channels: width of each resolution level, from the finest to the coarsest. The number of
            levels must be `log2(spatial_compression / patch_size) + 1` (a downsampling step sits
            between consecutive levels) and at least `log2(temporal_compression) + 1`.
        temporal_patch: time-to-depth factor applied with the spatial patchify (consecutive
            frames stacked as channels); part of the temporal compression, so only
            `temporal_compression / temporal_patch` is left to strided convolutions.
        blocks_per_level: residual blocks at each level of the encoder (the decoder uses one more).
        mid_attention: a spatial self-attention layer in the middle blocks (GPU presets; costly on
            CPUs).
        shortcut: add parameter-free space/time-to-channel shortcuts around every resampling step
            (residual autoencoding, as in DC-AE); trains much faster from scratch.
        logvar_min: lower clamp of the posterior log-variance.
        logvar_max: upper clamp of the posterior log-variance.
        input_chroma_gain: the encoder sees each pixel's chroma (its RGB values less their mean,
            the grey level) multiplied by this; the grey level and the decoder are unchanged, and 1
            is plain RGB. RGB clips whose variance is mostly brightness (dark floors, bright shapes)
            make a short run learn grey blobs long before their hue; a gain above 1 gives hue the
            larger share of the encoder's input (docs/vae.md, "Colour through the autoencoder").
    """

    temporal_compression: int = 4
    spatial_compression: int = 8
    latent_channels: int = 8
    patch_size: int = 2
    temporal_patch: int = 1
    channels: tuple[int, ...] = (32, 64, 64)
    blocks_per_level: int = 1
    mid_attention: bool = False
    shortcut: bool = True
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    input_chroma_gain: float = 1.0

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.temporal_compression not in (1, 2, 4, 8):
            raise ValueError(
                f"temporal_compression must be 1, 2, 4 or 8, got {self.temporal_compression}."
            )
        if not _is_power_of_two(self.patch_size):
            raise ValueError(f"patch_size must be a power of two (1, 2, 4, ...), got {self.patch_size}.")
        if not _is_power_of_two(self.temporal_patch) or self.temporal_patch > self.temporal_compression:
            raise ValueError(
                f"temporal_patch must be a power of two <= temporal_compression ({self.temporal_compression}), "
                f"got {self.temporal_patch}."
            )
        if not _is_power_of_two(self.spatial_compression) or self.spatial_compression < self.patch_size:
            raise ValueError(
                f"spatial_compression must be a power of two >= patch_size ({self.patch_size}), "
                f"got {self.spatial_compression}."
            )
        if not 1 <= self.latent_channels <= 256:
            raise ValueError(f"latent_channels must be in [1, 256], got {self.latent_channels}.")
        expected = self.num_spatial_down + 1
        if len(self.channels) != expected:
            raise ValueError(
                f"channels has {len(self.channels)} levels but spatial_compression "
                f"{self.spatial_compression} with patch_size {self.patch_size} needs {expected} "
                f"(one per resolution), e.g. channels={tuple([self.channels[0]] * expected)}."
            )
        if self.num_temporal_down > self.num_spatial_down:
            raise ValueError(
                f"temporal_compression {self.temporal_compression} needs at least "
                f"{self.num_temporal_down} downsampling steps but the spatial layout has only "
                f"{self.num_spatial_down}; raise spatial_compression, lower patch_size or raise temporal_patch."
            )
        if any(c < 4 or c % 4 for c in self.channels):
            raise ValueError(f"every entry of channels must be a positive multiple of 4, got {self.channels}.")
        if self.shortcut:
            for i in range(len(self.channels) - 1):
                factor = 4 * (2 if i < self.num_temporal_down else 1)
                pairs = ((self.channels[i] * factor, self.channels[i + 1]), (self.channels[i + 1], self.channels[i]))
                for a, b in pairs:
                    if a % b and b % a:
                        raise ValueError(
                            f"shortcut=True needs channel counts that divide one another across each "
                            f"resampling step; {a} and {b} (levels {i} and {i + 1} of {self.channels}) do not. "
                            f"Use powers of two in channels, or shortcut=False."
                        )
        if self.blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be >= 1, got {self.blocks_per_level}.")
        if self.logvar_min >= self.logvar_max:
            raise ValueError(f"logvar_min ({self.logvar_min}) must be below logvar_max ({self.logvar_max}).")
        if not self.input_chroma_gain > 0:
            raise ValueError(f"input_chroma_gain must be > 0, got {self.input_chroma_gain}.")

    @property
    def num_spatial_down(self) -> int:
        """Strided spatial downsampling steps after the patchify."""
        return int(math.log2(self.spatial_compression // self.patch_size))

    @property
    def num_temporal_down(self) -> int:
        """Strided temporal downsampling steps after the patchify."""
        return int(math.log2(self.temporal_compression // self.temporal_patch))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON/YAML/`torch.load(weights_only=True)` safe).

        `input_chroma_gain` is written only where it is not 1, so the files and fingerprints of
        autoencoders made before it existed stay as they were."""
        d: dict[str, Any] = {
            "temporal_compression": self.temporal_compression,
            "spatial_compression": self.spatial_compression,
            "latent_channels": self.latent_channels,
            "patch_size": self.patch_size,
            "temporal_patch": self.temporal_patch,
            "channels": list(self.channels),
            "blocks_per_level": self.blocks_per_level,
            "mid_attention": self.mid_attention,
            "shortcut": self.shortcut,
            "logvar_min": self.logvar_min,
            "logvar_max": self.logvar_max,
        }
        if self.input_chroma_gain != 1.0:
            d["input_chroma_gain"] = self.input_chroma_gain
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown VAEConfig fields {unknown}; known fields: {sorted(known)}.")
        return cls(**d)


@dataclass
class ChunkConfig:
    """How `encode_chunked` / `decode_chunked` split long or large clips.

    Windows overlap and are blended with linear ramps so the seams do not show. Sizes are in input
    units of `encode` (frames, pixels); decoding uses the same windows divided by the compression.

    Attributes:
        chunk_frames: frames per temporal window (a multiple of the temporal compression); None
            keeps the whole clip in one window.
        overlap_frames: frames shared by neighbouring temporal windows (multiple of the temporal
            compression, less than `chunk_frames`).
        tile_size: pixels per spatial tile along height and width (multiple of the spatial
            compression); None keeps whole frames.
        tile_overlap: pixels shared by neighbouring tiles (multiple of the spatial compression).
    """

    chunk_frames: int | None = 32
    overlap_frames: int = 8
    tile_size: int | None = None
    tile_overlap: int = 32

    def __post_init__(self) -> None:
        if self.chunk_frames is not None and self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1 or None, got {self.chunk_frames}.")
        if self.overlap_frames < 0 or (self.chunk_frames is not None and self.overlap_frames >= self.chunk_frames):
            raise ValueError(
                f"overlap_frames must be in [0, chunk_frames), got {self.overlap_frames} "
                f"with chunk_frames={self.chunk_frames}."
            )
        if self.tile_size is not None and self.tile_size < 1:
            raise ValueError(f"tile_size must be >= 1 or None, got {self.tile_size}.")
        if self.tile_overlap < 0 or (self.tile_size is not None and self.tile_overlap >= self.tile_size):
            raise ValueError(
                f"tile_overlap must be in [0, tile_size), got {self.tile_overlap} with tile_size={self.tile_size}."
            )

    def check(self, temporal_compression: int, spatial_compression: int) -> None:
        """Raise a ValueError if the windows do not fall on latent boundaries of a model."""
        tc, sc = temporal_compression, spatial_compression
        if self.chunk_frames is not None and (self.chunk_frames % tc or self.overlap_frames % tc):
            raise ValueError(
                f"chunk_frames ({self.chunk_frames}) and overlap_frames ({self.overlap_frames}) must be "
                f"multiples of the temporal compression {tc}."
            )
        if self.tile_size is not None and (self.tile_size % sc or self.tile_overlap % sc):
            raise ValueError(
                f"tile_size ({self.tile_size}) and tile_overlap ({self.tile_overlap}) must be multiples "
                f"of the spatial compression {sc}."
            )


@dataclass
class LossConfig:
    """Weights and schedule of the training losses.

    Attributes:
        l1_weight: pixel L1 reconstruction.
        l2_weight: pixel mean squared error. Its gradient grows with the error, so a short run
            learns the small, far-off-colour objects that L1 (whose optimum is the per-pixel
            median, here the background) leaves as faint ghosts.
        gradient_weight: L1 between spatial finite differences of input and reconstruction; a
            cheap, perceptual-network-free loss that keeps edges (and so object positions) sharp.
        temporal_weight: L1 between frame differences of input and reconstruction; keeps motion.
        kl_weight: KL divergence of the posterior to N(0, I), averaged per latent element.
        outlier_weight: Movie Gen's outlier penalty on latents beyond `outlier_r` standard
            deviations of the per-channel mean (stops the high-norm latent spots that cause
            artifacts in generated videos).
        outlier_r: the radius of the outlier penalty, in standard deviations.
        adversarial_weight: weight of the generator's adversarial loss (0 disables the GAN).
        adaptive_adversarial: scale the adversarial loss by the ratio of reconstruction and
            adversarial gradient norms at the decoder's last layer (as in VQGAN), clamped to 1e4.
        disc_start_step: optimizer step at which the discriminator and the adversarial loss
            switch on (a warm-up of reconstruction-only training first).
        disc_channels: width of the first discriminator layer.
        disc_layers: strided layers of the 3D patch discriminator.
    """

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    gradient_weight: float = 0.5
    temporal_weight: float = 0.5
    kl_weight: float = 1e-6
    outlier_weight: float = 1.0
    outlier_r: float = 3.0
    adversarial_weight: float = 0.1
    adaptive_adversarial: bool = True
    disc_start_step: int = 2000
    disc_channels: int = 32
    disc_layers: int = 3

    def __post_init__(self) -> None:
        for name in (
            "l1_weight", "l2_weight", "gradient_weight", "temporal_weight", "kl_weight", "outlier_weight", "adversarial_weight"
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.outlier_r <= 0:
            raise ValueError(f"outlier_r must be > 0, got {self.outlier_r}.")
        if self.disc_start_step < 0:
            raise ValueError(f"disc_start_step must be >= 0, got {self.disc_start_step}.")
        if self.disc_channels < 1 or self.disc_layers < 1:
            raise ValueError(
                f"disc_channels and disc_layers must be >= 1, got {self.disc_channels} and {self.disc_layers}."
            )


# The autoencoder's optimizer defaults (`avtrain.optim.OptimConfig`; a config's `model.optimizer`
# section overrides fields of it): AdamW for the autoencoder, (0.5, 0.9) betas for the
# discriminator as usual for GANs, both on a warm-up then a cosine to 10% by `trainer.max_steps`.
# `grad_clip` lives here because manual optimization leaves the Trainer's gradient_clip_val unused.
VAE_OPTIMIZER = OptimConfig(
    lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, warmup_steps=50, warmup_start_factor=None, schedule="cosine",
    min_lr_ratio=0.1, grad_clip=1.0, disc_lr=2e-4, disc_betas=(0.5, 0.9), disc_follows_schedule=True,
)


# Named architectures. `small` is the embedded default (trained on the synthetic clips on a CPU),
# `debug` is for tests, the `tae_*` sizes are for GPUs.
PRESETS: dict[str, VAEConfig] = {
    "debug": VAEConfig(
        temporal_compression=4, spatial_compression=8, latent_channels=4, patch_size=2,
        channels=(8, 8, 8), blocks_per_level=1,
    ),
    "small": VAEConfig(
        temporal_compression=4, spatial_compression=8, latent_channels=8, patch_size=2,
        channels=(16, 32, 64), blocks_per_level=1, input_chroma_gain=3.0,
    ),
    "tae_16ch": VAEConfig(
        temporal_compression=4, spatial_compression=8, latent_channels=16, patch_size=1,
        channels=(128, 256, 512, 512), blocks_per_level=2, mid_attention=True,
    ),
    "tae_16ch_t8": VAEConfig(
        temporal_compression=8, spatial_compression=8, latent_channels=16, patch_size=1,
        channels=(128, 256, 512, 512), blocks_per_level=2, mid_attention=True,
    ),
    "tae_16ch_s16": VAEConfig(
        temporal_compression=4, spatial_compression=16, latent_channels=16, patch_size=2,
        channels=(128, 256, 512, 512), blocks_per_level=2, mid_attention=True,
    ),
}


def get_preset(name: str, **overrides: Any) -> VAEConfig:
    """Return a copy of a named architecture with fields overridden.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown video autoencoder preset {name!r}; choose one of {sorted(PRESETS)}.")
    return replace(PRESETS[name], **overrides)


__all__ = ["VAEConfig", "ChunkConfig", "LossConfig", "PRESETS", "VAE_OPTIMIZER", "get_preset"]
