"""The feature-extractor interface and the batched extraction loop.

An extractor has two halves:

- a picklable `Preprocessor` that turns one clip record into a tensor of "units" (U, ...): I3D
  windows, VGGish log-mel examples, audio windows, frames. It runs in DataLoader worker processes,
  so decoding and resampling overlap with the network;
- `embed`, which turns a batch of units (B, ...) into features (B, D) on the extractor's device.

`extract_features` runs both over a set with a progress bar and returns the features with the
index of the clip each row came from (a clip may give several rows: audio frames).

The audio-video networks of av-benchmark's protocol (Synchformer, ImageBind) embed a clip as a
whole instead (`WindowedExtractor`): they read its first `duration` seconds, video and audio.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from avtrain.weights_file import UnreadableWeightsError, load_weights_file
from eval.features.weights import weights_hash
from eval.reader import EvalInputError
from eval.sets import ClipRecord

__all__ = ["Preprocessor", "FeatureExtractor", "Features", "extract_features", "read_weights_file",
           "WindowedExtractor"]


def read_weights_file(path: Path, what: str, hint: str = "") -> dict[str, Any]:
    """The dict (a state dict or a checkpoint) saved in `path`, loaded on the CPU with
    `weights_only=True` (no code from the file runs).

    Raises:
        EvalInputError: the file cannot be read, or holds something else than a dict; the message
            names `what` was expected and ends with `hint` (e.g. "; pass syncnet_v2.model").
    """
    try:
        state = load_weights_file(path)
    except UnreadableWeightsError as err:
        raise EvalInputError(f"{path}: not a readable {what} ({err.reason}){hint}.") from err
    if not isinstance(state, dict):
        raise EvalInputError(f"{path}: holds a {type(state).__name__}, not a {what}{hint}.")
    return state


class WindowedExtractor(ABC):
    """A network that embeds the first `duration` seconds of each clip, loaded from a local state dict.

    Args:
        path: the state dict file.
        device: where the network runs.
        duration: seconds of each clip read (av-benchmark: 8).
        batch_size: units per forward pass.

    A subclass names its file (`what`, e.g. "Synchformer state dict") and the layout it expects
    (`layout`, for the error), and builds its network with the weights in `_load`.
    """

    name: str
    what: str
    layout: str
    model: nn.Module

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", duration: float = 8.0,
                 batch_size: int = 8) -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        self.duration, self.batch_size = duration, batch_size
        state = read_weights_file(self.path, self.what)
        try:
            model = self._load(state)
        except (KeyError, RuntimeError, ValueError) as err:
            raise EvalInputError(f"{self.path}: does not match {self.layout} ({err}).") from err
        self.model = model.to(self.device).eval()
        self.weight_hash = weights_hash(self.path)

    @abstractmethod
    def _load(self, state: dict[str, Any]) -> nn.Module:
        """The network with `state` loaded strictly (raises KeyError, RuntimeError or ValueError when
        the state dict does not fit)."""


class Preprocessor(ABC):
    """Turns a clip into the units its extractor embeds; must be picklable (runs in workers)."""

    @abstractmethod
    def __call__(self, record: ClipRecord) -> torch.Tensor:
        """Units (U, ...) of one clip."""


class FeatureExtractor(ABC):
    """A frozen network (or codec) that embeds clips.

    Attributes:
        name: short name for reports ("i3d", "vggish", ...).
        weight_hash: hash of the weights in use (`weights_hash`).
        preprocessor: the clip -> units transform.
        device: where `embed` runs.
    """

    name: str
    weight_hash: str
    preprocessor: Preprocessor
    device: torch.device

    @abstractmethod
    def embed(self, units: torch.Tensor) -> torch.Tensor:
        """Features (B, D) of units (B, ...), or (B, K, D) when each unit gives K rows (frames)."""

    @abstractmethod
    def preprocessing(self) -> dict[str, Any]:
        """What the input went through (rate, size, value range, windows), recorded with numbers."""


@dataclass
class Features:
    """Features of a set.

    Attributes:
        values: (N, D) float64.
        groups: (N,) index of the clip of each row (into `ids`).
        ids: clip ids, in set order.
    """

    values: np.ndarray
    groups: np.ndarray
    ids: list[str] = field(default_factory=list)

    @property
    def n_clips(self) -> int:
        return len(self.ids)

    def per_clip_mean(self) -> np.ndarray:
        """(n_clips, D): the mean feature of each clip's rows."""
        out = np.zeros((self.n_clips, self.values.shape[1]))
        np.add.at(out, self.groups, self.values)
        counts = np.bincount(self.groups, minlength=self.n_clips)[:, None]
        return out / np.maximum(counts, 1)


class _ClipUnits(Dataset):
    def __init__(self, records: Sequence[ClipRecord], pre: Preprocessor) -> None:
        self.records = list(records)
        self.pre = pre

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, self.pre(self.records[i])


def _first(batch: list[Any]) -> Any:
    return batch[0]


def extract_features(
    extractor: FeatureExtractor,
    records: Sequence[ClipRecord],
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    desc: str = "features",
    progress: bool = True,
) -> Features:
    """Embed every clip of `records`.

    Args:
        extractor: the feature extractor.
        records: clips.
        batch_size: units per forward pass.
        num_workers: DataLoader worker processes that decode and preprocess clips.
        desc: progress bar label.
        progress: show a progress bar.

    Returns:
        `Features` with one or more rows per clip.

    Raises:
        EvalInputError: a clip gives no units (too short for the extractor) or cannot be read.
    """
    if batch_size < 1:
        raise EvalInputError(f"batch_size must be >= 1, got {batch_size}.")
    loader = DataLoader(_ClipUnits(records, extractor.preprocessor), batch_size=1, shuffle=False,
                        num_workers=num_workers, collate_fn=_first,
                        persistent_workers=False)
    rows: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    buffer: list[torch.Tensor] = []
    owners: list[int] = []  # clip index of each buffered unit

    def flush() -> None:
        if not buffer:
            return
        units = torch.cat(buffer)  # (U, ...)
        owner = np.asarray(owners, dtype=np.int64)
        with torch.inference_mode():
            for s in range(0, units.shape[0], batch_size):
                feats = extractor.embed(units[s:s + batch_size].to(extractor.device))  # (b, D) or (b, K, D)
                per_unit = 1 if feats.ndim == 2 else feats.shape[1]
                rows.append(feats.reshape(-1, feats.shape[-1]).detach().float().cpu().numpy().astype(np.float64))
                groups.append(np.repeat(owner[s:s + batch_size], per_unit))
        buffer.clear()
        owners.clear()

    for i, units in tqdm(loader, total=len(records), desc=desc, disable=not progress, leave=False):
        if units.shape[0] == 0:
            raise EvalInputError(f"{records[i].path}: gives no input for {extractor.name} (too short?).")
        if buffer and units.shape[1:] != buffer[0].shape[1:]:
            flush()  # units of different shapes (clips of different lengths) cannot share a batch
        buffer.append(units)
        owners.extend([i] * units.shape[0])
        if len(owners) >= batch_size:
            flush()
    flush()
    values = np.concatenate(rows) if rows else np.zeros((0, 0))
    if not np.all(np.isfinite(values)):
        raise EvalInputError(f"{extractor.name} produced NaN or infinite features; check the weights and inputs.")
    return Features(values=values, groups=np.concatenate(groups) if groups else np.zeros(0, np.int64),
                    ids=[r.id for r in records])
