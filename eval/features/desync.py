"""Synchformer features of a clip, with av-benchmark's preprocessing, and the DeSync figure.

Preprocessing (av-benchmark `data/video_dataset.py`, `data/audio_dataset.py`, `extract.py`,
`extract_video.py`):

- video: 25 fps, the first `duration` seconds (8 s), each frame resized so its shorter side is 224
  (bicubic, antialiased, back to 8-bit values), centre-cropped to 224 x 224, scaled to [-1, 1];
  segments of 16 frames every 8 frames (0.64 s every 0.32 s);
- audio: mono mean, 16 kHz, the first `duration` seconds; segments of 10240 samples every 5120
  (the same 0.64 s / 0.32 s grid); each segment -> |STFT|^2 (n_fft 1024, 25 ms Hann window, 10 ms
  hop, centred) -> 128 HTK mel bands -> log(x + 1e-6) -> padded with zeros to 66 frames ->
  (x + 4.2677393) / (2 * 4.5689974).

DeSync (av-benchmark `evaluate.py`): the sync transformer sees 14 segments (4.8 s) at a time; for
an 8 s clip it is run on the first 14 and on the last 14 segments, each prediction is the grid
offset of the arg-max class, and the clip's DeSync is the mean of the two absolute offsets (the set's
is the mean over clips, which is av-benchmark's mean over all predictions). Clips between 4.8 s and
the protocol duration use the segments they have (first and last 14 overlap more); shorter clips
cannot be scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from eval.features.base import WindowedExtractor
from eval.features.synchformer import SEGMENTS, Synchformer, offsets_of, synchformer_config_from_state
from eval.reader import EvalInputError, read_audio, read_video
from eval.sets import ClipRecord

__all__ = ["SynchformerExtractor", "ClipSyncFeatures", "video_segments", "audio_segments", "desync_of"]

FPS = 25.0
SAMPLE_RATE = 16000
SIZE = 224
V_SEG, V_STEP = 16, 8
A_SEG, A_STEP = 10240, 5120
SPEC_FRAMES = 66
MEL_MEAN, MEL_STD = -4.2677393, 4.5689974


@dataclass
class ClipSyncFeatures:
    """Per-segment Synchformer features of one clip: `video` (S, 8, D), `audio` (S, 6, D)."""

    video: torch.Tensor
    audio: torch.Tensor

    @property
    def n_segments(self) -> int:
        return min(self.video.shape[0], self.audio.shape[0])


def resize_crop(frames: np.ndarray, size: int = SIZE) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) in [-1, 1]: shorter side to `size` (bicubic,
    antialiased, rounded to 8 bits as torchvision does on uint8 images), centre crop."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    h, w = x.shape[-2:]
    nh, nw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        x = x.clamp(0, 255).round()
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    x = x[..., top:top + size, left:left + size]
    return (x / 255.0 - 0.5) / 0.5


def video_segments(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) -> (S, 16, 3, H, W), S = (T - 16) // 8 + 1."""
    n = (frames.shape[0] - V_SEG) // V_STEP + 1
    if n <= 0:
        return frames.new_zeros((0, V_SEG, *frames.shape[1:]))
    return torch.stack([frames[i * V_STEP:i * V_STEP + V_SEG] for i in range(n)])


_MEL = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, win_length=400, hop_length=160, n_fft=1024,
                                            n_mels=128)


def audio_segments(wav: torch.Tensor) -> torch.Tensor:
    """(N,) 16 kHz waveform -> (S, 128, 66) normalised log-mel segments."""
    n = (wav.shape[0] - A_SEG) // A_STEP + 1
    if n <= 0:
        return wav.new_zeros((0, 128, SPEC_FRAMES))
    seg = torch.stack([wav[i * A_STEP:i * A_STEP + A_SEG] for i in range(n)])  # (S, 10240)
    spec = torch.log(_MEL(seg) + 1e-6)  # (S, 128, 65)
    pad = SPEC_FRAMES - spec.shape[-1]
    spec = F.pad(spec, (0, pad)) if pad > 0 else spec[..., :SPEC_FRAMES]
    return (spec - MEL_MEAN) / (2 * MEL_STD)


