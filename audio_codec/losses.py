"""EnCodec's training losses.

- Time domain: L1 between waveforms.
- Time domain, added here: MSE, which (unlike L1, whose optimum for sparse sounds is silence)
  pulls the output level and phase towards the target early in training; and a log energy
  envelope loss on short frames and their rises, which keeps attacks sharp (`EnvelopeLoss`).
- Frequency domain: multi-scale mel-spectrogram loss (torchaudio `MelSpectrogram` at several
  window sizes), L1 plus MSE on log mel magnitudes; the short windows keep transients sharp, which
  is what preserves event onsets.
- Adversarial: hinge losses on the logits of `encodec.msstftd.MultiScaleSTFTDiscriminator`, and
  relative feature matching (L1 between the discriminator's feature maps of real and
  reconstructed audio, divided by the mean magnitude of the real ones), as in the EnCodec paper.

Spectrograms are computed in float32 even under bf16 autocast: torch's STFT has no bf16 kernel and
log magnitudes need the range.
"""

from __future__ import annotations

import warnings

import torch
import torchaudio
from torch import nn


def _max_mel_bands(sample_rate: int, n_fft: int, n_mels: int) -> int:
    """The most mel bands (<= n_mels) of which none is empty at this FFT size.

    Short windows have few frequency bins, so the narrow low-frequency mel bands would select no
    bin at all (a zero row that carries no signal, and a torchaudio warning).
    """
    n_freqs = n_fft // 2 + 1
    for bands in range(n_mels, 1, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fb = torchaudio.functional.melscale_fbanks(n_freqs, 0.0, sample_rate / 2, bands, sample_rate)
        if bool((fb.max(dim=0).values > 0).all()):
            return bands
    return 1


class MultiScaleMelLoss(nn.Module):
    """Mean over window sizes of L1 + `l2_weight` x MSE between log mel spectrograms.

    Args:
        sample_rate: audio rate in Hz.
        windows: STFT window sizes (n_fft), hop = window / 4.
        n_mels: mel bands; short windows use fewer, so that no band is empty.
        floor: magnitude floor before the log: differences below it (inaudible hiss in silent
            stretches) cost nothing, so the loss spends itself on the sounds.
        l2_weight: weight of the MSE term.
    """

    def __init__(self, sample_rate: int, windows: list[int], n_mels: int = 64, floor: float = 1e-5,
                 l2_weight: float = 1.0) -> None:
        super().__init__()
        if not windows or any(w < 16 for w in windows):
            raise ValueError(f"mel loss windows must be a non-empty list of sizes >= 16, got {windows!r}.")
        if not floor > 0 or l2_weight < 0:
            raise ValueError(f"mel loss floor must be > 0 and l2_weight >= 0, got {floor}, {l2_weight}.")
        self.eps = floor
        self.l2_weight = l2_weight
        self.specs = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=w, win_length=w, hop_length=w // 4,
                n_mels=_max_mel_bands(sample_rate, w, n_mels), power=1.0, center=True, normalized=False,
            )
            for w in windows
        )

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss (scalar) between `estimate` and `target` (B, C, S)."""
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            x, y = estimate.float(), target.float()
            total = x.new_zeros(())
            for spec in self.specs:
                sx = spec(x).clamp_min(self.eps).log()  # (B, C, n_mels, frames)
                sy = spec(y).clamp_min(self.eps).log()
                total = total + (sx - sy).abs().mean() + self.l2_weight * (sx - sy).pow(2).mean()
        return total / len(self.specs)


class EnvelopeLoss(nn.Module):
    """L1 between log energy envelopes, and between their rises: keeps attacks sharp and in place.

    Energy in short frames (`frame_ms`, half-overlapping) in log scale; the second term compares
    the level change over `lag` frames, which is what onset detectors threshold. Spectral losses
    alone let a codec learn the spectrum of a sound long before the sharpness of its attack, so a
    reconstruction can sound right while its onsets are smeared over tens of milliseconds.

    Args:
        sample_rate: Hz.
        frame_ms: frame length in milliseconds.
        lag: frames between the two levels whose difference is a rise.
        floor: energy floor before the log (mean square, about -50 dBFS by default), so hiss
            in silent stretches does not count.
    """

    def __init__(self, sample_rate: int, frame_ms: float = 5.0, lag: int = 2, floor: float = 1e-5) -> None:
        super().__init__()
        self.frame = max(2, round(frame_ms * sample_rate / 1000))
        self.hop = max(1, self.frame // 2)
        self.lag = lag
        self.floor = floor

    def _log_energy(self, audio: torch.Tensor) -> torch.Tensor:
        frames = audio.float().pow(2).unfold(-1, self.frame, self.hop)  # (B, C, F, frame)
        return (frames.mean(dim=-1) + self.floor).log()  # (B, C, F)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss (scalar) between `estimate` and `target` (B, C, S), S >= one frame."""
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            ey, ex = self._log_energy(estimate), self._log_energy(target)  # (B, C, F)
            level = (ey - ex).abs().mean()
            k = self.lag
            rise = ((ey[..., k:] - ey[..., :-k]) - (ex[..., k:] - ex[..., :-k])).abs().mean()
        return level + rise


def discriminator_hinge_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminator, averaged over its scales."""
    total = sum(torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits))
    return total / len(real_logits)  # type: ignore[return-value]


def generator_hinge_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Adversarial loss of the generator (hinge), averaged over scales."""
    return sum(torch.relu(1 - f).mean() for f in fake_logits) / len(fake_logits)  # type: ignore[return-value]


def feature_matching_loss(real_maps: list[list[torch.Tensor]], fake_maps: list[list[torch.Tensor]]) -> torch.Tensor:
    """Relative L1 between discriminator feature maps, averaged over scales and layers."""
    terms = [
        (f - r.detach()).abs().mean() / (r.detach().abs().mean() + 1e-8)
        for real, fake in zip(real_maps, fake_maps)
        for r, f in zip(real, fake)
    ]
    return torch.stack(terms).mean()
