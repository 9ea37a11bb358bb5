"""SyncNet (Chung & Zisserman, 2016; joonson/syncnet_python) for LSE-C and LSE-D.

The network is the `S` module of syncnet_python's `SyncNetModel.py`: an audio stream on 13 MFCC x
20 frames (0.2 s) and a lip stream on 5 RGB frames of 224 x 224 (0.2 s at 25 fps), each ending in
a 1024-d embedding. The module names here (`netcnnaud.N`, `netfcaud.N`, `netcnnlip.N`,
`netfclip.N`) are the keys of `syncnet_v2.model`, a plain state dict that syncnet_python copies in
by name; it loads here unchanged, every key matched both ways except the BatchNorm
`num_batches_tracked` counters (old PyTorch did not save them, and they do not affect inference).

Preprocessing follows `SyncNetInstance.evaluate`:

- video at 25 fps, frames as float BGR values 0-255 (syncnet_python reads JPEGs with OpenCV), no
  normalisation;
- audio mono at 16 kHz on the int16 scale (it reads a pcm_s16le WAV with scipy), MFCC exactly as
  python_speech_features' defaults compute it (`mfcc`): pre-emphasis 0.97, 25 ms rectangular
  frames every 10 ms, 512-point power spectrum, 26 triangular mel filters 0-8 kHz, log, DCT-II
  (orthonormal) keeping 13, cepstral lifter 22, and coefficient 0 replaced by the log frame energy;
- window v pairs frames v..v+4 with MFCC frames 4v..4v+19, for v < min(frames, samples / 640) - 5.

**Deviation:** syncnet_python crops each frame around a tracked face (S3FD detections smoothed
over 13 frames, a box 2.8 face half-sizes wide reaching from the top of the face box down past the
chin, padded with grey 110, resized to 224). No face detector ships here, so frames are scaled to
cover 224 x 224 and centre-cropped. On talking-head clips framed around the face this is close; on
anything else LSE does not measure lips at all. Every result says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eval.features.base import read_weights_file
from eval.features.weights import weights_hash
from eval.reader import EvalInputError, read_audio, read_video
from eval.sets import ClipRecord

__all__ = ["SyncNet", "SyncNetExtractor", "ClipEmbeddings", "mfcc", "syncnet_windows", "FPS", "SAMPLE_RATE"]

FPS = 25.0
SAMPLE_RATE = 16000
FRAMES_PER_WINDOW = 5
MFCC_PER_FRAME = 4  # 100 MFCC frames per second / 25 video frames per second
MFCC_PER_WINDOW = 20
SIZE = 224

# syncnet_v2 channel widths: the audio and lip convolution stacks, the hidden fc width, the embedding.
OFFICIAL_AUDIO = (64, 192, 384, 256, 256, 512)
OFFICIAL_LIP = (96, 256, 256, 256, 256, 512)


def _conv_stack_2d(w: tuple[int, ...]) -> nn.Sequential:
    """syncnet_python's `netcnnaud` (indices matter: they are the state-dict keys)."""
    return nn.Sequential(
        nn.Conv2d(1, w[0], (3, 3), (1, 1), (1, 1)), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True),
        nn.MaxPool2d((1, 1), (1, 1)),
        nn.Conv2d(w[0], w[1], (3, 3), (1, 1), (1, 1)), nn.BatchNorm2d(w[1]), nn.ReLU(inplace=True),
        nn.MaxPool2d((3, 3), (1, 2)),
        nn.Conv2d(w[1], w[2], (3, 3), padding=(1, 1)), nn.BatchNorm2d(w[2]), nn.ReLU(inplace=True),
        nn.Conv2d(w[2], w[3], (3, 3), padding=(1, 1)), nn.BatchNorm2d(w[3]), nn.ReLU(inplace=True),
        nn.Conv2d(w[3], w[4], (3, 3), padding=(1, 1)), nn.BatchNorm2d(w[4]), nn.ReLU(inplace=True),
        nn.MaxPool2d((3, 3), (2, 2)),
        nn.Conv2d(w[4], w[5], (5, 4), padding=(0, 0)), nn.BatchNorm2d(w[5]), nn.ReLU(),
    )


