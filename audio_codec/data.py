"""Audio from dataset manifests for codec training, statistics and the benchmark.

The codec needs only the sound of each clip, so it reads audio alone (`avio.read_audio`,
PyAV underneath) instead of decoding video frames as `ClipDataset` would. Manifests are the
project's format, read by `avio.manifest.load_manifest` (JSONL or CSV; each clip has an
id, a path relative to the manifest's folder, a caption, optional start/end seconds and split).

Items are dicts {"id": str, "audio": (C, S) float32}; batches {"id": list[str], "audio": (B, C, S)}.
Files that fail to decode are skipped with a warning naming them, so one bad file does not stop
a training run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from avio import MediaError, load_manifest, probe, read_audio

logger = logging.getLogger("audio_codec")


@dataclass(frozen=True)
class AudioEntry:
    """One clip of a manifest: `path` from `start` for `duration` seconds (None: to the end)."""

    id: str
    path: Path
    start: float = 0.0
    duration: float | None = None
    split: str | None = None


def load_audio_entries(manifest: str | Path, split: str | None = None) -> list[AudioEntry]:
    """Clips of `manifest` (JSONL or CSV, read by `avio.manifest`), optionally of one split.

    Raises:
        FileNotFoundError: no manifest at that path.
        ValueError: unreadable manifest (`ManifestError`), or no clip in the requested split (the
            message lists the splits present).
    """
    path = Path(manifest)
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest {path} does not exist; make one with `avgen data synth --out DIR ...` (it writes "
            "DIR/manifest.jsonl) or point to your own JSONL/CSV manifest."
        )
    clips = load_manifest(path)
    entries = [AudioEntry(id=c.id, path=c.path, start=c.start, duration=c.duration, split=c.split)
               for c in clips if split is None or c.split == split]
    if not entries:
        present = sorted({str(c.split) for c in clips})
        raise ValueError(f"manifest {path} has no clip in split {split!r}; splits present: {present}.")
    return entries


class AudioClipDataset(Dataset):
    """Audio of manifest clips: whole clips, or random/fixed segments of them.

    Args:
        entries: clips (see `load_audio_entries`).
        sample_rate: rate to resample to.
        channels: channels to convert to.
        segment_seconds: length of the returned audio; None returns whole clips (up to
            `max_seconds`). Clips shorter than a segment are zero-padded.
        random_crop: pick the segment's start at random (training) instead of the clip's start.
        transient_crops: with `random_crop`, draw this many candidate crops (within a window of
            four segments) and keep the one with the sharpest onset; 0 or 1 crops uniformly.
        max_seconds: cap on whole-clip length (bounds memory for long files).
    """

    def __init__(self, entries: list[AudioEntry], sample_rate: int, channels: int, *,
                 segment_seconds: float | None = None, random_crop: bool = False, transient_crops: int = 0,
                 max_seconds: float | None = 30.0) -> None:
        if segment_seconds is not None and segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be > 0 or None, got {segment_seconds}.")
        self.entries = entries
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment_seconds = segment_seconds
        self.random_crop = random_crop
        self.transient_crops = transient_crops
        self.max_seconds = max_seconds
        self._durations: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _clip_duration(self, index: int) -> float:
        entry = self.entries[index]
        if entry.duration is not None:
            return entry.duration
        if index not in self._durations:
            self._durations[index] = probe(entry.path).duration - entry.start
        return self._durations[index]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        entry = self.entries[index]
        try:
            available = self._clip_duration(index)
            if self.segment_seconds is None:
                length = available if self.max_seconds is None else min(available, self.max_seconds)
                audio, _ = read_audio(entry.path, sample_rate=self.sample_rate, channels=self.channels,
                                      start=entry.start, duration=length)  # (C, S)
                return {"id": entry.id, "audio": audio}
            audio = self._segment(entry, available)  # (C, S)
        except (MediaError, OSError) as err:
            logger.warning("skipping %s (%s): %s", entry.id, entry.path, err)
            return None
        want = round(self.segment_seconds * self.sample_rate)
        audio = torch.nn.functional.pad(audio, (0, max(0, want - audio.shape[-1])))[:, :want]
        return {"id": entry.id, "audio": audio}

    def _segment(self, entry: AudioEntry, available: float) -> torch.Tensor:
        """One segment of a clip: its start, a uniform random crop, or the most transient of several."""
        assert self.segment_seconds is not None
        length = min(self.segment_seconds, available)
        slack = available - length
        if not self.random_crop or slack <= 0:
            return read_audio(entry.path, sample_rate=self.sample_rate, channels=self.channels,
                              start=entry.start, duration=length)[0]
        if self.transient_crops <= 1:
            offset = float(torch.rand(())) * slack
            return read_audio(entry.path, sample_rate=self.sample_rate, channels=self.channels,
                              start=entry.start + offset, duration=length)[0]
        # Read a window a few segments long and keep the candidate crop with the largest rise of
        # its energy envelope: most random crops of sparse event audio hold no onset at all, and
        # onsets are what the codec must learn to place.
        window = min(available, 4 * length)
        start = float(torch.rand(())) * (available - window)
        audio, _ = read_audio(entry.path, sample_rate=self.sample_rate, channels=self.channels,
                              start=entry.start + start, duration=window)  # (C, W)
        seg = round(length * self.sample_rate)
        offsets = torch.randint(0, max(1, audio.shape[-1] - seg + 1), (self.transient_crops,)).tolist()
        return audio[:, max(offsets, key=lambda o: _max_rise(audio[:, o:o + seg], self.sample_rate)):][:, :seg]


def _max_rise(audio: torch.Tensor, sample_rate: int) -> float:
    """Largest rise (natural log of energy) between 5 ms frames 10 ms apart: how sharp the strongest onset is."""
    frame = max(2, sample_rate // 200)
    if audio.shape[-1] < 3 * frame:
        return 0.0
    energy = audio.pow(2).mean(dim=0).unfold(0, frame, frame).mean(dim=-1)  # (F,)
    level = (energy + 1e-6).log()
    return float((level[2:] - level[:-2]).max())


def collate_audio(items: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Stack items of equal length into {"id": [...], "audio": (B, C, S)}; drops failed items."""
    present = [it for it in items if it is not None]
    if not present:
        return None
    lengths = {it["audio"].shape[-1] for it in present}
    if len(lengths) > 1:
        # Whole clips of different lengths: pad to the longest; only used with batch_size 1 by
        # the statistics, so padding never enters them.
        longest = max(lengths)
        audio = torch.stack([torch.nn.functional.pad(it["audio"], (0, longest - it["audio"].shape[-1]))
                             for it in present])
    else:
        audio = torch.stack([it["audio"] for it in present])
    return {"id": [it["id"] for it in present], "audio": audio}


