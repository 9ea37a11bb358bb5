"""Codec architecture configs and named presets.

`CodecConfig` is the one source of truth for an EnCodec-style codec: the SEANet encoder/decoder,
the residual vector quantizer and the chunking used for long audio. YAML files under
`configs/codec/` hold serialized instances of it (under `model.codec`), and every saved codec
carries its config so `load_codec` rebuilds the exact architecture.

Presets:

| name            | audio            | hop | latent frames/s | latent dim | params | use                       |
|-----------------|------------------|-----|-----------------|------------|--------|---------------------------|
| `encodec_24khz` | 24 kHz mono      | 320 | 75              | 128        | ~15 M  | Meta's pretrained weights |
| `encodec_48khz` | 48 kHz stereo    | 320 | 150             | 128 + 1    | ~15 M  | Meta's pretrained weights |
| `small`         | 24 kHz mono      | 320 | 75              | 16         | ~0.36 M | the embedded CPU default |
| `debug`         | 24 kHz mono      | 64  | 375             | 8          | ~16 k  | unit tests                |
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

CONV_NORMS = ("none", "weight_norm", "spectral_norm", "time_layer_norm", "layer_norm", "time_group_norm")
PAD_MODES = ("reflect", "constant", "replicate", "circular")


@dataclass
class CodecConfig:
    """Architecture of an EnCodec codec (SEANet encoder/decoder + residual vector quantizer).

    Attributes:
        name: preset name this config came from (informational; kept in saved codecs).
        sample_rate: audio sample rate in Hz the codec works at.
        channels: audio channels (1 mono, 2 stereo).
        dimension: SEANet latent dimension, i.e. the continuous latent channels. With
            `audio_normalize` the codec's `latent_dim` is `dimension + 1` (the log loudness).
        n_filters: base width of SEANet; doubles at every downsampling stage.
        n_residual_layers: residual blocks per stage.
        ratios: decoder upsampling ratios (the encoder uses them reversed); their product is the hop
            length, so the latent frame rate is `sample_rate / prod(ratios)`.
        lstm_layers: LSTM layers at the bottleneck (EnCodec uses 2; 0 keeps small models fast on CPU).
        causal: causal convolutions (EnCodec 24 kHz is causal, 48 kHz is not).
        norm: convolution normalization, one of CONV_NORMS.
        compress: channel reduction inside residual branches.
        kernel_size: kernel of the first convolution.
        last_kernel_size: kernel of the last convolution.
        residual_kernel_size: kernel of the residual convolutions.
        dilation_base: dilation growth between residual layers of one stage.
        true_skip: identity skip connections in the residual blocks instead of 1x1 convolutions
            (EnCodec's own models use convolutions; identity skips train much faster from scratch).
        pad_mode: padding mode of the non-causal convolutions, one of PAD_MODES.
        n_q: number of residual codebooks (maximum bandwidth).
        bins: codebook size (a power of two).
        target_bandwidths: bandwidths in kbps `encode_codes` accepts; each selects
            `floor(bw / bandwidth_per_codebook)` codebooks.
        kmeans_init: initialize codebooks by k-means on the first training batch (as EnCodec).
        audio_normalize: scale each chunk to unit RMS before encoding (the 48 kHz model was trained
            so); the log scale becomes an extra latent channel so decoding restores the loudness.
        chunk_seconds: audio longer than this is encoded/decoded in chunks of this length so memory
            stays bounded; None processes any length at once.
        overlap_seconds: overlap between consecutive chunks. The `edge_frames` at each inner chunk
            edge are dropped (their receptive field reaches past the edge) and the rest of the
            overlap is cross-faded linearly, so it must hold at least `2 * edge_frames` frames.
    """

    name: str = "small"
    sample_rate: int = 24000
    channels: int = 1
    dimension: int = 16
    n_filters: int = 8
    n_residual_layers: int = 1
    ratios: list[int] = field(default_factory=lambda: [8, 5, 4, 2])
    lstm_layers: int = 0
    causal: bool = False
    norm: str = "weight_norm"
    compress: int = 2
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    true_skip: bool = True
    pad_mode: str = "reflect"
    n_q: int = 8
    bins: int = 256
    target_bandwidths: list[float] = field(default_factory=lambda: [1.2, 2.4, 4.8])
    kmeans_init: bool = True
    audio_normalize: bool = False
    chunk_seconds: float | None = 10.0
    overlap_seconds: float = 0.25

    def __post_init__(self) -> None:
        self.ratios = [int(r) for r in self.ratios]
        self.target_bandwidths = sorted(float(b) for b in self.target_bandwidths)
        for key in ("sample_rate", "dimension", "n_filters", "n_q", "bins", "kernel_size",
                    "last_kernel_size", "residual_kernel_size", "dilation_base", "compress"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"CodecConfig.{key} must be a positive integer, got {value!r}.")
        for key in ("n_residual_layers", "lstm_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"CodecConfig.{key} must be an integer >= 0, got {value!r}.")
        if self.channels not in (1, 2):
            raise ValueError(f"CodecConfig.channels must be 1 (mono) or 2 (stereo), got {self.channels!r}.")
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ValueError(f"CodecConfig.ratios must be a non-empty list of integers >= 1, got {self.ratios!r}.")
        if self.bins & (self.bins - 1):
            raise ValueError(f"CodecConfig.bins must be a power of two (codes are stored as bits), got {self.bins}.")
        if self.norm not in CONV_NORMS:
            raise ValueError(f"CodecConfig.norm must be one of {CONV_NORMS}, got {self.norm!r}.")
        if self.norm == "time_group_norm" and self.causal:
            raise ValueError("CodecConfig.norm='time_group_norm' is not causal; set causal: false or another norm.")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"CodecConfig.pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}.")
        if not self.target_bandwidths or any(b <= 0 for b in self.target_bandwidths):
            raise ValueError(f"CodecConfig.target_bandwidths must be positive kbps values, got {self.target_bandwidths!r}.")
        top = self.target_bandwidths[-1]
        if self.codebooks_for_bandwidth(top) > self.n_q:
            raise ValueError(
                f"CodecConfig.target_bandwidths reaches {top} kbps, which needs "
                f"{self.codebooks_for_bandwidth(top)} codebooks of {self.bandwidth_per_codebook:.3g} kbps, "
                f"but n_q is {self.n_q}; raise n_q or lower the bandwidths."
            )
        if self.chunk_seconds is not None:
            if not (math.isfinite(self.chunk_seconds) and self.chunk_seconds > 0):
                raise ValueError(f"CodecConfig.chunk_seconds must be > 0 or null, got {self.chunk_seconds!r}.")
            if not 0 <= self.overlap_seconds < self.chunk_seconds / 2:
                raise ValueError(
                    f"CodecConfig.overlap_seconds must lie in [0, chunk_seconds/2) = [0, {self.chunk_seconds / 2}), "
                    f"got {self.overlap_seconds!r}."
                )
            if self.chunk_frames < 2:
                raise ValueError(
                    f"CodecConfig.chunk_seconds={self.chunk_seconds} holds fewer than 2 latent frames at "
                    f"{self.frame_rate:g} frames/s; use a longer chunk."
                )
            if self.overlap_frames < 2 * self.edge_frames:
                need = 2 * self.edge_frames
                raise ValueError(
                    f"CodecConfig.overlap_seconds={self.overlap_seconds} gives {self.overlap_frames} shared latent "
                    f"frames, but padding at a chunk edge reaches {self.edge_frames} frames into the chunk (receptive "
                    f"field: encoder {self.encoder_receptive_field} samples, decoder "
                    f"{float(self.decoder_receptive_span):.3g} frames), so consecutive chunks must share at least "
                    f"{need} frames; set overlap_seconds >= {need / self.frame_rate:.4g}."
                )

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def bandwidth_per_codebook(self) -> float:
        """kbps one codebook adds (bits per code x frames per second)."""
        return math.log2(self.bins) * self.frame_rate / 1000.0

    def codebooks_for_bandwidth(self, bandwidth: float) -> int:
        """Number of codebooks used at `bandwidth` kbps (EnCodec's rule, at least 1)."""
        return max(1, math.floor(bandwidth / self.bandwidth_per_codebook + 1e-9))

    @property
    def chunk_frames(self) -> int:
        """Latent frames per chunk (0 when chunking is off)."""
        return 0 if self.chunk_seconds is None else round(self.chunk_seconds * self.frame_rate)

    @property
    def overlap_frames(self) -> int:
        """Latent frames shared by consecutive chunks."""
        return round(self.overlap_seconds * self.frame_rate)

    # Receptive fields of the SEANet convolutions, walked in the order `SEANetEncoder` and
    # `SEANetDecoder` stack them (tests/audio_codec/test_config.py checks both against autograd).
    # An LSTM or time group norm sees the whole chunk, so for those codecs chunking stays an
    # approximation however long the overlap.
    @property
    def encoder_receptive_field(self) -> int:
        """Audio samples that one latent frame of the encoder's convolutions depends on."""
        reach, jump = 1, 1  # receptive field so far; input samples per position at the current rate
        layers = [(self.kernel_size, 1, 1)]
        for ratio in reversed(self.ratios):
            layers += [(self.residual_kernel_size, self.dilation_base**j, 1) for j in range(self.n_residual_layers)]
            layers.append((2 * ratio, 1, ratio))  # downsampling convolution
        layers.append((self.last_kernel_size, 1, 1))
        for kernel, dilation, stride in layers:
            reach += (kernel - 1) * dilation * jump
            jump *= stride
        return reach

    @property
    def decoder_receptive_span(self) -> Fraction:
        """Distance in latent frames between the first and last latent frame one output sample depends on."""
        span, jump = Fraction(self.kernel_size - 1), Fraction(1)  # jump: latent frames per position
        for ratio in self.ratios:
            # Transposed convolution, kernel 2r, stride r: each output mixes 2 neighbouring inputs.
            span += jump
            jump /= ratio
            for j in range(self.n_residual_layers):
                span += (self.residual_kernel_size - 1) * self.dilation_base**j * jump
        return span + (self.last_kernel_size - 1) * jump

    @property
    def edge_frames(self) -> int:
        """Latent frames at an inner chunk edge that differ from a whole-signal pass.

        An output whose receptive field reaches past the chunk sees padding instead of the
        neighbouring audio. The field is not centred in general (causal convolutions, asymmetric
        padding), so the whole field less one position bounds the reach on either side.
        """
        encoder = math.ceil((self.encoder_receptive_field - 1) / self.hop_length)
        return max(encoder, math.ceil(self.decoder_receptive_span))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON/torch.save friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CodecConfig:
        """Rebuild from `to_dict` output, naming unknown keys in the error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown CodecConfig field(s) {unknown}; known fields: {sorted(known)}.")
        return cls(**values)


PRESETS: dict[str, CodecConfig] = {
    # Meta's EnCodec 24 kHz (EncodecModel.encodec_model_24khz): causal, weight norm, 2 LSTM layers.
    "encodec_24khz": CodecConfig(
        name="encodec_24khz", sample_rate=24000, channels=1, dimension=128, n_filters=32, lstm_layers=2,
        causal=True, norm="weight_norm", true_skip=False, n_q=32, bins=1024, target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0],
        audio_normalize=False, chunk_seconds=10.0, overlap_seconds=0.25,
    ),
    # Meta's EnCodec 48 kHz stereo: non-causal, time group norm, trained on 1 s segments with
    # per-segment loudness normalization, so chunks are 1 s as in the reference implementation;
    # the overlap is 0.12 s = 18 frames, twice the 9 edge frames of its convolutions.
    "encodec_48khz": CodecConfig(
        name="encodec_48khz", sample_rate=48000, channels=2, dimension=128, n_filters=32, lstm_layers=2,
        causal=False, norm="time_group_norm", true_skip=False, n_q=16, bins=1024, target_bandwidths=[3.0, 6.0, 12.0, 24.0],
        audio_normalize=True, chunk_seconds=1.0, overlap_seconds=0.12,
    ),
    # The embedded default: trains on the synthetic dataset on a CPU in minutes; 16 latent channels
    # at 75 frames/s keep the generator's audio tokens small.
    "small": CodecConfig(
        name="small", sample_rate=24000, channels=1, dimension=16, n_filters=8, lstm_layers=0,
        causal=False, norm="weight_norm", true_skip=True, n_q=8, bins=256, target_bandwidths=[1.2, 2.4, 4.8],
        chunk_seconds=10.0, overlap_seconds=0.25,
    ),
    # Unit tests: about 16 k parameters, hop 64.
    "debug": CodecConfig(
        name="debug", sample_rate=24000, channels=1, dimension=8, n_filters=4, ratios=[4, 4, 4],
        lstm_layers=0, causal=False, norm="weight_norm", n_q=4, bins=64, target_bandwidths=[2.25, 4.5, 9.0],
        kmeans_init=False, chunk_seconds=0.5, overlap_seconds=0.1,
    ),
}

# Official checkpoint file names (the sha256 prefix after the dash is checked on load) and where
# Meta publishes them; this project never downloads, it only names the file for the user.
OFFICIAL_CHECKPOINTS: dict[str, str] = {
    "encodec_24khz": "encodec_24khz-d7cc33bc.th",
    "encodec_48khz": "encodec_48khz-7e698e3e.th",
}
OFFICIAL_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"


def get_preset(name: str, **overrides: Any) -> CodecConfig:
    """A fresh copy of preset `name` with fields replaced by `overrides`.

    Raises:
        KeyError: unknown preset (the message lists the known ones).
        ValueError: an override is not a field or fails validation.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown codec preset {name!r}; choose one of {sorted(PRESETS)}.")
    values = PRESETS[name].to_dict()
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ValueError(f"unknown CodecConfig field(s) {unknown} in overrides of preset {name!r}.")
    values.update(overrides)
    return CodecConfig(**values)
