"""Training data from the latent cache: `LatentDataset`, a resumable bucketing sampler, `LatentDataModule`.

Batches hold clips of one bucket (equal video and audio latent shapes, i.e. equal duration and
resolution), so they stack without padding. The order of batches is a pure function of
`(seed, epoch)`; the data module records how many batches of the current epoch were trained and, on
resume, the sampler skips exactly those, so a run killed mid-epoch and resumed from its checkpoint
sees the same batches as one never interrupted.

Batch (after collation):
    id: list[str] (B)
    video: (B, C_v, T_v, H_v, W_v) float32 normalized video latents
    audio: (B, C_a, T_a) float32 normalized audio latents
    text: TextBatch, per encoder (B, L_i, D_i) embeddings and (B, L_i) masks
    caption: list[str] (B)
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from av_model.cache.format import CacheEntry, CacheError, CacheMeta, ShardReader, read_index
from av_model.text.batch import TextBatch

__all__ = ["BucketBatchSampler", "LatentDataModule", "LatentDataset", "collate_latents"]


class LatentDataset(Dataset):
    """Clips of one or more splits of a latent cache.

    Args:
        cache_dir: the cache directory (`avgen cache build --out`).
        split: keep only clips of this split (None: all), or several splits.

    Items: `{"id", "caption", "video" (C_v,T_v,H_v,W_v) float32, "audio" (C_a,T_a) float32,
    "text": list of (L_i, D_i) float32, "text_mask": list of (L_i,) bool}`.
    """

    def __init__(self, cache_dir: str | Path, split: str | Sequence[str] | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.meta, entries = read_index(self.cache_dir)
        if split is not None:
            splits = {split} if isinstance(split, str) else set(split)
            present = sorted({e.split for e in entries})
            entries = [e for e in entries if e.split in splits]
            if not entries:
                raise CacheError(f"the cache {cache_dir} has no clips in split(s) {sorted(splits)}; it has {present}.")
        self.entries: list[CacheEntry] = entries
        self.reader = ShardReader(self.cache_dir)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        tensors = self.reader.read(entry)
        return {
            "id": entry.id,
            "caption": entry.caption,
            "video": tensors["video"].float(),
            "audio": tensors["audio"].float(),
            "text": [t.float() for t in tensors["text"]],
            "text_mask": [m.bool() for m in tensors["text_mask"]],
        }

    def buckets(self) -> dict[tuple[Any, ...], list[int]]:
        """Indices of the clips of each bucket (equal latent shapes), in cache order."""
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, e in enumerate(self.entries):
            groups[e.bucket].append(i)
        return dict(groups)


def collate_latents(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips of one bucket; pad text tokens per encoder to the longest in the batch."""
    shapes = {(tuple(it["video"].shape), tuple(it["audio"].shape)) for it in items}
    if len(shapes) != 1:
        raise ValueError(
            f"a batch mixes latent shapes {sorted(shapes)}; use BucketBatchSampler so batches hold one bucket."
        )
    n_enc = len(items[0]["text"])
    embeddings, masks = [], []
    for k in range(n_enc):
        length = max(it["text"][k].shape[0] for it in items)
        dim = items[0]["text"][k].shape[1]
        emb = torch.zeros(len(items), length, dim)  # (B, L_k, D_k)
        mask = torch.zeros(len(items), length, dtype=torch.bool)  # (B, L_k)
        for b, it in enumerate(items):
            n = it["text"][k].shape[0]
            emb[b, :n] = it["text"][k]
            mask[b, :n] = it["text_mask"][k]
        embeddings.append(emb)
        masks.append(mask)
    return {
        "id": [it["id"] for it in items],
        "caption": [it["caption"] for it in items],
        "video": torch.stack([it["video"] for it in items]),  # (B, C_v, T_v, H_v, W_v)
        "audio": torch.stack([it["audio"] for it in items]),  # (B, C_a, T_a)
        "text": TextBatch(tuple(embeddings), tuple(masks)),
    }


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of one bucket each, in an order fixed by `(seed, epoch)`, split across ranks.

    Every rank computes the same global order and takes every `num_replicas`-th batch, so ranks
    see disjoint data and the same number of batches. `len()` is the full epoch; when resuming, the
    first epoch's iteration skips the batches already trained (`resume`).

    Args:
        buckets: bucket -> dataset indices.
        batch_size: clips per batch.
        shuffle: shuffle clips within buckets and batches across buckets each epoch.
        drop_last: drop each bucket's incomplete last batch (training) or keep it (evaluation).
        seed: base seed of the order.
        num_replicas: data-parallel ranks.
        rank: this rank.
    """

    def __init__(
        self, buckets: dict[Any, list[int]], batch_size: int, *, shuffle: bool = True, drop_last: bool = True,
        seed: int = 0, num_replicas: int = 1, rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas}).")
        self.buckets = {k: list(v) for k, v in sorted(buckets.items(), key=lambda kv: str(kv[0]))}
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip once
        if len(self) == 0:
            sizes = {str(k): len(v) for k, v in self.buckets.items()}
            raise CacheError(
                f"no full batch of {batch_size} clips per rank ({num_replicas} ranks) in any bucket (bucket sizes "
                f"{sizes}); lower the batch size or add clips."
            )

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start (through `sampler`)."""
        self.epoch = epoch

    @property
    def sampler(self) -> BucketBatchSampler:
        """Itself. At each epoch start Lightning calls `set_epoch` on `loader.sampler` and on
        `loader.batch_sampler.sampler`, never on the batch sampler itself; without this every epoch
        would repeat epoch 0's order, and a run resumed in a later epoch would not."""
        return self

    def resume(self, epoch: int, batches_done: int) -> None:
        """Continue epoch `epoch` after its first `batches_done` batches (on this rank)."""
        if batches_done >= len(self):
            epoch, batches_done = epoch + 1, 0  # the checkpoint closed the epoch
        self.epoch = epoch
        self._skip = (epoch, batches_done) if batches_done else None

    def _global_batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        batches: list[list[int]] = []
        for indices in self.buckets.values():
            if self.shuffle:
                indices = [indices[i] for i in torch.randperm(len(indices), generator=g).tolist()]
            for s in range(0, len(indices), self.batch_size):
                chunk = indices[s: s + self.batch_size]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def _rank_batches(self, epoch: int) -> list[list[int]]:
        batches = self._global_batches(epoch)
        if self.drop_last:
            batches = batches[: len(batches) // self.num_replicas * self.num_replicas]
        return batches[self.rank:: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches(self.epoch)
        if self._skip is not None and self._skip[0] == self.epoch:
            batches = batches[self._skip[1]:]
        self._skip = None
        yield from batches

    def __len__(self) -> int:
        total = 0
        for indices in self.buckets.values():
            n = len(indices) / self.batch_size
            total += math.floor(n) if self.drop_last else math.ceil(n)
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(max(total - self.rank, 0) / self.num_replicas)


class LatentDataModule(L.LightningDataModule):
    """Serves bucketed batches of a latent cache to `AVDiffusion`.

    Its `state_dict` (saved in every Lightning checkpoint) records the epoch and the batches of it
    already trained, read from the trainer's progress counters rather than from the sampler, which
    runs ahead of training by the prefetched batches.

    Args:
        cache_dir: the cache directory.
        batch_size: clips per batch per device.
        train_split: split(s) to train on.
        val_split: split(s) to validate on (None: no validation).
        num_workers: loading processes.
        seed: seed of the batch order (independent of the model's seed).
        val_batches: cap on validation batches per validation run (None: the whole split).
        pin_memory: pin batches in page-locked memory (CUDA only).
    """

    def __init__(
        self,
        cache_dir: str = "runs/cache",
        batch_size: int = 8,
        train_split: str | list[str] = "train",
        val_split: str | list[str] | None = "val",
        num_workers: int = 2,
        seed: int = 0,
        val_batches: int | None = None,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {num_workers}.")
        self.cache_dir, self.batch_size = cache_dir, batch_size
        self.train_split, self.val_split = train_split, val_split
        self.num_workers, self.seed, self.val_batches, self.pin_memory = num_workers, seed, val_batches, pin_memory
        self._resume: dict[str, int] | None = None
        self._train: LatentDataset | None = None
        self._val: LatentDataset | None = None
        self._train_sampler: BucketBatchSampler | None = None

    @property
    def meta(self) -> CacheMeta:
        """The cache's metadata (read on first use): latent rates, dims, fingerprints."""
        if not hasattr(self, "_meta"):
            from av_model.cache.format import read_meta

            self._meta = read_meta(self.cache_dir)
        return self._meta

    @property
    def meta_dict(self) -> dict[str, Any]:
        """`meta` as plain JSON (what `AVDiffusion` stores in its hyperparameters)."""
        meta = self.meta.to_json()
        meta.pop("shards", None)  # the shard list is bookkeeping of the build, not of the model
        # The most common training duration: what `avgen sample` generates by default.
        _, entries = read_index(self.cache_dir)
        splits = {self.train_split} if isinstance(self.train_split, str) else set(self.train_split)
        durations = Counter(round(e.duration, 6) for e in entries if e.split in splits)
        meta["train_duration"] = durations.most_common(1)[0][0] if durations else None
        return meta

    def _ranks(self) -> tuple[int, int]:
        """(data-parallel replicas, this rank's replica): the ranks of a sequence-parallel group
        (`model.parallel.sequence_parallel`) share each clip, so they read the same batches."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        parallel = getattr(getattr(trainer, "lightning_module", None), "parallel_config", None)
        sp = int(getattr(parallel, "sequence_parallel", 1))
        return trainer.world_size // sp, trainer.global_rank // sp

    def setup(self, stage: str) -> None:
        if stage in ("fit",) and self._train is None:
            self._train = LatentDataset(self.cache_dir, self.train_split)
        if stage in ("fit", "validate") and self.val_split is not None and self._val is None:
            try:
                self._val = LatentDataset(self.cache_dir, self.val_split)
            except CacheError:
                if stage == "validate":
                    raise
                self._val = None  # a cache without a validation split trains without validation

    def _loader(self, dataset: LatentDataset, sampler: BucketBatchSampler) -> DataLoader:
        return DataLoader(
            dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate_latents,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if self._train is None:
            self.setup("fit")
        assert self._train is not None
        world, rank = self._ranks()
        sampler = BucketBatchSampler(self._train.buckets(), self.batch_size, shuffle=True, drop_last=True,
                                     seed=self.seed, num_replicas=world, rank=rank)
        if self._resume is not None:
            sampler.resume(self._resume["epoch"], self._resume["batches"])
            self._resume = None
        self._train_sampler = sampler
        return self._loader(self._train, sampler)

    def val_dataloader(self) -> DataLoader | list[Any]:
        if self._val is None:
            self.setup("validate" if self.val_split is not None else "fit")
        if self._val is None:
            return []
        world, rank = self._ranks()
        buckets = self._val.buckets()
        if self.val_batches is not None:
            # Fixed clips (the first of each bucket, in cache order) so validation numbers compare across runs.
            keep = self.val_batches * self.batch_size * world
            buckets = {k: v[:keep] for k, v in buckets.items()}
        sampler = BucketBatchSampler(buckets, min(self.batch_size, len(self._val)), shuffle=False,
                                     drop_last=False, seed=self.seed, num_replicas=world, rank=rank)
        return self._loader(self._val, sampler)

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        # `processed` counts batches whose optimizer step finished in this epoch; checkpoints are
        # written after that (on_train_batch_end) or at the epoch's end.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": int(trainer.current_epoch), "batches": int(done), "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if state_dict.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"the checkpoint was trained with data seed {state_dict['seed']} but data.seed is {self.seed}; "
                "resume with the same seed to continue the same data order."
            )
        self._resume = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}