class CodecDataModule(L.LightningDataModule):
    """Training segments and validation clips of a manifest for `avgen codec fit`.

    Args:
        manifest: JSONL/CSV manifest (e.g. `runs/demo/data/manifest.jsonl`).
        train_split: split trained on.
        val_split: split validated on (None: no validation).
        segment_seconds: length of the random training crops.
        transient_crops: candidate crops per training item, the one with the sharpest onset kept
            (0: uniform crops); sparse event audio otherwise yields mostly onset-free crops.
        val_seconds: length of the validation excerpts (from each clip's start).
        val_clips: number of validation clips.
        batch_size: training batch size.
        num_workers: decoding worker processes (0 decodes in the training process).
        sample_rate: Hz; linked to the codec's by `avgen codec fit`.
        channels: linked to the codec's by `avgen codec fit`.
        stats_clips: training clips the latent statistics are computed on after fitting.
    """

    def __init__(self, manifest: str = "runs/demo/data/manifest.jsonl", train_split: str = "train",
                 val_split: str | None = "val", segment_seconds: float = 0.5, transient_crops: int = 0,
                 val_seconds: float = 2.0,
                 val_clips: int = 4, batch_size: int = 8, num_workers: int = 1, sample_rate: int = 24000,
                 channels: int = 1, stats_clips: int = 256) -> None:
        super().__init__()
        for name, value in (("segment_seconds", segment_seconds), ("val_seconds", val_seconds)):
            if value <= 0:
                raise ValueError(f"data.{name} must be > 0 seconds, got {value}.")
        for name, value in (("batch_size", batch_size), ("sample_rate", sample_rate), ("channels", channels),
                            ("stats_clips", stats_clips)):
            if value <= 0:
                raise ValueError(f"data.{name} must be > 0, got {value}.")
        if num_workers < 0 or val_clips < 0 or transient_crops < 0:
            raise ValueError("data.num_workers, data.val_clips and data.transient_crops must be >= 0, got "
                             f"{num_workers}, {val_clips}, {transient_crops}.")
        self.save_hyperparameters()
        self.manifest = manifest
        self.train_split, self.val_split = train_split, val_split
        self.segment_seconds, self.val_seconds, self.val_clips = segment_seconds, val_seconds, val_clips
        self.transient_crops = transient_crops
        self.batch_size, self.num_workers = batch_size, num_workers
        self.sample_rate, self.channels, self.stats_clips = sample_rate, channels, stats_clips
        self.train_entries: list[AudioEntry] = []
        self.val_entries: list[AudioEntry] = []

    def setup(self, stage: str | None = None) -> None:
        if not self.train_entries:
            self.train_entries = load_audio_entries(self.manifest, self.train_split)
        if self.val_split and self.val_clips and not self.val_entries:
            try:
                self.val_entries = load_audio_entries(self.manifest, self.val_split)[: self.val_clips]
            except ValueError as err:
                logger.warning("no validation: %s", err)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=collate_audio, drop_last=shuffle, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        if len(self.train_entries) < self.batch_size:
            # The training loader drops the last incomplete batch, so there would be no batch at
            # all and Lightning would finish "training" after 0 steps without a word.
            raise ValueError(
                f"the {self.train_split!r} split of {self.manifest} has {len(self.train_entries)} clip(s), fewer than "
                f"data.batch_size={self.batch_size}, so not one full training batch; lower --data.batch_size or "
                "add clips to the split."
            )
        ds = AudioClipDataset(self.train_entries, self.sample_rate, self.channels,
                              segment_seconds=self.segment_seconds, random_crop=True,
                              transient_crops=self.transient_crops)
        return self._loader(ds, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.val_entries:
            return []
        ds = AudioClipDataset(self.val_entries, self.sample_rate, self.channels, segment_seconds=self.val_seconds)
        return self._loader(ds, 1, shuffle=False)

    def stats_dataloader(self) -> DataLoader:
        """Whole training clips (first `stats_clips`), one per batch, for latent statistics."""
        if not self.train_entries:
            self.setup("fit")
        ds = AudioClipDataset(self.train_entries[: self.stats_clips], self.sample_rate, self.channels)
        return DataLoader(ds, batch_size=1, shuffle=False, num_workers=self.num_workers, collate_fn=collate_audio)
