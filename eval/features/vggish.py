"""VGGish audio embeddings (128-d per 0.96 s), for FAD.

The network is the VGG-like model of Hershey et al. (2017) as torchvggish ports it; the module
names here (`features.N`, `embeddings.N`) match torchvggish's state dict (`vggish-10086976.pth`),
so that file loads with `strict=True`. The front end follows VGGish's own: 16 kHz mono, 25 ms
periodic-Hann window, 10 ms hop, 512-point FFT magnitude, 64 HTK mel bands 125-7500 Hz,
log(mel + 0.01), non-overlapping examples of 96 frames (0.96 s). The PCA/quantization post-processing
is not applied (raw 128-d embeddings, as most FAD implementations use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import nn

from eval.features.base import FeatureExtractor, Preprocessor, read_weights_file
from eval.features.weights import weights_hash
from eval.reader import EvalInputError, read_audio
from eval.sets import ClipRecord

__all__ = ["VGGish", "VGGishPreprocessor", "VGGishExtractor", "load_vggish"]

SAMPLE_RATE = 16000
EXAMPLE_FRAMES = 96
MEL_BANDS = 64


class VGGish(nn.Module):
    """VGGish: log-mel examples (B, 1, 96, 64) -> embeddings (B, 128).

    Args:
        widths: channels of the four convolution stages (the official 64, 128, 256, 512; tests
            use narrower ones).
        hidden: width of the two hidden fully connected layers (official 4096).
        dim: embedding size (official 128).
    """

    def __init__(self, widths: tuple[int, int, int, int] = (64, 128, 256, 512), hidden: int = 4096, dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        # Official layout: conv64 M conv128 M conv256 conv256 M conv512 conv512 M.
        for stage, width in enumerate(widths):
            for _ in range(1 if stage < 2 else 2):
                layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(widths[-1] * 6 * 4, hidden), nn.ReLU(True),
            nn.Linear(hidden, hidden), nn.ReLU(True),
            nn.Linear(hidden, dim), nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 96, 64) log-mel examples -> (B, dim)."""
        x = self.features(x)  # (B, C, 6, 4)
        # TensorFlow flattens channels-last; the official weights expect that order.
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # (B, 6*4*C)
        return self.embeddings(x)  # (B, dim)


class VGGishPreprocessor(Preprocessor):
    """Clip -> (E, 1, 96, 64) log-mel examples (E = whole 0.96 s examples in the clip)."""

    def __init__(self) -> None:
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=512, win_length=400, hop_length=160, f_min=125.0, f_max=7500.0,
            n_mels=MEL_BANDS, power=1.0, mel_scale="htk", norm=None, center=False,
            window_fn=torch.hann_window,  # periodic Hann, as VGGish's numpy front end
        )

    def __call__(self, record: ClipRecord) -> torch.Tensor:
        audio, _ = read_audio(record.path, sample_rate=SAMPLE_RATE, channels=1, start=record.start,
                              duration=record.duration)
        return self.examples(torch.from_numpy(audio[0]), record.path)

    def examples(self, wav: torch.Tensor, where: Any = "audio") -> torch.Tensor:
        """(S,) waveform at 16 kHz -> (E, 1, 96, 64)."""
        logmel = torch.log(self.mel(wav.float()) + 0.01).T  # (frames, 64)
        n = logmel.shape[0] // EXAMPLE_FRAMES
        if n == 0:
            raise EvalInputError(f"{where}: shorter than VGGish's 0.96 s example; FAD-VGGish needs longer audio.")
        return logmel[: n * EXAMPLE_FRAMES].reshape(n, 1, EXAMPLE_FRAMES, MEL_BANDS)


class VGGishExtractor(FeatureExtractor):
    """VGGish loaded from a local state dict (torchvggish's `vggish-10086976.pth`)."""

    name = "vggish"
    preprocessor: VGGishPreprocessor

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu",
                 model: VGGish | None = None) -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        state = read_weights_file(self.path, "VGGish state dict")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        self.model = model if model is not None else _vggish_for(state, self.path)
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise EvalInputError(f"{self.path}: does not match the VGGish architecture ({err}).") from err
        self.model.to(self.device).eval()
        self.weight_hash = weights_hash(self.path)
        self.preprocessor = VGGishPreprocessor()

    def embed(self, units: torch.Tensor) -> torch.Tensor:
        return self.model(units)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "sample_rate": SAMPLE_RATE,
            "channels": "mono mix",
            "frontend": "log(mel + 0.01), |STFT| 25 ms Hann / 10 ms hop, 64 HTK mel 125-7500 Hz",
            "window": "0.96 s examples, no overlap",
            "postprocess": "none (raw 128-d)",
        }


def _vggish_for(state: dict[str, torch.Tensor], path: Path) -> VGGish:
    """Build a VGGish whose widths match the state dict (the official file gives the official net)."""
    try:
        convs = [state[f"features.{i}.weight"].shape[0] for i in (0, 3, 6, 11)]
        hidden, dim = state["embeddings.0.weight"].shape[0], state["embeddings.4.weight"].shape[0]
    except KeyError as err:
        raise EvalInputError(
            f"{path}: missing {err} — not a torchvggish state dict (expected keys features.N.*, embeddings.N.*)."
        ) from err
    return VGGish(tuple(convs), hidden, dim)  # type: ignore[arg-type]


def load_vggish(path: str | Path, **kwargs: Any) -> VGGishExtractor:
    """Load VGGish from a local state dict file."""
    return VGGishExtractor(path, **kwargs)
