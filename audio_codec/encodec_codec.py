"""`EncodecCodec`: Meta's EnCodec (SEANet encoder/decoder + residual VQ) behind `AudioCodec`.

The network is the `encodec` package's own `EncodecModel` built from a `CodecConfig`, kept as the
submodule `model`, so the official checkpoints load into it unchanged. Continuous latents are the
SEANet encoder output before quantization; discrete codes come from the residual vector quantizer
applied to those latents frame by frame (so chunked encoding serves both).

Codecs trained with loudness normalization (EnCodec 48 kHz) scale every chunk to unit RMS before
the encoder; here the log of that scale is carried as one extra latent channel (the last one),
repeated over the chunk's frames, so `decode(encode(x))` restores the loudness and the generator
sees it like any other channel.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from encodec.model import EncodecModel
from encodec.modules import SEANetDecoder, SEANetEncoder
from encodec.quantization import ResidualVectorQuantizer
from torch import nn

from audio_codec.base import AudioCodec, CodecInputError, logger
from audio_codec.config import CodecConfig, get_preset
from audio_codec.pretrained import find_official_checkpoint, load_official_state_dict


class CheckpointMismatchError(ValueError):
    """Weights that belong to another architecture than the codec they are loaded into."""


@dataclass
class CodecOutput:
    """What one training forward pass returns.

    Attributes:
        audio: reconstruction (B, C, S).
        latents: continuous encoder output (B, D, T) (the main channels, without a scale channel).
        quantized: what the decoder received (B, D, T): quantized latents, or `latents` when the
            quantizer was bypassed.
        commit_loss: scalar commitment loss (0 when bypassed).
        n_q: codebooks used (0: bypassed).
    """

    audio: torch.Tensor
    latents: torch.Tensor
    quantized: torch.Tensor
    commit_loss: torch.Tensor
    n_q: int


@contextlib.contextmanager
def quiet_weight_norm() -> Iterator[None]:
    """Silence the deprecation warning of `torch.nn.utils.weight_norm` while building encodec modules.

    encodec uses the old weight norm; it is kept because the official checkpoints store its
    `weight_g` / `weight_v` names.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*")
        yield


def build_encodec_model(cfg: CodecConfig) -> EncodecModel:
    """The `encodec` package's model for `cfg` (the one place where a config becomes modules)."""
    seanet: dict[str, Any] = dict(
        channels=cfg.channels, dimension=cfg.dimension, n_filters=cfg.n_filters,
        n_residual_layers=cfg.n_residual_layers, ratios=list(cfg.ratios), norm=cfg.norm,
        kernel_size=cfg.kernel_size, last_kernel_size=cfg.last_kernel_size,
        residual_kernel_size=cfg.residual_kernel_size, dilation_base=cfg.dilation_base, causal=cfg.causal,
        pad_mode=cfg.pad_mode, true_skip=cfg.true_skip, compress=cfg.compress, lstm=cfg.lstm_layers,
    )
    with quiet_weight_norm():
        encoder = SEANetEncoder(**seanet)
        decoder = SEANetDecoder(**seanet)
    quantizer = ResidualVectorQuantizer(dimension=cfg.dimension, n_q=cfg.n_q, bins=cfg.bins,
                                        kmeans_init=cfg.kmeans_init)
    return EncodecModel(encoder, decoder, quantizer, target_bandwidths=list(cfg.target_bandwidths),
                        sample_rate=cfg.sample_rate, channels=cfg.channels, normalize=cfg.audio_normalize,
                        segment=None, name=cfg.name)


