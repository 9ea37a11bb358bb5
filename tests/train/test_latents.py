"""`LatentDataset`, the bucketing sampler and `LatentDataModule`: equal shapes, fixed order, exact resume."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from av_model.cache.format import CacheError
from av_model.cache.latents import BucketBatchSampler, LatentDataModule, LatentDataset, collate_latents
from av_model.text.batch import TextBatch


def test_batches_hold_one_bucket_and_stack(fake_cache: Path) -> None:
    ds = LatentDataset(fake_cache, "train")
    assert len(ds) == 16 and len(ds.buckets()) == 2
    sampler = BucketBatchSampler(ds.buckets(), batch_size=4, seed=0)
    for indices in sampler:
        batch = collate_latents([ds[i] for i in indices])
        assert batch["video"].shape[0] == 4 and batch["video"].dim() == 5
        assert batch["audio"].shape[:2] == (4, 8)
        assert isinstance(batch["text"], TextBatch) and batch["text"].batch_size == 4
        # Padding is masked: every caption's real tokens come first.
        mask = batch["text"].masks[0]
        assert mask[:, 0].all() and (mask.long().diff(dim=1) <= 0).all()
    with pytest.raises(ValueError, match="mixes latent shapes"):
        collate_latents([ds[i] for i in range(2)])  # clips 0 and 1 have different durations


def test_order_is_a_function_of_seed_and_epoch() -> None:
    buckets = {"a": list(range(10)), "b": list(range(10, 22))}
    s1, s2 = BucketBatchSampler(buckets, 3, seed=1), BucketBatchSampler(buckets, 3, seed=1)
    assert list(s1) == list(s2)
    first = list(s1)
    s1.set_epoch(1)
    assert list(s1) != first
    assert list(BucketBatchSampler(buckets, 3, seed=2)) != first
    assert len(s1) == len(first) == 3 + 4  # incomplete batches dropped per bucket
    assert all(all(i < 10 for i in b) or all(i >= 10 for i in b) for b in first)


def test_ranks_get_disjoint_equal_shares() -> None:
    buckets = {"a": list(range(16)), "b": list(range(16, 28))}
    shares = [list(BucketBatchSampler(buckets, 2, seed=0, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shares}) == 1 == len({len(BucketBatchSampler(buckets, 2, num_replicas=3, rank=r))
                                                     for r in range(3)})
    seen = [i for s in shares for b in s for i in b]
    assert len(seen) == len(set(seen))


def test_resume_skips_exactly_the_trained_batches() -> None:
    buckets = {"a": list(range(20))}
    full = BucketBatchSampler(buckets, 2, seed=5)
    full.set_epoch(3)
    epoch3 = list(full)
    resumed = BucketBatchSampler(buckets, 2, seed=5)
    resumed.resume(epoch=3, batches_done=4)
    assert list(resumed) == epoch3[4:]
    assert list(resumed) == epoch3  # the skip applies once
    assert len(resumed) == len(epoch3)
    closed = BucketBatchSampler(buckets, 2, seed=5)
    closed.resume(epoch=3, batches_done=len(epoch3))  # checkpoint at the end of epoch 3
    full.set_epoch(4)
    assert closed.epoch == 4 and list(closed) == list(full)


def test_datamodule_state_comes_from_the_trainer(fake_cache: Path) -> None:
    dm = LatentDataModule(str(fake_cache), batch_size=4, num_workers=0, seed=3)
    progress = SimpleNamespace(current=SimpleNamespace(processed=2))
    dm.trainer = SimpleNamespace(current_epoch=1, world_size=1, global_rank=0,
                                 fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))
    state = dm.state_dict()
    assert state == {"epoch": 1, "batches": 2, "seed": 3}
    fresh = LatentDataModule(str(fake_cache), batch_size=4, num_workers=0, seed=3)
    fresh.load_state_dict(state)
    fresh.setup("fit")
    loader = fresh.train_dataloader()
    reference = BucketBatchSampler(LatentDataset(fake_cache, "train").buckets(), 4, seed=3)
    reference.set_epoch(1)
    assert [b["id"] for b in loader] == [[fresh._train.entries[i].id for i in b] for b in list(reference)[2:]]
    with pytest.raises(ValueError, match="data seed"):
        LatentDataModule(str(fake_cache), seed=4).load_state_dict(state)
    meta = fresh.meta_dict
    assert meta["train_duration"] in (1.0, 2.0) and meta["video"]["latent_rate"] == 4.0


def test_missing_split_and_incomplete_cache(fake_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no clips in split"):
        LatentDataset(fake_cache, "heldout")
    with pytest.raises(CacheError, match="not a latent cache"):
        LatentDataset(tmp_path)
    with pytest.raises(CacheError, match="no full batch"):
        BucketBatchSampler({"a": [0, 1]}, batch_size=4)
    assert torch.isfinite(LatentDataset(fake_cache, "val")[0]["video"]).all()