@torch.inference_mode()
def desync_of(model: Synchformer, video: torch.Tensor, audio: torch.Tensor) -> tuple[float, list[float]]:
    """DeSync of one pair of feature sequences: mean |offset| over the first and the last 14 segments.

    Args:
        model: the Synchformer.
        video: (S_v, 8, D) video features; audio: (S_a, 6, D) audio features (S >= 14 each).

    Returns:
        (DeSync in seconds, the two signed offsets predicted).
    """
    s = min(video.shape[0], audio.shape[0])
    v = torch.stack([video[:SEGMENTS], video[s - SEGMENTS:s]])  # (2, 14, 8, D)
    a = torch.stack([audio[:SEGMENTS], audio[s - SEGMENTS:s]])  # (2, 14, 6, D)
    off = offsets_of(model.compare_v_a(v, a)).float().cpu()  # (2,)
    return float(off.abs().mean()), [float(o) for o in off]


class SynchformerExtractor(WindowedExtractor):
    """Synchformer loaded from a local state dict (av-benchmark's `synchformer_state_dict.pth`).

    Args:
        path: the state dict file.
        device: where the network runs.
        duration: seconds of each clip read (av-benchmark: 8).
        batch_size: segments per forward pass of the feature extractors.
    """

    name = "synchformer"
    what = "Synchformer state dict"
    layout = "av-benchmark's Synchformer layout"
    model: Synchformer

    def _load(self, state: dict[str, Any]) -> Synchformer:
        model = Synchformer(synchformer_config_from_state(state))
        model.load_state_dict(state, strict=True)
        return model

    def preprocess(self, record: ClipRecord) -> tuple[torch.Tensor, torch.Tensor]:
        """A clip -> (video segments (S, 16, 3, 224, 224), audio segments (S', 128, 66))."""
        # Read to the clip's end (the readers hold the last frame, or pad silence, past the end of a
        # file when asked for more), then keep the protocol's first `duration` seconds.
        frames, _ = read_video(record.path, fps=FPS, start=record.start, duration=record.duration)
        frames = frames[: int(round(FPS * self.duration))]
        audio, _ = read_audio(record.path, sample_rate=SAMPLE_RATE, channels=1, start=record.start,
                              duration=record.duration)
        wav = torch.from_numpy(audio[0][: int(round(SAMPLE_RATE * self.duration))]).float()
        return video_segments(resize_crop(frames)), audio_segments(wav)

    @torch.inference_mode()
    def clip(self, record: ClipRecord) -> ClipSyncFeatures:
        """Features of every segment of one clip."""
        vseg, aseg = self.preprocess(record)
        if min(vseg.shape[0], aseg.shape[0]) < SEGMENTS:
            raise EvalInputError(f"{record.path}: shorter than the 4.8 s (14 segments of 0.64 s every 0.32 s) "
                                 "that Synchformer compares; DeSync needs longer clips.", path=record.path)
        vs = [self.model.extract_vfeats(vseg[s:s + self.batch_size][None].to(self.device))[0]
              for s in range(0, vseg.shape[0], self.batch_size)]
        aus = [self.model.extract_afeats(aseg[s:s + self.batch_size][None].to(self.device))[0]
               for s in range(0, aseg.shape[0], self.batch_size)]
        return ClipSyncFeatures(torch.cat(vs), torch.cat(aus))

    def desync(self, video: ClipSyncFeatures, audio: ClipSyncFeatures) -> tuple[float, list[float]]:
        """DeSync of one clip's video features with (another) clip's audio features."""
        return desync_of(self.model, video.video.to(self.device), audio.audio.to(self.device))

    def preprocessing(self) -> dict[str, Any]:
        return {
            "video": "25 fps, shorter side 224 (bicubic, antialiased) + centre crop 224, [-1, 1], "
                     "16-frame segments every 8 frames",
            "audio": "16 kHz mono, 10240-sample segments every 5120, 128-bin log-mel (n_fft 1024, 400/160), "
                     "66 frames, (x + 4.2677) / (2 * 4.5690)",
            "duration": f"first {self.duration:g} s",
            "scoring": "|offset| of the arg-max of 21 classes (-2..2 s, 0.2 s steps), mean of the first and last "
                       "14 segments (4.8 s)",
        }
