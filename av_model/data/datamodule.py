"""Clip datasets and Lightning data modules for autoencoder and generator training.

`ClipDataset` decodes manifest entries into fixed-size clips. A file that fails to decode never
crashes a run: the item is replaced by the next decodable entry and the failure travels with the
batch to the main process, where `ClipDataModule` counts it; `DecodeFailureReport` (added to the
trainer automatically) prints the list at the end of every epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from av_model.data.synthetic import ClipLength, SynthConfig, SyntheticStream
from avio import ManifestEntry, MediaError, load_manifest, probe, read_clip

__all__ = [
    "ClipDataConfig",
    "ClipDataModule",
    "ClipDataset",
    "DecodeFailureReport",
    "SyntheticDataModule",
    "collate_clips",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipDataConfig(ClipLength):
    """How clips are decoded (shared by every split).

    Attributes:
        fps: output frame rate.
        size: output frame size, an int for a square or (H, W); frames are scaled to cover it and
            centre-cropped.
        duration: clip length in seconds; every item has exactly round(duration * fps) frames and
            round(duration * sample_rate) samples, so items batch.
        sample_rate: output audio rate.
        channels: output audio channels.
        require_audio: skip files without audio (else they get silent audio).
        max_retries: consecutive undecodable entries tried before giving up on an item.
        with_audio: False decodes the frames alone (items and batches have no "audio"), for
            consumers of the picture only such as the video autoencoder: half the decoding time of
            a 64 px clip with its sound.
    """

    fps: float = 16.0
    size: int | tuple[int, int] = 64
    duration: float = 2.0
    sample_rate: int = 24000
    channels: int = 1
    require_audio: bool = True
    max_retries: int = 16
    with_audio: bool = True

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0; got {self.fps!r}.")
        if not isinstance(self.size, int):
            object.__setattr__(self, "size", tuple(self.size))  # YAML gives lists
        sizes = (self.size,) if isinstance(self.size, int) else self.size
        if len(sizes) != (1 if isinstance(self.size, int) else 2) or any(
            not isinstance(s, int) or s <= 0 for s in sizes
        ):
            raise ValueError(f"size must be a positive int or (height, width); got {self.size!r}.")
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0 seconds; got {self.duration!r}.")
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int; got {self.sample_rate!r}.")
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2; got {self.channels!r}.")
        if self.max_retries < 1:
            raise ValueError(f"max_retries must be >= 1; got {self.max_retries!r}.")


class ClipDataset(Dataset):
    """Decoded clips of a manifest.

    Items are dicts {"id": str, "frames": (T, H, W, 3) uint8, "audio": (C, S) float32 (absent with
    `config.with_audio` False), "caption": str, "skipped": list of {"id", "path", "error"} for
    entries that failed on the way}.

    Args:
        manifest: a manifest path (JSONL/CSV, or a dataset folder) or loaded entries.
        split: keep only entries of this split (None keeps all).
        config: decoding settings (fps, size, duration, sample rate, channels).
        random_offset: start each clip at a random time inside the entry (training); otherwise at
            the entry's start.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[ManifestEntry],
        split: str | None = None,
        config: ClipDataConfig | None = None,
        random_offset: bool = False,
    ) -> None:
        entries = load_manifest(manifest) if isinstance(manifest, str | Path) else list(manifest)
        self.entries = [e for e in entries if split is None or e.split == split]
        if not self.entries:
            present = sorted({str(e.split) for e in entries})
            raise ValueError(f"the manifest has no entries with split {split!r} (splits present: {present}); "
                             "choose one of those or pass split=None for every entry.")
        self.config = config or ClipDataConfig()
        self.random_offset = random_offset

    def __len__(self) -> int:
        return len(self.entries)

    def _start(self, entry: ManifestEntry) -> float:
        if not self.random_offset:
            return entry.start
        end = entry.end if entry.end is not None else probe(entry.path).duration
        slack = end - entry.start - self.config.duration
        # torch's generator: DataLoader seeds it differently in every worker and epoch
        return entry.start + max(slack, 0.0) * float(torch.rand(()))

    def _load(self, entry: ManifestEntry) -> dict[str, Any]:
        cfg = self.config
        clip = read_clip(
            entry.path, fps=cfg.fps, size=cfg.size, start=self._start(entry), duration=cfg.duration,
            sample_rate=cfg.sample_rate, channels=cfg.channels, require_audio=cfg.require_audio,
            with_audio=cfg.with_audio,
        )
        item = {"id": entry.id, "frames": clip.frames, "caption": entry.caption}
        if cfg.with_audio:
            item["audio"] = clip.audio if clip.audio is not None else torch.zeros(cfg.channels, cfg.num_samples)
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[dict[str, str]] = []
        tries = min(self.config.max_retries, len(self.entries))
        for k in range(tries):
            entry = self.entries[(index + k) % len(self.entries)]
            try:
                item = self._load(entry)
            except MediaError as err:
                skipped.append({"id": entry.id, "path": str(entry.path), "error": str(err)})
                continue
            item["skipped"] = skipped
            return item
        raise RuntimeError(
            f"{tries} consecutive manifest entries from index {index} failed to decode; the dataset is "
            f"probably unusable (first error: {skipped[0]['error']}). Run `avgen data check MANIFEST`."
        )


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch clip items.

    Returns:
        {"id": list[str], "video": (B, 3, T, H, W) float32 in [-1, 1], "audio": (B, C, S) float32
        (when the items have it), "caption": list[str], "skipped": list of failure records}, plus any other per-item field
        (e.g. "events" of synthetic clips) as a list.
    """
    frames = torch.stack([it["frames"] for it in items])  # (B, T, H, W, 3) uint8
    video = frames.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)  # (B, 3, T, H, W)
    batch: dict[str, Any] = {
        "id": [it["id"] for it in items],
        "video": video,
        "caption": [it["caption"] for it in items],
        "skipped": [s for it in items for s in it.get("skipped", [])],
    }
    if "audio" in items[0]:
        batch["audio"] = torch.stack([it["audio"] for it in items])  # (B, C, S)
    for key in items[0]:
        if key not in batch and key != "frames":
            batch[key] = [it[key] for it in items]
    return batch


class DecodeFailureReport(L.Callback):
    """Prints, at the end of every train and validation epoch, which files were skipped and why."""

    def _report(self, trainer: L.Trainer, stage: str) -> None:
        dm = trainer.datamodule  # type: ignore[attr-defined]
        if not isinstance(dm, ClipDataModule):
            return
        failures = dm.pop_failures(stage)
        if failures and trainer.is_global_zero:
            log.warning(ClipDataModule.summarize(failures, f"{stage} epoch {trainer.current_epoch}"))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "train")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "validate")


class ClipDataModule(L.LightningDataModule):
    """Batches of decoded clips from a manifest, decoded in worker processes.

    Batches are {"id": list, "video": (B, 3, T, H, W) float in [-1, 1], "audio": (B, C, S) float,
    "caption": list[str]}. Files that fail to decode are skipped, counted, and listed at the end
    of the epoch (see `DecodeFailureReport`, added to the trainer by `setup`).

    Args:
        manifest: manifest file (JSONL/CSV) or dataset folder.
        batch_size: clips per batch.
        num_workers: decoding processes (0 decodes in the main process).
        fps, size, duration, sample_rate, channels, require_audio, with_audio: see `ClipDataConfig`.
        train_split, val_split, test_split: manifest splits per stage (None: every entry for
            train; no loader for val/test).
        random_offset: random start inside longer entries when training.
        seed: seeds the shuffling and the workers' random offsets, so a run sees the same clips
            in the same order every time.
    """

    def __init__(
        self,
        manifest: str,
        batch_size: int = 8,
        num_workers: int = 2,
        fps: float = 16.0,
        size: int | tuple[int, int] = 64,
        duration: float = 2.0,
        sample_rate: int = 24000,
        channels: int = 1,
        require_audio: bool = True,
        with_audio: bool = True,
        train_split: str | None = "train",
        val_split: str | None = "val",
        test_split: str | None = "heldout",
        random_offset: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {num_workers}.")
        self.save_hyperparameters()
        self.manifest = manifest
        self.batch_size, self.num_workers = batch_size, num_workers
        self.config = ClipDataConfig(fps, size, duration, sample_rate, channels, require_audio,
                                     with_audio=with_audio)
        self.splits = {"train": train_split, "validate": val_split, "test": test_split}
        self.random_offset, self.seed = random_offset, seed
        self.datasets: dict[str, ClipDataset] = {}
        self.failures: dict[str, list[dict[str, str]]] = {}

    def setup(self, stage: str) -> None:
        entries = load_manifest(self.manifest)
        wanted = {"fit": ("train", "validate"), "validate": ("validate",), "test": ("test",), "predict": ("test",)}
        for name in wanted.get(stage, ()):
            split = self.splits[name]
            if name != "train" and split is None:
                continue
            if name != "train" and not any(e.split == split for e in entries):
                log.warning("%s: no entries with split %r; no %s loader.", self.manifest, split, name)
                continue
            self.datasets[name] = ClipDataset(entries, split, self.config, self.random_offset and name == "train")
        trainer = self.trainer
        # Lightning reads `trainer.callbacks` at every hook, so a callback added here still runs
        callbacks = trainer.callbacks if trainer is not None else None  # type: ignore[attr-defined]
        if callbacks is not None and not any(isinstance(cb, DecodeFailureReport) for cb in callbacks):
            callbacks.append(DecodeFailureReport())

    def _loader(self, name: str, shuffle: bool) -> DataLoader | list:
        if name not in self.datasets:
            return []  # Lightning skips a stage whose loader is empty
        # the generator drives the shuffle order and the workers' base seed (hence random offsets)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.datasets[name], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
            collate_fn=collate_clips, pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0, drop_last=False, generator=generator,
        )

    def train_dataloader(self) -> DataLoader | list:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("validate", shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        # runs in the main process, so failures from every worker are counted here
        skipped = batch.pop("skipped", [])
        if skipped:
            trainer = self.trainer
            stage = "train" if trainer is None or trainer.training else "validate"
            self.failures.setdefault(stage, []).extend(skipped)
        return batch

    def pop_failures(self, stage: str) -> list[dict[str, str]]:
        """Failures recorded for `stage` ("train"/"validate") since the last call."""
        return self.failures.pop(stage, [])

    @staticmethod
    def summarize(failures: list[dict[str, str]], what: str) -> str:
        """A readable list of skipped files, one line each with the reason."""
        by_id: dict[str, dict[str, str]] = {f["id"]: f for f in failures}
        lines = [f"{what}: skipped {len(failures)} clip read(s) from {len(by_id)} file(s) that failed to decode:"]
        lines += [f"  {f['id']}: {f['error']}" for f in by_id.values()]
        lines.append("Run `avgen data check MANIFEST` to list every bad file, then fix or remove them.")
        return "\n".join(lines)


class SyntheticDataModule(L.LightningDataModule):
    """Synthetic clips generated in memory (no files), batched like `ClipDataModule`.

    Args:
        batch_size, num_workers: as for `ClipDataModule`.
        train_clips, val_clips: clips per epoch of each split.
        width, height, fps, duration, sample_rate: clip geometry (see `SynthConfig`).
        seed: dataset seed; the clips equal those `avgen data synth --seed` writes (before compression).
    """

    def __init__(
        self,
        batch_size: int = 8,
        num_workers: int = 2,
        train_clips: int = 1000,
        val_clips: int = 64,
        width: int = 64,
        height: int = 64,
        fps: float = 16.0,
        duration: float = 2.0,
        sample_rate: int = 24000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = SynthConfig(width=width, height=height, fps=fps, duration=duration, sample_rate=sample_rate)
        self.train = SyntheticStream(self.config, "train", train_clips, seed)
        self.val = SyntheticStream(self.config, "val", val_clips, seed)
        self.batch_size, self.num_workers = batch_size, num_workers

    def _loader(self, stream: SyntheticStream) -> DataLoader:
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=collate_clips, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        batch.pop("skipped", None)
        return batch
