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

import math
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


class BandRiseLoss(nn.Module):
    """L1 between the level rises of log-spaced frequency bands, every 2 ms: each sound's attack.

    The energy envelope (`EnvelopeLoss`) sees one broadband level, so a quiet low sound starting
    under a louder one barely moves it; the event metric's detector (`eval.onsets`) looks for a
    rise in any one band instead. This loss compares exactly such rises: band levels in dB
    (STFT of `window` samples, hop `hop`), floored `range_db` below the target clip's loudest band,
    each frame against the one `lag` hops earlier after a maximum over neighbouring bins (so a
    note's sidebands are not a new sound), positive part only. Rises are in units of 10 dB.
    Written here because no audio library ships a differentiable band-wise onset flux.

    Args:
        sample_rate: Hz.
        window: STFT window in samples (about 20 ms).
        hop: STFT hop in samples (about 2 ms).
        lag: frames between the compared levels.
        n_bands: log-spaced bands from 40 Hz to Nyquist, merged until each is at least `min_bins`
            bins wide, as the detector does (9 bands at 24 kHz with the defaults).
        range_db: levels this far below the target's loudest band are clamped (silence).
        start_db: a target rise above this marks a frame where a sound starts; the error there is
            averaged on its own as well as with every other frame.
    """

    bands: torch.Tensor  # (bins, bands) 0/1: which STFT bins each band sums
    hann: torch.Tensor

    def __init__(self, sample_rate: int, window: int = 512, hop: int = 48, lag: int = 3, n_bands: int = 16,
                 min_bins: int = 8, range_db: float = 60.0, start_db: float = 3.0) -> None:
        super().__init__()
        self.window, self.hop, self.lag, self.range_db, self.start_db = window, hop, lag, range_db, start_db
        n_bins = window // 2 + 1
        bin_hz = sample_rate / window
        edges = sorted({min(n_bins, max(1, round(f / bin_hz)))
                        for f in torch.logspace(math.log10(max(40.0, bin_hz)), math.log10(sample_rate / 2),
                                                n_bands + 1).tolist()})
        bounds, lo = [], 0  # the first band takes the DC and lowest bins too
        for hi in edges[1:]:
            if hi - lo >= min_bins:
                bounds.append((lo, hi))
                lo = hi
        if lo < n_bins:  # the bins left over: a band of their own, or the last band's if too few
            if bounds and n_bins - lo < min_bins:
                bounds[-1] = (bounds[-1][0], n_bins)
            else:
                bounds.append((lo, n_bins))
        bands = torch.zeros(n_bins, len(bounds))
        for j, (a, b) in enumerate(bounds):
            bands[a:b, j] = 1.0
        self.register_buffer("bands", bands, persistent=False)
        self.register_buffer("hann", torch.hann_window(window), persistent=False)

    def _levels(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Band levels and the spread reference levels in dB, (N, F, NB) each."""
        spec = torch.stft(audio.reshape(-1, audio.shape[-1]), self.window, self.hop, window=self.hann,
                          center=True, pad_mode="reflect", return_complex=True)
        power = spec.real.pow(2) + spec.imag.pow(2)  # (N, K, F)
        spread = nn.functional.max_pool1d(power.transpose(1, 2), 7, stride=1, padding=3).transpose(1, 2)
        return self._db(power), self._db(spread)

    def _db(self, power: torch.Tensor) -> torch.Tensor:
        """(N, K, F) bin powers -> (N, F, NB) band levels in dB."""
        return 10.0 * torch.einsum("nkf,kb->nfb", power, self.bands).clamp_min(1e-20).log10()

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss (scalar) between `estimate` and `target` (B, C, S)."""
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            ly, ry = self._levels(estimate.float())
            lx, rx = self._levels(target.float())
            floor = (lx.amax(dim=(1, 2), keepdim=True) - self.range_db).detach()  # (N, 1, 1)
            k = self.lag

            def rise(level: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
                return (torch.maximum(level[:, k:], floor) - torch.maximum(ref[:, :-k], floor)).relu()

            target_rise = rise(lx, rx)
            error = (rise(ly, ry) - target_rise).abs()
            # Averaged over every frame and band, the few frames where a sound starts would be
            # drowned by the many where nothing does; those frames get their own mean.
            starts = (target_rise > self.start_db).float()
            at_starts = (error * starts).sum() / starts.sum().clamp_min(1.0)
            return (error.mean() + at_starts) / 10.0


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
