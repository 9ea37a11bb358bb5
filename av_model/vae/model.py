"""The video autoencoder: a factorized ("2.5D") convolutional VAE over clips, as in Movie Gen's TAE.

Shapes (B batch, T frames, H x W pixels, tc / sc the temporal / spatial compression, C latent channels):
    encode: (B, 3, T, H, W) in [-1, 1]  ->  (B, C, T / tc, H / sc, W / sc)
    decode: (B, C, T', H', W')          ->  (B, 3, T' * tc, H' * sc, W' * sc) in about [-1, 1]

T must be 1 (an image) or a multiple of tc. An image is encoded as the still clip of tc copies of
it, so it gets one latent frame from the same weights that encode videos; `decode(z,
num_frames=1)` turns that latent frame back into one image.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from avio import atomic_path

from .chunking import WindowAxis, blend_windows, count_windows
from .config import ChunkConfig, VAEConfig
from .layers import (
    ChannelNormAct,
    Downsample,
    FactorizedConv,
    ResBlock,
    SpatialAttention,
    Upsample,
    depth_to_space,
    scale_chroma,
    space_to_depth,
)

# The file `save` writes and `io.load_video_autoencoder` reads (see io.py for its layout).
FORMAT = "avgen.video_autoencoder"
VERSION = 1


class Encoder(nn.Module):
    """`(B, 3, T, H, W) -> (B, 2C, T / tc, H / sc, W / sc)`: the posterior's mean and log-variance."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        p, tp, ch = cfg.patch_size, cfg.temporal_patch, cfg.channels
        self.patch, self.temporal_patch = p, tp
        self.chroma_gain = cfg.input_chroma_gain
        self.conv_in = FactorizedConv(3 * tp * p * p, ch[0])
        self.levels = nn.ModuleList()
        for i, c in enumerate(ch):
            level = nn.Sequential(*[ResBlock(c, c) for _ in range(cfg.blocks_per_level)])
            if i < len(ch) - 1:
                # Time is halved at the first steps, where it saves the most compute.
                level.append(Downsample(c, ch[i + 1], temporal=i < cfg.num_temporal_down, shortcut=cfg.shortcut))
            self.levels.append(level)
        mid: list[nn.Module] = [ResBlock(ch[-1], ch[-1])]
        if cfg.mid_attention:
            mid.append(SpatialAttention(ch[-1]))
        mid.append(ResBlock(ch[-1], ch[-1]))
        self.mid = nn.Sequential(*mid)
        self.norm_out = ChannelNormAct(ch[-1])
        self.conv_out = FactorizedConv(ch[-1], 2 * cfg.latent_channels)
        # The posterior starts nearly deterministic (std e^-4 ~ 0.02). With the usual log-variance
        # of 0, unit-variance noise drowns the young latents and the decoder learns to ignore
        # them; Adam would need thousands of steps to walk the log-variance down.
        bias = self.conv_out.spatial.bias
        assert bias is not None
        with torch.no_grad():
            c = cfg.latent_channels
            self.conv_out.spatial.weight[c:] *= 0.1
            bias[c:] = -8.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.chroma_gain != 1.0:
            x = scale_chroma(x, self.chroma_gain)  # (B, 3, T, H, W), hue weighed up against brightness
        h = space_to_depth(x, self.temporal_patch, self.patch)  # (B, 3 tp p², T/tp, H/p, W/p)
        h = self.conv_in(h)  # (B, ch0, T/tp, H/p, W/p)
        for level in self.levels:
            h = level(h)  # (B, ch_i+1, T/2^k, H/(p 2^i), ...) after each downsampling
        h = self.mid(h)  # (B, ch_last, T', H', W')
        return self.conv_out(self.norm_out(h))  # (B, 2C, T', H', W')


