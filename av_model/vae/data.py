"""Data for autoencoder training: clips from a manifest, or synthetic clips generated in memory.

With `manifest` set, batches come from `av_model.data.ClipDataModule` (decoded from files in worker
processes, frames only, undecodable files skipped and reported), or with `preload` from memory after
one decoding pass over the manifest. Without it, clips of the synthetic dataset are
drawn in memory from their seeds: nothing to prepare, which is what tests and a first try want.
Either way a batch is `{"id": list[str], "video": (B, 3, T, H, W) float in [-1, 1], "caption": list[str]}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch): a run resumed at an epoch boundary sees the
    same order as an uninterrupted one. Lightning calls `set_epoch` before each epoch."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class InMemoryClips(Dataset[dict[str, Any]]):
    """Clips held as uint8 `(N, T, H, W, 3)`; items are `{"id", "video" (3, T, H, W) in [-1, 1], "caption"}`."""

    def __init__(self, frames: np.ndarray, ids: list[str], captions: list[str]) -> None:
        if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, T, H, W, 3), got {frames.dtype} {frames.shape}.")
        self.frames, self.ids, self.captions = frames, ids, captions

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, Any]:
        video = torch.from_numpy(self.frames[i]).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (3, T, H, W)
        return {"id": self.ids[i], "video": video, "caption": self.captions[i]}


def synthetic_clips(n: int, split: str, seed: int, size: int, fps: float, duration: float) -> InMemoryClips:
    """`n` clips of a split of the synthetic dataset made with `seed`, drawn in memory (as `avgen data synth` would)."""
    from av_model.data.synthetic import SynthConfig, clip_seed, generate_clip

    config = SynthConfig(width=size, height=size, fps=fps, duration=duration)
    clips = [
        generate_clip(clip_seed(seed, split, i), config, split=split, clip_id=f"{split}-{i:05d}")
        for i in tqdm(range(n), desc=f"synthetic {split}", leave=False)
    ]
    frames = np.stack([c.frames for c in clips])  # (N, T, H, W, 3)
    return InMemoryClips(frames, [c.id for c in clips], [c.caption for c in clips])


class VideoClipDataModule(L.LightningDataModule):
    """Clips for autoencoder training.

    Args:
        manifest: a JSONL/CSV manifest (e.g. from `avgen data synth`); its "train" and "val"
            splits are used (all entries for training when it has no splits). None draws
            synthetic clips in memory instead.
        fps: frame rate clips are resampled to.
        size: frames are scaled and centre-cropped to `size` x `size` (a multiple of the
            autoencoder's spatial compression).
        duration: seconds per clip (fps * duration frames, a multiple of the temporal compression).
        batch_size: clips per batch.
        num_workers: decoding worker processes (manifest only).
        preload: decode every train and val clip of the manifest once, at setup (in `num_workers`
            processes), and train from memory: `N x T x H x W x 3` bytes (about 1 GB for 2,500
            clips of 32 frames at 64 px). Each clip then keeps one window (its first `duration`
            seconds) instead of a random one per epoch. A GPU run small enough to outpace its
            decoders wants it (the reference recipe: 1,000 steps of 16 clips decode 16,000 clips).
        synthetic_train: synthetic training clips (without a manifest).
        synthetic_val: synthetic validation clips (without a manifest).
        seed: seeds the synthetic clips and the shuffling.
    """

    def __init__(
        self,
        manifest: str | None = None,
        fps: float = 16.0,
        size: int = 64,
        duration: float = 2.0,
        batch_size: int = 4,
        num_workers: int = 0,
        preload: bool = False,
        synthetic_train: int = 64,
        synthetic_val: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if manifest is not None and not Path(manifest).is_file():
            raise FileNotFoundError(
                f"manifest {manifest} does not exist; make one with `avgen data synth --out DIR ...` "
                f"(it writes DIR/manifest.jsonl) or leave data.manifest unset to train on synthetic clips in memory."
            )
        if fps <= 0 or duration <= 0:
            raise ValueError(f"fps and duration must be > 0, got {fps} and {duration}.")
        if size < 8 or size % 2:
            raise ValueError(f"size must be an even number of pixels >= 8, got {size}.")
        if batch_size < 1 or num_workers < 0 or synthetic_train < 1 or synthetic_val < 0:
            raise ValueError("batch_size and synthetic_train must be >= 1; num_workers and synthetic_val >= 0.")
        self.manifest = manifest
        self.fps, self.size, self.duration = float(fps), int(size), float(duration)
        self.batch_size, self.num_workers, self.preload = batch_size, num_workers, preload
        self.synthetic_train, self.synthetic_val, self.seed = synthetic_train, synthetic_val, seed
        self._clip_dm: L.LightningDataModule | None = None
        self._train: InMemoryClips | None = None
        self._val: InMemoryClips | None = None

    def _clip_datamodule(self) -> L.LightningDataModule:
        if self._clip_dm is None:
            from av_model.data import ClipDataModule

            assert self.manifest is not None, "only manifest-backed data has a clip datamodule"
            self._clip_dm = ClipDataModule(
                manifest=self.manifest,
                fps=self.fps,
                size=self.size,
                duration=self.duration,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                require_audio=False,
                with_audio=False,  # the autoencoder reads pictures: decoding the sound would double the cost
                random_offset=not self.preload,  # preloaded: one window per clip, its first `duration` seconds
                seed=self.seed,
            )
        return self._clip_dm

    def setup(self, stage: str | None = None) -> None:
        if self.manifest is not None:
            dm = self._clip_datamodule()
            dm.trainer = self.trainer
            dm.setup(stage or "fit")
            if self.preload and self._train is None:
                self._train = _decode_into_memory(dm, "train", self.num_workers)
                self._val = _decode_into_memory(dm, "validate", self.num_workers)
            return
        if self._train is None:
            self._train = synthetic_clips(self.synthetic_train, "train", self.seed, self.size, self.fps, self.duration)
            if self.synthetic_val:
                self._val = synthetic_clips(self.synthetic_val, "val", self.seed, self.size, self.fps, self.duration)

    def train_dataloader(self) -> Any:
        if self.manifest is not None and not self.preload:
            return self._clip_datamodule().train_dataloader()
        if self._train is None:
            self.setup("fit")
        assert self._train is not None
        return DataLoader(
            self._train,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(self._train), self.seed),
            drop_last=len(self._train) >= self.batch_size,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # ClipDataModule counts the files its workers could not decode here (and reports them).
        if self._clip_dm is not None and not self.preload:
            return self._clip_dm.on_after_batch_transfer(batch, dataloader_idx)
        return batch

    def val_dataloader(self) -> Any:
        if self.manifest is not None and not self.preload:
            return self._clip_datamodule().val_dataloader()
        if self._val is None:
            return []
        return DataLoader(self._val, batch_size=self.batch_size, shuffle=False)


def _decode_into_memory(dm: Any, split: str, num_workers: int) -> InMemoryClips | None:
    """Every clip of one split of a `ClipDataModule`, decoded once (in worker processes) into memory."""
    from av_model.data import ClipDataModule

    dataset = dm.datasets.get(split)
    if dataset is None:
        return None
    cfg = dataset.config
    n_frames = round(cfg.duration * cfg.fps)
    h, w = (cfg.size, cfg.size) if isinstance(cfg.size, int) else cfg.size
    gib = len(dataset) * n_frames * h * w * 3 / 2**30
    total = _memory_gib()
    if total is not None and gib > total / 2:
        raise ValueError(f"data.preload: the {len(dataset)} {split} clips take {gib:.1f} GiB decoded, more than half of "
                         f"this machine's {total:.1f} GiB of memory; set data.preload false to decode them as "
                         "training goes (with data.num_workers processes).")
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_identity)
    frames = np.empty((len(dataset), n_frames, h, w, 3), dtype=np.uint8)  # filled in place: no second copy
    ids: list[str] = []
    captions: list[str] = []
    skipped: list[dict[str, str]] = []
    for k, item in enumerate(tqdm(loader, total=len(dataset), unit="clip", leave=False,
                                  desc=f"decoding {split} clips into memory ({gib:.2f} GiB)")):
        frames[k] = np.asarray(item["frames"])
        ids.append(item["id"])
        captions.append(item["caption"])
        skipped.extend(item["skipped"])
    if skipped:  # an undecodable file's place went to the next entry, as in training from files
        tqdm.write(ClipDataModule.summarize(skipped, f"preloading {split}"))
    return InMemoryClips(frames, ids, captions)


def _identity(item: Any) -> Any:
    return item


def _memory_gib() -> float | None:
    """The machine's physical memory in GiB (None where the OS does not say)."""
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):
        return None