def init_seanet_weights(module: nn.Module, gain: float = 1.0) -> None:
    """Variance-preserving initialization of every (transposed) convolution of a SEANet.

    PyTorch's default convolution init (kaiming uniform with a = sqrt(5)) shrinks the signal by
    about 1.7x per layer; through the dozen layers of a SEANet encoder the latents of a fresh model
    hardly depend on the input (measured: input std 0.16 -> latent std 0.003), the decoder then
    learns one input-independent output and a short training run never recovers. Here weights are
    drawn with std gain / sqrt(fan_in) (for a transposed convolution, the fan-in of one output
    sample: in_channels * kernel / stride) and biases start at zero. With weight norm, the
    direction `weight_v` takes the draw and the gain `weight_g` its norm, so the effective weight
    is the draw itself. Loading pretrained weights replaces all of this.
    """
    for m in module.modules():
        if not isinstance(m, nn.Conv1d | nn.ConvTranspose1d):
            continue
        k = m.kernel_size[0]
        fan_in = m.in_channels * k // m.groups
        if isinstance(m, nn.ConvTranspose1d):
            fan_in = max(1, fan_in // m.stride[0])
        with torch.no_grad():
            target: torch.Tensor = getattr(m, "weight_v", m.weight)
            draw = torch.randn_like(target) * (gain / math.sqrt(fan_in))
            target.copy_(draw)
            if hasattr(m, "weight_g"):
                gain_param = m.weight_g  # a Parameter (weight norm adds it to the module)
                gain_param.copy_(torch.norm_except_dim(draw, 2, 0))  # type: ignore[operator]
            if m.bias is not None:
                m.bias.zero_()


class EncodecCodec(AudioCodec):
    """EnCodec as an `AudioCodec`.

    Args:
        config: architecture; None builds the `small` preset.
    """

    codec_type = "encodec"

    def __init__(self, config: CodecConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else get_preset("small")
        self.model = build_encodec_model(self.config)
        init_seanet_weights(self.model.encoder)
        init_seanet_weights(self.model.decoder)
        self._init_latent_stats(self.latent_dim)

    # -- construction from weights ------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name: str = "encodec_24khz", weights: str | Path | None = None) -> EncodecCodec:
        """Meta's pretrained EnCodec from a local checkpoint (never downloaded).

        Args:
            name: "encodec_24khz" or "encodec_48khz".
            weights: the official checkpoint file or a folder holding it; None looks in
                `$TORCH_HOME/hub/checkpoints/`.

        Raises:
            PretrainedWeightsError: the file is missing (the message says where to put it) or fails
                its checksum.
            CheckpointMismatchError: the file holds weights of another architecture.
        """
        path = find_official_checkpoint(name, weights)
        codec = cls(get_preset(name))
        codec.load_model_weights(load_official_state_dict(path), source=str(path))
        return codec.eval()

    def load_model_weights(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load an `EncodecModel` state dict, explaining any mismatch with this architecture."""
        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k}: file {tuple(state[k].shape)} vs codec {tuple(v.shape)}"
                  for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
        if missing or unexpected or shapes:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            if shapes:
                parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
            raise CheckpointMismatchError(
                f"{source} does not fit the codec architecture {self.config.name!r} "
                f"({self.sample_rate} Hz, {self.channels} ch, dimension {self.config.dimension}, "
                f"n_filters {self.config.n_filters}): weights " + "; ".join(parts)
                + ". It was made for another architecture: load it with the preset or config it was trained with."
            )
        self.model.load_state_dict(state)

    # -- architecture -------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def latent_dim(self) -> int:
        return self.config.dimension + int(self.config.audio_normalize)

    @property
    def chunk_frames(self) -> int:
        return self.config.chunk_frames

    @property
    def overlap_frames(self) -> int:
        return self.config.overlap_frames

    @property
    def edge_frames(self) -> int:
        return self.config.edge_frames

    @property
    def bandwidths(self) -> list[float]:
        """Bandwidths (kbps) `encode_codes` accepts."""
        return list(self.config.target_bandwidths)

    @property
    def num_codebooks(self) -> int:
        """Codebooks at the highest bandwidth."""
        return self.config.codebooks_for_bandwidth(self.bandwidths[-1])

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def codebooks_for(self, bandwidth: float | None) -> int:
        """Codebooks K used at `bandwidth` kbps (None: the highest), refusing unsupported values."""
        if bandwidth is None:
            return self.num_codebooks
        if not any(math.isclose(bandwidth, b) for b in self.bandwidths):
            raise CodecInputError(f"bandwidth {bandwidth} kbps is not supported by this codec; choose one of {self.bandwidths}.")
        return self.config.codebooks_for_bandwidth(bandwidth)

    # -- continuous path ----------------------------------------------------------------------------
    def _encode_main(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, S) -> latents (B, dimension, T) and log loudness (B, 1, T) or None."""
        log_scale = None
        if self.config.audio_normalize:
            # EnCodec's per-segment normalization: divide by the RMS of the mono mix.
            rms = wav.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()  # (B, 1, 1)
            scale = rms + 1e-8
            wav = wav / scale
            log_scale = scale.log()  # (B, 1, 1)
        z = self.model.encoder(wav)  # (B, dimension, T)
        if log_scale is not None:
            log_scale = log_scale.expand(-1, -1, z.shape[-1])  # (B, 1, T)
        return z, log_scale

    def _decode_main(self, z: torch.Tensor, log_scale: torch.Tensor | None) -> torch.Tensor:
        """Latents (B, dimension, T) and optional log loudness (B, 1, T) -> (B, C, T * hop)."""
        wav = self.model.decoder(z)  # (B, C, T * hop)
        if log_scale is not None:
            wav = wav * log_scale.exp().repeat_interleave(self.hop_length, dim=-1)
        return wav

    def _encode_chunk(self, wav: torch.Tensor) -> torch.Tensor:
        z, log_scale = self._encode_main(wav)  # (B, dimension, T), (B, 1, T) | None
        return z if log_scale is None else torch.cat([z, log_scale], dim=1)  # (B, latent_dim, T)

    def _decode_chunk(self, z: torch.Tensor) -> torch.Tensor:
        if self.config.audio_normalize:
            return self._decode_main(z[:, :-1], z[:, -1:])  # (B, C, T * hop)
        return self._decode_main(z, None)  # (B, C, T * hop)

    def forward(self, wav: torch.Tensor, n_q: int = 0) -> CodecOutput:
        """Training pass on prepared audio (B, C, S), S a multiple of hop_length.

        Args:
            wav: (B, C, S) float audio at the codec's rate and channels.
            n_q: codebooks to quantize with (straight-through gradients, EMA codebook updates in
                training mode); 0 bypasses the quantizer so the decoder learns the continuous
                latents the generator produces.
        """
        z, log_scale = self._encode_main(wav)  # (B, D, T), (B, 1, T) | None
        if n_q > 0:
            quantized, _, losses = self.model.quantizer.vq(z, n_q=n_q)  # (B, D, T), (K, B, T), (K, 1)
            commit = losses.mean()
        else:
            quantized, commit = z, z.new_zeros(())
        audio = self._decode_main(quantized, log_scale)  # (B, C, S)
        return CodecOutput(audio=audio, latents=z, quantized=quantized, commit_loss=commit, n_q=n_q)

    # -- discrete path ------------------------------------------------------------------------------
    def _check_codebooks_ready(self) -> None:
        inited = [layer._codebook.inited for layer in self.model.quantizer.vq.layers]
        if not all(bool(flag.item()) for flag in inited):
            raise CodecInputError(
                "this codec's codebooks were never initialized (k-means runs on the first quantized training "
                "batch); train it with quantize_prob > 0 or load trained weights before using codes."
            )

    def encode_codes(self, wav: torch.Tensor, bandwidth: float | None = None, *, sample_rate: int | None = None,
                     return_scale: bool = False) -> Any:
        """Discrete codes of `wav`.

        Args:
            wav: (B, C, S) float audio.
            bandwidth: kbps, one of `bandwidths` (None: the highest).
            sample_rate: rate of `wav` (None: the codec's).
            return_scale: also return the log loudness (B, T) that codecs with `audio_normalize`
                need to restore the level (None for the others).

        Returns:
            codes (B, K, T) int64, or (codes, log_scale) when `return_scale`.
        """
        n_q = self.codebooks_for(bandwidth)
        self._check_codebooks_ready()
        z = self.encode(wav, sample_rate)  # (B, latent_dim, T)
        main = z[:, : self.config.dimension]  # (B, dimension, T)
        codes = self.model.quantizer.vq.encode(main, n_q=n_q).transpose(0, 1)  # (B, K, T)
        if not return_scale:
            return codes
        return codes, (z[:, -1] if self.config.audio_normalize else None)

    def decode_codes(self, codes: torch.Tensor, *, length: int | None = None,
                     scale: torch.Tensor | None = None) -> torch.Tensor:
        """Waveform (B, C, T * hop_length) (or `length` samples) from codes (B, K, T).

        Args:
            codes: integer codes in [0, bins), K between 1 and the codec's maximum.
            length: trim to this many samples.
            scale: log loudness (B, T) from `encode_codes(..., return_scale=True)` for codecs with
                `audio_normalize`; without it their output has unit RMS.
        """
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise CodecInputError(f"codes must be a tensor of shape (B, K, T), got {shape}.")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise CodecInputError(f"codes must be integers, got dtype {codes.dtype}.")
        b, k, t = codes.shape
        if b == 0 or t == 0:
            raise CodecInputError(f"codes are empty (shape {tuple(codes.shape)}).")
        if not 1 <= k <= self.config.n_q:
            raise CodecInputError(f"codes have {k} codebooks; this codec has 1 to {self.config.n_q}.")
        if codes.min() < 0 or codes.max() >= self.config.bins:
            raise CodecInputError(f"codes must lie in [0, {self.config.bins}), got [{int(codes.min())}, {int(codes.max())}].")
        codes = codes.to(device=self.device, dtype=torch.long)
        z = self.model.quantizer.vq.decode(codes.transpose(0, 1))  # (B, dimension, T)
        if self.config.audio_normalize:
            if scale is None:
                self._note_once("noscale", "decoding codes without their loudness scale: output has unit RMS")
                scale = z.new_zeros(b, t)
            if tuple(scale.shape) != (b, t):
                raise CodecInputError(f"scale must have shape ({b}, {t}) to match the codes, got {tuple(scale.shape)}.")
            z = torch.cat([z, scale.to(z)[:, None]], dim=1)  # (B, latent_dim, T)
        elif scale is not None:
            logger.debug("scale ignored: this codec does not normalize loudness")
        return self.decode(z, length=length)