class Decoder(nn.Module):
    """`(B, C, T', H', W') -> (B, 3, T' * tc, H' * sc, W' * sc)`."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        p, tp, ch = cfg.patch_size, cfg.temporal_patch, cfg.channels
        self.patch, self.temporal_patch = p, tp
        self.conv_in = FactorizedConv(cfg.latent_channels, ch[-1])
        mid: list[nn.Module] = [ResBlock(ch[-1], ch[-1])]
        if cfg.mid_attention:
            mid.append(SpatialAttention(ch[-1]))
        mid.append(ResBlock(ch[-1], ch[-1]))
        self.mid = nn.Sequential(*mid)
        self.levels = nn.ModuleList()
        for i in reversed(range(len(ch))):
            # One more block than the encoder: decoding is the harder half (as in SD's VAE).
            level = nn.Sequential(*[ResBlock(ch[i], ch[i]) for _ in range(cfg.blocks_per_level + 1)])
            if i > 0:
                level.append(Upsample(ch[i], ch[i - 1], temporal=i - 1 < cfg.num_temporal_down, shortcut=cfg.shortcut))
            self.levels.append(level)
        self.norm_out = ChannelNormAct(ch[0])
        self.conv_out = FactorizedConv(ch[0], 3 * tp * p * p)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))  # (B, ch_last, T', H', W')
        for level in self.levels:
            h = level(h)  # up to (B, ch0, T/tp, H/p, W/p)
        h = self.conv_out(self.norm_out(h))  # (B, 3 tp p², T/tp, H/p, W/p)
        return depth_to_space(h, self.temporal_patch, self.patch)  # (B, 3, T, H, W)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the final spatial convolution (the adaptive GAN weight measures gradients here)."""
        return self.conv_out.spatial.weight


@dataclass
class AutoencoderOutput:
    """Result of a training forward pass.

    Attributes:
        recon: reconstruction `(B, 3, T, H, W)`.
        z: the latent fed to the decoder `(B, C, T', H', W')` (a sample, or the mean).
        mean: posterior mean `(B, C, T', H', W')`.
        logvar: posterior log-variance `(B, C, T', H', W')`.
    """

    recon: torch.Tensor
    z: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor


@contextmanager
def _window_progress(
    shape: torch.Size, axes: list[WindowAxis], enabled: bool, desc: str
) -> Iterator[Callable[[int], object] | None]:
    """A tqdm bar over the windows of a chunked pass (None when disabled or for a single window)."""
    total = count_windows(shape, axes)
    if not enabled or total <= 1:
        yield None
        return
    with tqdm(total=total, desc=f"{desc} windows", unit="window", leave=False) as bar:
        yield bar.update


