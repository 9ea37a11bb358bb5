"""PANNs CNN14 audio embeddings (2048-d), for FAD.

The architecture is Kong et al.'s CNN14 (audioset_tagging_cnn, `Cnn14`), with module names that
match its checkpoint (`Cnn14_mAP=0.431.pth`, a dict whose "model" entry is the state dict). The
front end is computed with torch: |STFT|^2 (1024-point Hann, hop 320, centred, reflect padding) at
32 kHz, times the checkpoint's own mel matrix `logmel_extractor.melW` (so the mel bands are exactly
the trained ones), then 10 log10(max(x, 1e-10)). The checkpoint's STFT convolution kernels are
not needed (torch.stft computes the same transform) and are ignored. Each clip is cut into
non-overlapping windows (1 s by default) and every window gives one embedding (the penultimate
`fc1` activation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eval.features.base import FeatureExtractor, Preprocessor, read_weights_file
from eval.features.weights import weights_hash
from eval.reader import EvalInputError, read_audio
from eval.sets import ClipRecord

__all__ = ["Cnn14", "PANNsPreprocessor", "PANNsExtractor", "load_panns"]

SAMPLE_RATE = 32000
N_FFT = 1024
HOP = 320


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


class Cnn14(nn.Module):
    """CNN14 on log-mel input: (B, T, M) log-mel -> embedding (B, E).

    Args:
        mel_bins: mel bands (64).
        widths: channels of the six conv blocks (official 64 ... 2048).
        classes: AudioSet classes of the (unused) classifier head, kept so the checkpoint loads.
    """

    def __init__(self, mel_bins: int = 64, widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
                 classes: int = 527) -> None:
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"CNN14 has six conv blocks; got widths {widths}.")
        self.bn0 = nn.BatchNorm2d(mel_bins)
        chans = (1, *widths)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(chans[i], chans[i + 1]))
        self.fc1 = nn.Linear(widths[-1], widths[-1], bias=True)
        self.fc_audioset = nn.Linear(widths[-1], classes, bias=True)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """logmel: (B, T, M) -> (B, E) embedding (eval mode: dropout off)."""
        x = logmel.unsqueeze(1)  # (B, 1, T, M)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # batch norm over mel bins
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x, (2, 2) if i < 5 else (1, 1))  # (B, C, T', M')
        x = x.mean(dim=3)  # (B, C, T')
        x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)  # (B, C, T')
        x = x.max(dim=2).values + x.mean(dim=2)  # (B, C)
        return F.relu(self.fc1(x))  # (B, E)


class PANNsPreprocessor(Preprocessor):
    """Clip -> (W, window_samples) 32 kHz mono waveform windows."""

    def __init__(self, window_seconds: float = 1.0) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}.")
        self.window_seconds = window_seconds

    def __call__(self, record: ClipRecord) -> torch.Tensor:
        audio, _ = read_audio(record.path, sample_rate=SAMPLE_RATE, channels=1, start=record.start,
                              duration=record.duration)
        win = round(self.window_seconds * SAMPLE_RATE)
        n = audio.shape[1] // win
        if n == 0:
            raise EvalInputError(
                f"{record.path}: shorter than the PANNs window ({self.window_seconds} s); "
                "lower --panns-window or evaluate longer clips."
            )
        return torch.from_numpy(audio[0, : n * win].reshape(n, win).copy())


class PANNsExtractor(FeatureExtractor):
    """CNN14 loaded from a local checkpoint."""

    name = "panns"
    preprocessor: PANNsPreprocessor

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", window_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        ckpt = read_weights_file(self.path, "PANNs checkpoint", "; pass Cnn14_mAP=0.431.pth")
        state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict) or "logmel_extractor.melW" not in state:
            raise EvalInputError(
                f"{self.path}: not a PANNs CNN14 checkpoint (no 'logmel_extractor.melW'); pass Cnn14_mAP=0.431.pth."
            )
        self.mel_w = state["logmel_extractor.melW"].float().to(self.device)  # (N_FFT/2+1, M)
        model_state = {k: v for k, v in state.items()
                       if not k.startswith(("spectrogram_extractor.", "logmel_extractor."))}
        try:
            widths = tuple(model_state[f"conv_block{i}.conv1.weight"].shape[0] for i in range(1, 7))
            classes = model_state["fc_audioset.weight"].shape[0]
        except KeyError as err:
            raise EvalInputError(f"{self.path}: missing {err}; not a CNN14 checkpoint.") from err
        self.model = Cnn14(self.mel_w.shape[1], widths, classes)
        try:
            self.model.load_state_dict(model_state, strict=True)
        except RuntimeError as err:
            raise EvalInputError(f"{self.path}: does not match CNN14 ({err}).") from err
        self.model.to(self.device).eval()
        self.window = torch.hann_window(N_FFT, device=self.device)
        self.weight_hash = weights_hash(self.path)
        self.preprocessor = PANNsPreprocessor(window_seconds)

    def logmel(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, S) 32 kHz waveform -> (B, T, M) log-mel in dB."""
        spec = torch.stft(wav, N_FFT, HOP, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True).abs() ** 2  # (B, F, T)
        mel = spec.transpose(1, 2) @ self.mel_w  # (B, T, M)
        return 10.0 * torch.log10(mel.clamp_min(1e-10))

    def embed(self, units: torch.Tensor) -> torch.Tensor:
        return self.model(self.logmel(units.float()))

    def preprocessing(self) -> dict[str, Any]:
        return {
            "sample_rate": SAMPLE_RATE,
            "channels": "mono mix",
            "frontend": "power STFT 1024/320 Hann, checkpoint mel matrix, 10 log10",
            "window": f"{self.preprocessor.window_seconds} s, no overlap",
            "embedding": "fc1 (penultimate), 2048-d",
        }


def load_panns(path: str | Path, **kwargs: Any) -> PANNsExtractor:
    """Load CNN14 from a local checkpoint file."""
    return PANNsExtractor(path, **kwargs)
