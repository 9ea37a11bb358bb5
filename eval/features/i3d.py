"""I3D features for FVD, following the StyleGAN-V protocol.

StyleGAN-V computes FVD with a TorchScript port of the Kinetics-400 I3D network
(`i3d_torchscript.pt`), called as `detector(videos, rescale=False, resize=False,
return_features=True)` on videos (B, 3, 16, 224, 224) with values in [-1, 1], and takes the
features before the softmax. This module does exactly that: 16 consecutive frames from the
clip's start (at the file's frame rate unless `fps` is set), each frame scaled to cover 224 x 224
(bilinear, keeping the aspect) and centre-cropped, then mapped from [0, 255] to [-1, 1].
Resize and crop choices move FVD by about 10%, so they are recorded with every number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.features.base import FeatureExtractor, Preprocessor
from eval.features.weights import weights_hash
from eval.reader import EvalInputError, read_video
from eval.sets import ClipRecord

__all__ = ["I3DPreprocessor", "I3DExtractor", "load_i3d"]


class I3DPreprocessor(Preprocessor):
    """Clip -> (W, 3, num_frames, size, size) float32 windows in [-1, 1].

    Args:
        num_frames: frames per window (16 in the protocol).
        size: square side the frames are scaled and cropped to (224).
        fps: resample the video to this rate first (None: the file's rate).
        windows: "first" (one window from the start: the protocol) or "all" (every
            non-overlapping window of the clip).
    """

    def __init__(self, num_frames: int = 16, size: int = 224, fps: float | None = None, windows: str = "first") -> None:
        if num_frames < 1 or size < 8:
            raise ValueError(f"num_frames must be >= 1 and size >= 8, got {num_frames}, {size}.")
        if windows not in ("first", "all"):
            raise ValueError(f"windows must be 'first' or 'all', got {windows!r}.")
        self.num_frames, self.size, self.fps, self.windows = num_frames, size, fps, windows

    def __call__(self, record: ClipRecord) -> torch.Tensor:
        frames, _ = read_video(record.path, fps=self.fps, size=self.size, start=record.start,
                               duration=record.duration)
        if frames.shape[0] < self.num_frames:
            raise EvalInputError(
                f"{record.path}: has {frames.shape[0]} frames; FVD's I3D needs {self.num_frames} consecutive "
                "frames. Generate longer clips or evaluate at a higher fps."
            )
        n_win = 1 if self.windows == "first" else frames.shape[0] // self.num_frames
        clip = frames[: n_win * self.num_frames].reshape(n_win, self.num_frames, *frames.shape[1:])  # (W, T, H, W, 3)
        x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 4, 1, 2, 3).float()  # (W, 3, T, H, W)
        return x / 127.5 - 1.0


class I3DExtractor(FeatureExtractor):
    """I3D TorchScript detector; `embed` maps (B, 3, T, 224, 224) in [-1, 1] to (B, D) features."""

    name = "i3d"
    preprocessor: I3DPreprocessor

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", num_frames: int = 16,
                 size: int = 224, fps: float | None = None, windows: str = "first") -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except (RuntimeError, ValueError) as err:
            raise EvalInputError(
                f"{self.path}: not a TorchScript I3D detector ({err}); pass StyleGAN-V's i3d_torchscript.pt."
            ) from err
        self.weight_hash = weights_hash(self.path)
        self.preprocessor = I3DPreprocessor(num_frames, size, fps, windows)

    def embed(self, units: torch.Tensor) -> torch.Tensor:
        feats = self.model(units, rescale=False, resize=False, return_features=True)  # (B, D)
        return feats.reshape(units.shape[0], -1)

    def preprocessing(self) -> dict[str, Any]:
        p = self.preprocessor
        return {
            "frames": p.num_frames,
            "fps": p.fps if p.fps is not None else "native",
            "size": f"{p.size}x{p.size}",
            "resize": "bilinear cover + centre crop",
            "value_range": "[-1, 1]",
            "windows": p.windows,
            "detector_call": "rescale=False, resize=False, return_features=True",
        }


def load_i3d(path: str | Path, **kwargs: Any) -> I3DExtractor:
    """Load the TorchScript I3D detector from a local file (see `I3DExtractor` for options)."""
    return I3DExtractor(path, **kwargs)