class VideoAutoencoder(nn.Module):
    """Factorized temporal autoencoder for videos and images (see the module docstring for shapes).

    Args:
        config: the architecture; `VAEConfig()` or `get_preset(name)`.
    """

    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    latent_stats_set: torch.Tensor

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else VAEConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        c = self.config.latent_channels
        # Per-channel statistics of the latents over training data, set at the end of training;
        # the generator works on `normalize(z)`, which has zero mean and unit variance per channel.
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        self.register_buffer("latent_stats_set", torch.tensor(False))
        # Free-form provenance (training data, steps, quality numbers) kept in the saved file.
        self.metadata: dict[str, object] = {}

    # ----------------------------------------------------------------------------------- geometry
    @property
    def temporal_compression(self) -> int:
        return self.config.temporal_compression

    @property
    def spatial_compression(self) -> int:
        return self.config.spatial_compression

    @property
    def latent_dim(self) -> int:
        """Channels of the latent."""
        return self.config.latent_channels

    def latent_frame_rate(self, fps: float) -> float:
        """Latent frames per second for a clip at `fps` frames per second."""
        return float(fps) / self.temporal_compression

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """`(C, T', H', W')` of the latent of a clip of this size (validated like `encode`)."""
        self._check_geometry(num_frames, height, width)
        tc, sc = self.temporal_compression, self.spatial_compression
        return (self.latent_dim, max(1, num_frames // tc), height // sc, width // sc)

    def _check_geometry(self, t: int, h: int, w: int) -> None:
        tc, sc = self.temporal_compression, self.spatial_compression
        if t != 1 and t % tc:
            lo, hi = t // tc * tc, (t // tc + 1) * tc
            raise ValueError(
                f"cannot encode {t} frames: the temporal compression is {tc}, so a clip needs 1 frame "
                f"(an image) or a multiple of {tc} frames; use {lo or tc} or {hi} frames "
                f"(av_model.vae.files.pad_clip repeats the last frame)."
            )
        if h % sc or w % sc or h == 0 or w == 0:
            raise ValueError(
                f"cannot encode {h}x{w} frames: height and width must be positive multiples of the "
                f"spatial compression {sc}; resize, crop, or pad with av_model.vae.files.pad_clip."
            )

    def _check_pixels(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor of shape (B, 3, T, H, W), got {type(x).__name__}.")
        if x.ndim != 5 or x.shape[1] != 3:
            hint = ""
            if x.ndim == 4 and x.shape[1] == 3:
                hint = " For images (B, 3, H, W) use x[:, :, None]; for one clip (3, T, H, W) use x[None]."
            elif x.ndim == 5 and x.shape[-1] == 3:
                hint = " Frames look channels-last (B, T, H, W, 3): use x.permute(0, 4, 1, 2, 3)."
            raise ValueError(f"expected pixels of shape (B, 3, T, H, W), got {tuple(x.shape)}.{hint}")
        if not x.is_floating_point():
            raise ValueError(
                f"expected float pixels in [-1, 1], got dtype {x.dtype}; convert uint8 frames with "
                f"x.float() / 127.5 - 1."
            )
        self._check_geometry(x.shape[2], x.shape[3], x.shape[4])

    def _check_num_frames(self, z: torch.Tensor, num_frames: int | None) -> None:
        full = z.shape[2] * self.temporal_compression
        if num_frames not in (None, 1, full):
            raise ValueError(
                f"num_frames must be None, 1 (images) or {full} for {z.shape[2]} latent frames, got {num_frames}."
            )
        if num_frames == 1 and z.shape[2] != 1:
            raise ValueError(f"num_frames=1 decodes image latents with one latent frame, got {z.shape[2]}.")

    def _check_latent(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor) or z.ndim != 5 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"expected latents of shape (B, {self.latent_dim}, T', H', W') for this autoencoder "
                f"({self.latent_dim} latent channels), got {shape}."
            )

    # ------------------------------------------------------------------------- encode and decode
    def moments(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior parameters `(B, 2C, T', H', W')` (mean then log-variance) of pixels `(B, 3, T, H, W)`."""
        self._check_pixels(x)
        if x.shape[2] == 1 and self.temporal_compression > 1:
            x = x.expand(-1, -1, self.temporal_compression, -1, -1)  # an image is a still clip
        return self.encoder(x.to(self._dtype()))

    def _split(self, moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = moments.float().chunk(2, dim=1)  # each (B, C, T', H', W')
        return mean, logvar.clamp(self.config.logvar_min, self.config.logvar_max)

    def _latent(self, moments: torch.Tensor, sample: bool, generator: torch.Generator | None) -> torch.Tensor:
        mean, logvar = self._split(moments)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + noise * (0.5 * logvar).exp()

    def encode(
        self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Encode pixels `(B, 3, T, H, W)` in [-1, 1] to latents `(B, C, T', H', W')` (float32).

        Args:
            x: T = 1 (images) or a multiple of the temporal compression; H, W multiples of the
                spatial compression.
            sample: draw from the posterior instead of taking its mean.
            generator: random generator for `sample=True`.
        """
        return self._latent(self.moments(x), sample, generator)

    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Decode latents `(B, C, T', H', W')` to pixels `(B, 3, T, H, W)` (float32, about [-1, 1]).

        Args:
            z: un-normalized latents (apply `denormalize` first to the generator's output).
            num_frames: None gives T' * tc frames; 1 decodes image latents (T' must be 1).
        """
        self._check_latent(z)
        self._check_num_frames(z, num_frames)
        x = self.decoder(z.to(self._dtype())).float()  # (B, 3, T' tc, H, W)
        if num_frames == 1:
            x = x.mean(dim=2, keepdim=True)  # the still clip's frames all estimate the image
        return x

    def forward(
        self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> AutoencoderOutput:
        """Training pass: encode, sample the posterior, decode. Shapes as in `encode`/`decode`."""
        moments = self.moments(x)  # (B, 2C, T', H', W')
        mean, logvar = self._split(moments)
        z = self._latent(moments, sample, generator)  # (B, C, T', H', W')
        recon = self.decoder(z.to(self._dtype()))  # (B, 3, T, H, W) (tc frames for an image)
        if x.shape[2] == 1:
            recon = recon.mean(dim=2, keepdim=True)
        return AutoencoderOutput(recon=recon, z=z, mean=mean, logvar=logvar)

    # -------------------------------------------------------------------------------- chunking
    def _axes(self, chunks: ChunkConfig, encoding: bool) -> list[WindowAxis]:
        chunks.check(self.temporal_compression, self.spatial_compression)
        tc, sc = self.temporal_compression, self.spatial_compression
        axes: list[WindowAxis] = []
        if chunks.chunk_frames is not None:
            if encoding:
                axes.append(WindowAxis(2, chunks.chunk_frames, chunks.overlap_frames, tc, 1, tc))
            else:
                axes.append(WindowAxis(2, chunks.chunk_frames // tc, chunks.overlap_frames // tc, 1, tc, 1))
        if chunks.tile_size is not None:
            for dim in (3, 4):
                if encoding:
                    axes.append(WindowAxis(dim, chunks.tile_size, chunks.tile_overlap, sc, 1, sc))
                else:
                    axes.append(WindowAxis(dim, chunks.tile_size // sc, chunks.tile_overlap // sc, 1, sc, 1))
        return axes

    def encode_chunked(
        self,
        x: torch.Tensor,
        chunks: ChunkConfig | None = None,
        sample: bool = False,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """`encode` in overlapping temporal chunks and spatial tiles, blended; memory bounded by the window.

        Args:
            x: pixels `(B, 3, T, H, W)`, validated as in `encode`.
            chunks: window sizes (default `ChunkConfig()`: 32-frame chunks, 8 frames of overlap).
            sample: draw from the posterior instead of taking its mean.
            generator: random generator for `sample=True`.
            progress: show a progress bar over the windows.
        Returns:
            latents `(B, C, T', H', W')`, matching `encode(x)` up to the blending at the seams.
        """
        self._check_pixels(x)
        chunks = chunks if chunks is not None else ChunkConfig()
        if x.shape[2] == 1:  # an image has one frame: tile it in space only
            chunks = ChunkConfig(chunk_frames=None, tile_size=chunks.tile_size, tile_overlap=chunks.tile_overlap)
        axes = self._axes(chunks, encoding=True)
        with _window_progress(x.shape, axes, progress, "encode") as bar:
            moments = blend_windows(self.moments, x, axes, bar)  # (B, 2C, T', H', W')
        return self._latent(moments, sample, generator)

    def decode_chunked(
        self,
        z: torch.Tensor,
        chunks: ChunkConfig | None = None,
        num_frames: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """`decode` in overlapping latent windows, blended in pixel space. Shapes as in `decode`."""
        self._check_latent(z)
        self._check_num_frames(z, num_frames)
        chunks = chunks if chunks is not None else ChunkConfig()
        frames = None
        if num_frames == 1:  # an image has one latent frame: tile it in space only
            chunks = ChunkConfig(chunk_frames=None, tile_size=chunks.tile_size, tile_overlap=chunks.tile_overlap)
            frames = 1
        axes = self._axes(chunks, encoding=False)
        with _window_progress(z.shape, axes, progress, "decode") as bar:
            return blend_windows(lambda w: self.decode(w, frames), z, axes, bar)  # (B, 3, T, H, W)

    # ------------------------------------------------------------------------ latent statistics
    @property
    def has_latent_stats(self) -> bool:
        """Whether `latent_mean`/`latent_std` were measured (else they are 0 and 1)."""
        return bool(self.latent_stats_set)

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel latent statistics `(C,)` used by `normalize`/`denormalize`."""
        c = self.latent_dim
        if mean.shape != (c,) or std.shape != (c,):
            raise ValueError(f"latent mean and std must have shape ({c},), got {tuple(mean.shape)} and {tuple(std.shape)}.")
        if not bool((std > 0).all()) or not bool(torch.isfinite(mean).all()):
            raise ValueError("latent std must be positive and mean finite.")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)
        self.latent_stats_set.fill_(True)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """`(z - mean) / std` per channel, `(B, C, T', H', W') -> same`."""
        self._check_latent(z)
        shape = (1, -1, 1, 1, 1)
        return (z - self.latent_mean.view(shape)) / self.latent_std.view(shape)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`."""
        self._check_latent(z)
        shape = (1, -1, 1, 1, 1)
        return z * self.latent_std.view(shape) + self.latent_mean.view(shape)

    def _dtype(self) -> torch.dtype:
        return self.encoder.conv_in.spatial.weight.dtype

    # ---------------------------------------------------------------------------- persistence
    @property
    def fingerprint(self) -> str:
        """sha256 (first 16 hex characters) of the config, every weight and the latent statistics.

        Two autoencoders with equal fingerprints produce the same latents, so latent caches and
        encoded files record it and refuse latents from another autoencoder.
        """
        h = hashlib.sha256()
        h.update(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(name.encode())
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            # Viewing as bytes hashes bf16 and bool tensors too (numpy has no bf16).
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | os.PathLike[str], metadata: dict[str, object] | None = None) -> Path:
        """Write a single `.pt` file that `load_video_autoencoder` reads (config, weights, statistics),
        atomically (a half-written file never replaces a good one)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.to_dict(),
            "state_dict": {k: v.detach().to("cpu").clone() for k, v in self.state_dict().items()},
            "fingerprint": self.fingerprint,
            "metadata": dict((metadata if metadata is not None else self.metadata) or {}),
        }
        with atomic_path(out) as tmp:
            torch.save(payload, tmp)
        return out
