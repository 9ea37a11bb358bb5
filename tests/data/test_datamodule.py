"""Clip datasets and data modules: shapes, splits, and bad files skipped, counted and listed."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from av_model.data.datamodule import (
    ClipDataConfig,
    ClipDataModule,
    ClipDataset,
    DecodeFailureReport,
    SyntheticDataModule,
    collate_clips,
)
from avio import ManifestEntry, load_manifest, save_manifest, write_clip

CFG = ClipDataConfig(fps=16, size=32, duration=1.0, sample_rate=16000, channels=1)


def test_items_and_batches(tiny_dataset: Path) -> None:
    ds = ClipDataset(tiny_dataset, split="val", config=CFG)
    assert len(ds) == 2
    item = ds[0]
    assert item["frames"].shape == (16, 32, 32, 3) and item["frames"].dtype == torch.uint8
    assert item["audio"].shape == (1, 16000) and item["audio"].dtype == torch.float32
    assert item["id"] == "val-00000" and item["caption"] and item["skipped"] == []
    batch = collate_clips([ds[0], ds[1]])
    assert batch["video"].shape == (2, 3, 16, 32, 32) and batch["audio"].shape == (2, 1, 16000)
    assert -1.0 <= float(batch["video"].min()) and float(batch["video"].max()) <= 1.0
    assert batch["id"] == ["val-00000", "val-00001"] and len(batch["caption"]) == 2
    # the video tensor is the frames, rescaled and moved channels-first
    expected = item["frames"].permute(3, 0, 1, 2).float() / 127.5 - 1
    assert torch.allclose(batch["video"][0], expected)


def test_unknown_split_names_the_splits_present(tiny_dataset: Path) -> None:
    with pytest.raises(ValueError, match=r"no entries with split 'test'.*\['heldout', 'train', 'val'\]"):
        ClipDataset(tiny_dataset, split="test", config=CFG)


def _with_bad_files(tiny_dataset: Path, tmp_path: Path) -> Path:
    """The tiny dataset's train split plus a corrupt file, a missing file and a silent clip."""
    entries = [e for e in load_manifest(tiny_dataset) if e.split == "train"]
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not an mp4" * 100)
    silent = write_clip(tmp_path / "silent.mp4", np.zeros((16, 32, 32, 3), np.uint8), 16)
    bad = [
        ManifestEntry("corrupt", garbage, "x", split="train"),
        ManifestEntry("missing", tmp_path / "missing.mp4", "x", split="train"),
        ManifestEntry("silent", silent, "x", split="train"),
    ]
    return save_manifest(entries[:2] + bad + entries[2:], tmp_path / "manifest.jsonl")


def test_bad_files_are_replaced_and_reported(tiny_dataset: Path, tmp_path: Path) -> None:
    ds = ClipDataset(_with_bad_files(tiny_dataset, tmp_path), split="train", config=CFG)
    item = ds[2]  # "corrupt": it and the two bad entries after it are skipped
    assert item["id"] == "train-00002"
    assert [s["id"] for s in item["skipped"]] == ["corrupt", "missing", "silent"]
    assert "no audio stream" in item["skipped"][2]["error"]
    relaxed = ClipDataset(ds.entries, config=ClipDataConfig(fps=16, size=32, duration=1.0, sample_rate=16000,
                                                          require_audio=False))
    silent = relaxed[4]
    assert silent["id"] == "silent" and torch.count_nonzero(silent["audio"]) == 0  # silent, not skipped


def test_all_bad_gives_up_with_advice(tmp_path: Path) -> None:
    entries = [ManifestEntry(f"m{i}", tmp_path / f"m{i}.mp4", "x") for i in range(3)]
    with pytest.raises(RuntimeError, match="avgen data check"):
        ClipDataset(entries, config=CFG)[0]


def test_random_offset_stays_inside_the_entry(tiny_dataset: Path) -> None:
    cfg = ClipDataConfig(fps=16, size=32, duration=0.5, sample_rate=16000)
    ds = ClipDataset(tiny_dataset, split="train", config=cfg, random_offset=True)
    torch.manual_seed(0)
    starts = [ds._start(ds.entries[0]) for _ in range(20)]
    assert 0.0 <= min(starts) and max(starts) <= 0.5 and len(set(starts)) > 1
    assert ds[0]["frames"].shape[0] == 8


class _Consumer(L.LightningModule):
    """Counts the clips it trains and validates on."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[str] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        assert "skipped" not in batch and batch["video"].shape[1:] == (3, 16, 32, 32)
        self.seen += batch["id"]
        return (self.w - batch["video"].mean()) ** 2

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        assert batch["audio"].shape[1:] == (1, 16000)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_datamodule_skips_counts_and_lists_bad_files(
    tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = _with_bad_files(tiny_dataset, tmp_path)
    # the bad entries get the val split too, so validation has a failure of its own to report
    entries = load_manifest(manifest)
    val = [e for e in load_manifest(tiny_dataset) if e.split == "val"]
    bad_val = ManifestEntry("bad-val", tmp_path / "garbage.mp4", "x", split="val")
    manifest = save_manifest(entries + val + [bad_val], tmp_path / "all.jsonl")
    dm = ClipDataModule(str(manifest), batch_size=3, num_workers=2, size=32, duration=1.0, sample_rate=16000)
    model = _Consumer()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    with caplog.at_level(logging.WARNING, logger="av_model.data.datamodule"):
        trainer.fit(model, datamodule=dm)
    assert sum(isinstance(cb, DecodeFailureReport) for cb in trainer.callbacks) == 1
    assert len(model.seen) == 9 and not {"corrupt", "missing", "silent"} & set(model.seen)
    report = "\n".join(r.getMessage() for r in caplog.records)
    assert "train epoch 0: skipped" in report and "validate epoch 0: skipped" in report
    for clip_id in ("corrupt", "missing", "silent", "bad-val"):
        assert f"  {clip_id}: " in report
    assert dm.failures == {}  # reported and cleared


def test_datamodule_validates_arguments(tiny_dataset: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ClipDataModule(str(tiny_dataset), batch_size=0)
    with pytest.raises(ValueError, match="channels must be 1 or 2"):
        ClipDataModule(str(tiny_dataset), channels=5)
    with pytest.raises(ValueError, match="size must be"):
        ClipDataConfig(size=(32,))


def test_synthetic_datamodule_batches_like_the_files() -> None:
    dm = SyntheticDataModule(batch_size=2, num_workers=0, train_clips=3, val_clips=2, width=32, height=32,
                             duration=1.0, sample_rate=16000)
    batches = list(dm.train_dataloader())
    assert [len(b["id"]) for b in batches] == [2, 1]
    b = batches[0]
    assert b["video"].shape == (2, 3, 16, 32, 32) and b["audio"].shape == (2, 1, 16000)
    assert len(b["events"]) == 2 and b["family"] == ["bounce", "wall"]


def test_seed_fixes_the_order(tiny_dataset: Path) -> None:
    def order(seed: int) -> list[str]:
        dm = ClipDataModule(str(tiny_dataset), batch_size=2, num_workers=0, size=32, duration=0.5,
                            sample_rate=16000, seed=seed)
        dm.setup("fit")
        return [i for b in dm.train_dataloader() for i in b["id"]]

    first = order(3)
    assert first == order(3) and sorted(first) == [f"train-{i:05d}" for i in range(6)]
    assert any(order(s) != first for s in (4, 5))
