"""The `AudioCodec` interface: waveform <-> continuous latents (and discrete codes).

Every audio tokenizer of the project implements this class (as audiocraft's `CompressionModel`);
the generator sees audio only through it. The base class owns what is the same for every codec:
input checks and conversion, chunked processing of long audio, the latent statistics used to
normalize latents for the generator, the fingerprint and the checkpoint file. A codec implements
the per-chunk transforms and the quantizer.

Shapes: B batch, C audio channels, S samples, D latent channels, T latent frames
(T = ceil(S / hop_length)), K codebooks.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import nn

from audio_codec.chunking import chunked_apply
from avio import atomic_path

logger = logging.getLogger("audio_codec")

CHECKPOINT_FORMAT = "avgen-audio-codec"
CHECKPOINT_VERSION = 1


class CodecInputError(ValueError):
    """Audio, latents or codes given to a codec that it cannot process; the message says why."""


class AudioCodec(nn.Module, abc.ABC):
    """Abstract audio codec: `encode(wav (B, C, S)) -> z (B, D, T)`, `decode(z) -> wav`.

    Subclasses implement `_encode_chunk`, `_decode_chunk`, `encode_codes`, `decode_codes`,
    `config_dict` and the architecture properties, and call `_init_latent_stats(latent_dim)` in
    their constructor.
    """

    codec_type: str = "abstract"
    # Buffers registered by `_init_latent_stats` (declared for type checkers).
    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    latent_stats_frames: torch.Tensor

    # -- architecture (implemented by subclasses) -------------------------------------------------
    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """Audio sample rate in Hz."""

    @property
    @abc.abstractmethod
    def channels(self) -> int:
        """Audio channels (1 mono, 2 stereo)."""

    @property
    @abc.abstractmethod
    def hop_length(self) -> int:
        """Audio samples per latent frame."""

    @property
    @abc.abstractmethod
    def latent_dim(self) -> int:
        """Channels D of the continuous latents."""

    @property
    def chunk_frames(self) -> int:
        """Latent frames per chunk for long audio (0: never chunk)."""
        return 0

    @property
    def overlap_frames(self) -> int:
        """Latent frames shared by consecutive chunks."""
        return 0

    @property
    def edge_frames(self) -> int:
        """Latent frames at an inner chunk edge that the receptive field corrupts; the blend drops them."""
        return 0

    @abc.abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """The architecture as a plain dict; `load_codec` rebuilds the codec from it."""

    @abc.abstractmethod
    def _encode_chunk(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, C, S) with S a multiple of hop_length -> (B, D, S / hop_length)."""

    @abc.abstractmethod
    def _decode_chunk(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, T) -> (B, C, T * hop_length)."""

    @abc.abstractmethod
    def encode_codes(self, wav: torch.Tensor, bandwidth: float | None = None, *,
                     sample_rate: int | None = None) -> torch.Tensor:
        """Discrete codes (B, K, T) int64 of `wav` (B, C, S) at `bandwidth` kbps (None: the highest)."""

    @abc.abstractmethod
    def decode_codes(self, codes: torch.Tensor, *, length: int | None = None) -> torch.Tensor:
        """Waveform (B, C, T * hop_length) (or `length` samples) from codes (B, K, T)."""

    # -- derived properties ---------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def device(self) -> torch.device:
        """Device of the codec's parameters."""
        return next(self.parameters()).device

    def num_frames(self, num_samples: int) -> int:
        """Latent frames T produced for `num_samples` audio samples."""
        return math.ceil(num_samples / self.hop_length)

    # -- input checks and conversion --------------------------------------------------------------
    def prepare_audio(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> torch.Tensor:
        """Check `wav` (B, C, S), convert it to the codec's rate and channels, pad to whole frames.

        Args:
            wav: float waveform (B, C, S) in [-1, 1], torch tensor or numpy array.
            sample_rate: rate of `wav` in Hz; None means it is already `self.sample_rate`.

        Returns:
            float32 (B, self.channels, T * hop_length) on the codec's device, zero-padded at the end.

        Raises:
            CodecInputError: wrong type, shape or dtype; empty, NaN/inf or too short audio; a
                channel count that cannot be converted; an invalid sample rate.
        """
        if isinstance(wav, np.ndarray):
            wav = torch.from_numpy(wav)
        if not isinstance(wav, torch.Tensor):
            raise CodecInputError(f"wav must be a torch.Tensor of shape (B, C, S), got {type(wav).__name__}.")
        return self._prepare_tensor(wav, sample_rate)

    def _prepare_tensor(self, wav: torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        if wav.dim() != 3:
            hint = " For one clip (C, S) pass wav[None]." if wav.dim() == 2 else ""
            raise CodecInputError(f"wav must have shape (B, C, S) (batch, channels, samples), got {tuple(wav.shape)}.{hint}")
        if not wav.is_floating_point():
            raise CodecInputError(
                f"wav must be float audio in [-1, 1], got dtype {wav.dtype}; convert 16-bit PCM with wav.float() / 32768."
            )
        if wav.numel() == 0:
            raise CodecInputError(f"wav is empty (shape {tuple(wav.shape)}); give at least one sample per channel.")
        wav = wav.to(device=self.device, dtype=torch.float32)
        bad = (~torch.isfinite(wav)).sum().item()
        if bad:
            raise CodecInputError(
                f"wav contains {bad} NaN or infinite samples out of {wav.numel()}; clean the audio or re-decode the file."
            )
        rate = self.sample_rate if sample_rate is None else sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
            raise CodecInputError(f"sample_rate must be a positive integer number of Hz, got {sample_rate!r}.")
        peak = wav.abs().max().item()
        if peak > 2.0:
            logger.warning("audio peaks at %.3g, far outside [-1, 1]; is it unnormalized PCM?", peak)
        wav = self._convert_channels(wav)
        if rate != self.sample_rate:
            self._note_once(f"rate{rate}", "resampling audio from %d Hz to the codec's %d Hz (torchaudio)",
                            rate, self.sample_rate)
            wav = torchaudio.functional.resample(wav, int(rate), self.sample_rate)
        length = wav.shape[-1]
        if length < self.hop_length:
            raise CodecInputError(
                f"wav has {length} samples ({1000 * length / self.sample_rate:.2f} ms at {self.sample_rate} Hz) but "
                f"the codec needs at least one latent frame of {self.hop_length} samples "
                f"({1000 * self.hop_length / self.sample_rate:.2f} ms); pad the audio or give a longer clip."
            )
        pad = self.num_frames(length) * self.hop_length - length
        return torch.nn.functional.pad(wav, (0, pad))  # (B, C, T * hop)

    def _convert_channels(self, wav: torch.Tensor) -> torch.Tensor:
        """Downmix to mono or duplicate mono to stereo, with a logged note."""
        c = wav.shape[1]
        if c == self.channels:
            return wav
        if self.channels == 1:
            self._note_once(f"ch{c}", "downmixing %d-channel audio to mono", c)
            return wav.mean(dim=1, keepdim=True)
        if c == 1:
            self._note_once("ch1", "duplicating mono audio to %d channels", self.channels)
            return wav.repeat(1, self.channels, 1)
        raise CodecInputError(
            f"wav has {c} channels but the codec takes {self.channels}; only mono input can be duplicated. "
            f"Downmix or pick channels first (e.g. wav[:, :{self.channels}])."
        )

    def _note_once(self, key: str, message: str, *args: Any) -> None:
        seen: set[str] = self.__dict__.setdefault("_notes_seen", set())
        if key not in seen:
            seen.add(key)
            logger.warning(message, *args)

    def _check_latents(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            raise CodecInputError(f"latents must be a torch.Tensor of shape (B, D, T), got {type(z).__name__}.")
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise CodecInputError(
                f"latents must have shape (B, {self.latent_dim}, T) for this codec (latent_dim {self.latent_dim}), "
                f"got {tuple(z.shape)}; were they made by another codec?"
            )
        if z.shape[0] == 0 or z.shape[2] == 0:
            raise CodecInputError(f"latents are empty (shape {tuple(z.shape)}).")
        if not z.is_floating_point():
            raise CodecInputError(f"latents must be floating point, got {z.dtype}.")
        z = z.to(device=self.device, dtype=torch.float32)
        if not torch.isfinite(z).all():
            raise CodecInputError("latents contain NaN or infinite values.")
        return z

    # -- the interface ------------------------------------------------------------------------------
    def encode(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None, *,
               chunked: bool | None = None, progress: bool = False) -> torch.Tensor:
        """Continuous latents of a waveform (the encoder output, before quantization).

        Args:
            wav: (B, C, S) float audio in [-1, 1]. Other rates and channel counts are converted.
            sample_rate: rate of `wav` in Hz (None: the codec's rate).
            chunked: process in overlapping chunks (None: only when longer than one chunk).
            progress: show a progress bar over chunks.

        Returns:
            z (B, D, T) float32 with T = ceil(S' / hop_length), S' the length at the codec's rate.
        """
        x = self.prepare_audio(wav, sample_rate)  # (B, C, T * hop)
        frames = x.shape[-1] // self.hop_length
        if self._use_chunks(frames, chunked):
            return chunked_apply(x, self._encode_chunk, in_chunk=self.chunk_frames * self.hop_length,
                                 in_overlap=self.overlap_frames * self.hop_length, scale=-self.hop_length,
                                 in_margin=self.edge_frames * self.hop_length, progress=progress,
                                 desc="encode")  # (B, D, T)
        return self._encode_chunk(x)  # (B, D, T)

    def decode(self, z: torch.Tensor, *, length: int | None = None, chunked: bool | None = None,
               progress: bool = False) -> torch.Tensor:
        """Waveform from continuous latents.

        Args:
            z: (B, D, T) latents (not normalized; see `denormalize`).
            length: trim the output to this many samples (<= T * hop_length).
            chunked: process in overlapping chunks (None: only when longer than one chunk).
            progress: show a progress bar over chunks.

        Returns:
            (B, C, T * hop_length) float32, or (B, C, length).
        """
        z = self._check_latents(z)
        frames = z.shape[-1]
        if self._use_chunks(frames, chunked):
            wav = chunked_apply(z, self._decode_chunk, in_chunk=self.chunk_frames, in_overlap=self.overlap_frames,
                                scale=self.hop_length, in_margin=self.edge_frames, progress=progress,
                                desc="decode")  # (B, C, T * hop)
        else:
            wav = self._decode_chunk(z)  # (B, C, T * hop)
        return self._trim(wav, length)

    def _trim(self, wav: torch.Tensor, length: int | None) -> torch.Tensor:
        if length is None:
            return wav
        if not 0 < length <= wav.shape[-1]:
            raise CodecInputError(f"length must lie in [1, {wav.shape[-1]}] samples for these latents, got {length}.")
        return wav[..., :length]

    def _use_chunks(self, frames: int, chunked: bool | None) -> bool:
        if chunked is False or self.chunk_frames <= 0:
            if chunked:
                raise CodecInputError("this codec has chunking turned off (chunk_seconds: null).")
            return False
        return frames > self.chunk_frames

    # -- latent statistics ----------------------------------------------------------------------------
    def _init_latent_stats(self, dim: int) -> None:
        self.register_buffer("latent_mean", torch.zeros(dim))
        self.register_buffer("latent_std", torch.ones(dim))
        # Number of latent frames the statistics were computed on; 0 means "not computed".
        self.register_buffer("latent_stats_frames", torch.zeros((), dtype=torch.long))

    @property
    def has_latent_stats(self) -> bool:
        """Whether per-channel latent statistics have been computed (`avgen codec stats`)."""
        return int(self.latent_stats_frames) > 0

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor, num_frames: int) -> None:
        """Store per-channel latent mean and std (D,) computed over `num_frames` frames."""
        d = self.latent_dim
        if tuple(mean.shape) != (d,) or tuple(std.shape) != (d,):
            raise ValueError(f"latent statistics must have shape ({d},), got mean {tuple(mean.shape)}, std {tuple(std.shape)}.")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("latent statistics contain NaN or infinite values; check the audio they came from.")
        if (std <= 0).any():
            raise ValueError("latent std must be > 0 in every channel; a constant channel needs a floor (see compute_latent_stats).")
        if num_frames <= 0:
            raise ValueError(f"num_frames must be > 0, got {num_frames}.")
        self.latent_mean.copy_(mean.to(self.latent_mean))
        self.latent_std.copy_(std.to(self.latent_std))
        self.latent_stats_frames.fill_(int(num_frames))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """(z - mean) / std per channel: (B, D, T) -> (B, D, T), what the generator trains on."""
        self._warn_without_stats()
        return (z - self.latent_mean[:, None].to(z)) / self.latent_std[:, None].to(z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`: (B, D, T) -> (B, D, T)."""
        self._warn_without_stats()
        return z * self.latent_std[:, None].to(z) + self.latent_mean[:, None].to(z)

    def _warn_without_stats(self) -> None:
        if not self.has_latent_stats:
            self._note_once("nostats", "this codec has no latent statistics, so normalize/denormalize are the "
                            "identity; compute them with `avgen codec stats`")

    # -- identity and files ----------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """Hash (16 hex digits) of the codec type, config, weights and latent statistics.

        Recomputed on every access (a few ms for small codecs) so it always matches the weights.
        """
        h = hashlib.sha256()
        h.update(json.dumps({"type": self.codec_type, "config": self.config_dict()}, sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:16]

    def save(self, path: str | Path, **meta: Any) -> Path:
        """Write the codec (type, config, weights, latent statistics, `meta`) to one `.pt` file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "codec_type": self.codec_type,
            "config": self.config_dict(),
            "state_dict": state,
            "meta": {"fingerprint": self.fingerprint, **meta},
        }
        with atomic_path(path) as tmp:  # a crash never leaves a half-written codec behind
            torch.save(payload, tmp)
        return path

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, channels={self.channels}, hop_length={self.hop_length}, "
                f"frame_rate={self.frame_rate:g}, latent_dim={self.latent_dim}")