def _conv_stack_3d(w: tuple[int, ...]) -> nn.Sequential:
    """syncnet_python's `netcnnlip`."""
    return nn.Sequential(
        nn.Conv3d(3, w[0], (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(w[0]), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        nn.Conv3d(w[0], w[1], (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(w[1]), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        nn.Conv3d(w[1], w[2], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(w[2]), nn.ReLU(inplace=True),
        nn.Conv3d(w[2], w[3], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(w[3]), nn.ReLU(inplace=True),
        nn.Conv3d(w[3], w[4], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(w[4]), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        nn.Conv3d(w[4], w[5], (1, 6, 6), padding=0), nn.BatchNorm3d(w[5]), nn.ReLU(inplace=True),
    )


def _head(c_in: int, hidden: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim))


class SyncNet(nn.Module):
    """SyncNet v2: MFCC windows (B, 1, 13, 20) and frame windows (B, 3, 5, 224, 224) -> (B, dim).

    Args:
        audio_widths: channels of the six audio convolutions (official `OFFICIAL_AUDIO`).
        lip_widths: channels of the six lip convolutions (official `OFFICIAL_LIP`).
        hidden: width of the fully connected layer of each head (official 512).
        dim: embedding size (official 1024).
    """

    def __init__(self, audio_widths: tuple[int, ...] = OFFICIAL_AUDIO, lip_widths: tuple[int, ...] = OFFICIAL_LIP,
                 hidden: int = 512, dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = _conv_stack_2d(audio_widths)
        self.netfcaud = _head(audio_widths[-1], hidden, dim)
        self.netcnnlip = _conv_stack_3d(lip_widths)
        self.netfclip = _head(lip_widths[-1], hidden, dim)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 13, 20) MFCC -> (B, dim)."""
        mid = self.netcnnaud(x)  # (B, C, 1, 1)
        return self.netfcaud(mid.flatten(1))  # (B, dim)

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 5, 224, 224) BGR 0-255 -> (B, dim)."""
        mid = self.netcnnlip(x)  # (B, C, 1, 1, 1)
        return self.netfclip(mid.flatten(1))  # (B, dim)


# ---------------------------------------------------------------------------------------------
# MFCC as python_speech_features 0.6 computes it with its defaults (the reference front end).


def _hz2mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel2hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _filterbank(nfilt: int, nfft: int, sample_rate: int) -> np.ndarray:
    """(nfilt, nfft // 2 + 1) triangles on integer FFT bins, as python_speech_features builds them."""
    mel = np.linspace(_hz2mel(0.0), _hz2mel(sample_rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(mel) / sample_rate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = int(bins[j]), int(bins[j + 1]), int(bins[j + 2])
        for i in range(lo, mid):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(mid, hi):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def mfcc(signal: np.ndarray, sample_rate: int = SAMPLE_RATE, *, numcep: int = 13, nfilt: int = 26,
         nfft: int = 512, winlen: float = 0.025, winstep: float = 0.01, preemph: float = 0.97,
         ceplifter: int = 22) -> np.ndarray:
    """(S,) signal -> (frames, numcep) MFCC, python_speech_features' `mfcc` with its defaults."""
    from scipy.fft import dct

    x = np.asarray(signal, np.float64)
    x = np.append(x[:1], x[1:] - preemph * x[:-1])
    flen, fstep = int(round(winlen * sample_rate)), int(round(winstep * sample_rate))
    n = 1 if len(x) <= flen else 1 + math.ceil((len(x) - flen) / fstep)
    x = np.concatenate([x, np.zeros(max(0, (n - 1) * fstep + flen - len(x)))])
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    frames = x[idx]  # (n, flen); rectangular window (the library's default winfunc)
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft  # (n, nfft/2+1)
    eps = np.finfo(float).eps
    energy = pspec.sum(axis=1)
    energy[energy == 0] = eps
    feat = pspec @ _filterbank(nfilt, nfft, sample_rate).T  # (n, nfilt)
    feat[feat == 0] = eps
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    lift = 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    cep = cep * lift
    cep[:, 0] = np.log(energy)
    return cep


def syncnet_windows(frames_bgr: torch.Tensor, mfcc_ct: torch.Tensor,
                    n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Paired windows of `SyncNetInstance.evaluate`.

    Args:
        frames_bgr: (T, 3, H, W) float frames at 25 fps.
        mfcc_ct: (13, F) MFCC at 100 frames per second.
        n_samples: audio samples at 16 kHz the MFCC came from.

    Returns:
        (video windows (N, 3, 5, H, W), audio windows (N, 1, 13, 20)), N = min(T, n_samples // 640) - 5.
    """
    n = min(frames_bgr.shape[0], n_samples // 640) - FRAMES_PER_WINDOW
    if n <= 0:
        return frames_bgr.new_zeros((0, 3, 5, *frames_bgr.shape[2:])), mfcc_ct.new_zeros((0, 1, 13, 20))
    v = torch.stack([frames_bgr[i:i + FRAMES_PER_WINDOW] for i in range(n)]).permute(0, 2, 1, 3, 4)  # (N, 3, 5, H, W)
    a = torch.stack([mfcc_ct[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_PER_WINDOW] for i in range(n)])
    return v, a[:, None]  # (N, 3, 5, H, W), (N, 1, 13, 20)


class ClipEmbeddings:
    """Per-window embeddings of one clip: `video` (N, D) and `audio` (N, D), window v at v / 25 s."""

    def __init__(self, video: np.ndarray, audio: np.ndarray) -> None:
        self.video, self.audio = video, audio


class SyncNetExtractor:
    """SyncNet loaded from a local `syncnet_v2.model` (a state dict), with the reference preprocessing.

    Args:
        path: the state dict file.
        device: where the network runs.
        batch_size: windows per forward pass (syncnet_python uses 20).
    """

    name = "syncnet"

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", batch_size: int = 20) -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        self.batch_size = batch_size
        state = read_weights_file(self.path, "SyncNet state dict", "; pass syncnet_v2.model")
        self.model = _syncnet_for(state, self.path)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise EvalInputError(f"{self.path}: does not match SyncNet's layout (missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}).")
        self.model.to(self.device).eval()
        self.weight_hash = weights_hash(self.path)

    def preprocess(self, record: ClipRecord) -> tuple[torch.Tensor, torch.Tensor, int]:
        """A clip -> (frames (T, 3, 224, 224) BGR 0-255 at 25 fps, MFCC (13, F) at 100 Hz, samples)."""
        frames, _ = read_video(record.path, fps=FPS, size=SIZE, start=record.start, duration=record.duration)
        audio, _ = read_audio(record.path, sample_rate=SAMPLE_RATE, channels=1, start=record.start,
                              duration=record.duration)
        bgr = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        cep = mfcc(audio[0].astype(np.float64) * 32768.0)  # the reference reads int16 samples
        return bgr, torch.from_numpy(cep.T.copy()).float(), int(audio.shape[1])

    @torch.inference_mode()
    def embed(self, frames_bgr: torch.Tensor, mfcc_ct: torch.Tensor, n_samples: int) -> ClipEmbeddings:
        """Embeddings of every window (see `syncnet_windows`)."""
        v, a = syncnet_windows(frames_bgr, mfcc_ct, n_samples)
        vs, aus = [], []
        for s in range(0, v.shape[0], self.batch_size):
            vs.append(self.model.forward_lip(v[s:s + self.batch_size].to(self.device)).float().cpu())
            aus.append(self.model.forward_aud(a[s:s + self.batch_size].to(self.device)).float().cpu())
        if not vs:
            return ClipEmbeddings(np.zeros((0, 1)), np.zeros((0, 1)))
        return ClipEmbeddings(torch.cat(vs).numpy(), torch.cat(aus).numpy())

    def clip(self, record: ClipRecord) -> ClipEmbeddings:
        """Read, preprocess and embed one clip."""
        emb = self.embed(*self.preprocess(record))
        if emb.video.shape[0] == 0:
            raise EvalInputError(f"{record.path}: shorter than SyncNet's 0.2 s window plus 0.04 s; LSE needs "
                                 "at least 6 frames at 25 fps.", path=record.path)
        return emb

    def preprocessing(self) -> dict[str, Any]:
        return {
            "video": "25 fps, cover 224x224 + centre crop (no face track: deviation), BGR 0-255, 5-frame windows",
            "audio": "16 kHz mono, int16 scale, MFCC 13 (python_speech_features defaults: 25 ms / 10 ms, "
                     "26 mel, lifter 22, log energy as c0), 20-frame windows",
            "offsets": "±15 frames (0.6 s)",
            "face_crop": "none: centre crop instead of syncnet_python's S3FD face track",
        }


def _syncnet_for(state: dict[str, torch.Tensor], path: Path) -> SyncNet:
    """A SyncNet whose widths match the state dict (the official file gives the official net)."""
    conv_idx = (0, 4, 8, 11, 14, 18)
    try:
        aud = tuple(int(state[f"netcnnaud.{i}.weight"].shape[0]) for i in conv_idx)
        lip = tuple(int(state[f"netcnnlip.{i}.weight"].shape[0]) for i in conv_idx)
        hidden, dim = int(state["netfcaud.0.weight"].shape[0]), int(state["netfcaud.3.weight"].shape[0])
    except KeyError as err:
        raise EvalInputError(f"{path}: missing {err}: not syncnet_python's state dict (keys netcnnaud.N.*, "
                             "netfcaud.N.*, netcnnlip.N.*, netfclip.N.*).") from err
    return SyncNet(aud, lip, hidden, dim)
