"""Audio of manifest clips: entries, segments, transient-seeking crops, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_codec.data import AudioClipDataset, CodecDataModule, collate_audio, load_audio_entries
from avio import write_audio


def test_entries_resolve_paths_and_filter_splits(tiny_manifest: Path) -> None:
    train = load_audio_entries(tiny_manifest, "train")
    assert [e.id for e in train] == ["train-0", "train-1", "train-2"]
    assert all(e.path.is_file() for e in train) and train[2].duration == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"splits present: \['train', 'val'\]"):
        load_audio_entries(tiny_manifest, "heldout")
    with pytest.raises(FileNotFoundError, match="avgen data synth"):
        load_audio_entries(tiny_manifest.parent / "nope.jsonl")


def test_segments_whole_clips_and_collate(tiny_manifest: Path) -> None:
    entries = load_audio_entries(tiny_manifest, "train")
    segments = AudioClipDataset(entries, 24000, 1, segment_seconds=0.9, random_crop=True)
    items = [segments[i] for i in range(3)]
    assert all(it["audio"].shape == (1, 21600) for it in items)  # the 0.8 s clip is zero-padded
    whole = AudioClipDataset(entries, 16000, 2)
    assert whole[2]["audio"].shape == (2, 12800)
    batch = collate_audio([items[0], None, items[1]])
    assert batch["audio"].shape == (2, 1, 21600) and batch["id"] == ["train-0", "train-1"]
    assert collate_audio([None]) is None


def test_transient_crops_find_the_onset(tmp_path: Path) -> None:
    audio = np.full((1, 48000), 1e-3, dtype=np.float32)  # 2 s of hiss with one tone from 1.3 s
    t = np.arange(48000 - 31200) / 24000
    audio[0, 31200:] += 0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-t * 5)
    write_audio(tmp_path / "a.wav", audio, 24000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "path": "a.wav", "caption": "", "split": "train"}) + "\n")
    entries = load_audio_entries(tmp_path / "m.jsonl")
    torch.manual_seed(0)
    picky = AudioClipDataset(entries, 24000, 1, segment_seconds=0.25, random_crop=True, transient_crops=16)
    uniform = AudioClipDataset(entries, 24000, 1, segment_seconds=0.25, random_crop=True)

    def has_onset(x: torch.Tensor) -> bool:
        return bool(x[0, :600].abs().max() < 0.01) and bool(x.abs().max() > 0.2)

    assert sum(has_onset(picky[0]["audio"]) for _ in range(10)) >= 8
    assert sum(has_onset(uniform[0]["audio"]) for _ in range(10)) <= 5


def test_broken_files_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "bad", "path": "bad.wav", "caption": "", "end": 1.0}) + "\n")
    ds = AudioClipDataset(load_audio_entries(tmp_path / "m.jsonl"), 24000, 1, segment_seconds=0.5)
    assert ds[0] is None and "skipping bad" in caplog.text


def test_datamodule_validates_arguments(tiny_manifest: Path) -> None:
    with pytest.raises(ValueError, match="segment_seconds"):
        CodecDataModule(str(tiny_manifest), segment_seconds=0)
    with pytest.raises(ValueError, match="transient_crops"):
        CodecDataModule(str(tiny_manifest), transient_crops=-1)
    dm = CodecDataModule(str(tiny_manifest), val_split="missing", num_workers=0, batch_size=2)
    dm.setup("fit")
    assert dm.val_dataloader() == [] and len(dm.train_dataloader()) == 1
    too_few = CodecDataModule(str(tiny_manifest), num_workers=0, batch_size=4)  # 3 training clips
    too_few.setup("fit")
    with pytest.raises(ValueError, match="fewer than data.batch_size=4"):
        too_few.train_dataloader()
