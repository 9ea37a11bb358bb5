"""Reconstruction metrics reported during validation and by the codec benchmark.

- SI-SNR (dB), torchmetrics' scale-invariant signal-to-noise ratio, averaged over channels.
- Mel distance: mean absolute difference of natural-log mel magnitudes (n_fft 1024, hop 256,
  80 bands): 0 for identical audio, about 0.3-0.6 for a good neural codec at 24 kHz.
- Octave band power (`OctavePower`): where in the spectrum a codec loses or adds energy. Summed
  over a set of clips and compared in dB, it shows holes (a band tens of dB below the original)
  that a single mel distance averages away.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn
from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio


def si_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SI-SNR in dB per item: estimate, target (B, C, S) -> (B,)."""
    if estimate.shape != target.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} must have the same shape.")
    return scale_invariant_signal_noise_ratio(estimate.float(), target.float()).mean(dim=-1)  # (B,)


class MelDistance(nn.Module):
    """Mean |log mel(estimate) - log mel(target)| per item: (B, C, S) x2 -> (B,).

    Args:
        sample_rate: Hz.
        n_fft: window (and FFT) size.
        hop_length: hop between frames.
        n_mels: mel bands.
        eps: magnitude floor before the log, so silence does not dominate.
    """

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 80,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.spec = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=1.0
        )

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if estimate.shape != target.shape:
            raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} must have the same shape.")
        sx = self.spec(estimate.float()).clamp_min(self.eps).log()  # (B, C, n_mels, frames)
        sy = self.spec(target.float()).clamp_min(self.eps).log()
        return (sx - sy).abs().flatten(1).mean(dim=1)  # (B,)


class OctavePower(nn.Module):
    """Mean power per octave band: (B, C, S) -> (B, n_bands), from a Hann-windowed power spectrogram.

    Bands are octaves downward from the Nyquist frequency; the lowest band reaches down to 0 Hz,
    so a DC offset shows there.

    Args:
        sample_rate: Hz.
        n_bands: octave bands.
        n_fft: FFT size (1024 at 24 kHz resolves 23 Hz, enough for the lowest octaves).
    """

    def __init__(self, sample_rate: int, n_bands: int = 8, n_fft: int = 1024) -> None:
        super().__init__()
        if n_bands < 1 or n_fft < 16:
            raise ValueError(f"OctavePower needs n_bands >= 1 and n_fft >= 16, got {n_bands}, {n_fft}.")
        nyquist = sample_rate / 2
        edges_hz = [0.0] + [nyquist / 2 ** k for k in range(n_bands - 1, -1, -1)]  # 0, ..., nyquist/2, nyquist
        freqs = torch.linspace(0, nyquist, n_fft // 2 + 1)
        band = torch.bucketize(freqs, torch.tensor(edges_hz[1:-1]), right=False)  # (K,) band of each bin
        self.register_buffer("onehot_KB", torch.nn.functional.one_hot(band, n_bands).float(), persistent=False)
        self.edges_hz = edges_hz
        self.spec = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=n_fft // 2, power=2.0)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        power = self.spec(audio.float()).mean(dim=(1, 3))  # (B, K): channels and frames averaged
        return power @ self.onehot_KB  # (B, n_bands)
