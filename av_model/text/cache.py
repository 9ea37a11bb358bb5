"""Embedding cache keyed by (prompt, encoder fingerprint), in memory and optionally on disk.

Training sees the same captions every epoch and sampling repeats prompts, so each prompt is encoded
once. Each prompt is stored without padding (only its real tokens), which also makes its embedding
independent of which other prompts shared its batch. On disk: one safetensors file per prompt under
`<cache_dir>/<fingerprint>/<key[:2]>/<key>.safetensors`, so a cache filled by another encoder is
never read (its fingerprint names another folder).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from av_model.text.base import TextEncoder, check_prompts
from av_model.text.batch import TextBatch
from avio import atomic_path

Entry = tuple[Tensor, ...]  # one (L_i, D_i) float tensor of real tokens per encoder


class CachedTextEncoder(TextEncoder):
    """Wraps a `TextEncoder`; same interface, with an LRU memory cache and an optional disk cache.

    Args:
        encoder: the encoder that computes missing entries.
        cache_dir: folder of the on-disk cache, or None for memory only.
        memory_items: prompts kept in memory (least recently used are evicted; 0 disables).
        batch_size: prompts encoded per forward pass when filling the cache.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        *,
        cache_dir: str | Path | None = None,
        memory_items: int = 4096,
        batch_size: int = 64,
    ) -> None:
        if memory_items < 0:
            raise ValueError(f"memory_items must be >= 0; got {memory_items}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        self.encoder = encoder
        self.dims = encoder.dims
        self.fingerprint = encoder.fingerprint
        self.memory_items = memory_items
        self.batch_size = batch_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / self.fingerprint
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def names(self) -> tuple[str, ...]:
        return self.encoder.names

    def key(self, prompt: str) -> str:
        """Cache key of `prompt` for this encoder."""
        return hashlib.sha256(f"{self.fingerprint}\0{prompt}".encode()).hexdigest()

    def encode(self, prompts: Sequence[str], progress: bool = False) -> TextBatch:
        """Encode `prompts`, computing only those not cached.

        Args:
            prompts: B strings.
            progress: show a progress bar while filling the cache.

        Returns:
            `TextBatch` on the CPU with embeddings `(B, L_i, D_i)` (padded to the longest prompt) and masks.
        """
        prompts = check_prompts(prompts)
        entries = self._fill(prompts, progress, keep=True)
        return _collate([entries[p] for p in prompts], self.dims)

    def prefill(self, prompts: Sequence[str], progress: bool = False) -> int:
        """Make sure every prompt is cached (e.g. all captions of a dataset) without collating them.

        Returns:
            The number of prompts that had to be encoded.
        """
        before = self.misses
        self._fill(check_prompts(prompts), progress, keep=False)
        return self.misses - before

    def _fill(self, prompts: list[str], progress: bool, keep: bool) -> dict[str, Entry]:
        entries: dict[str, Entry] = {}
        missing: list[str] = []
        unique = list(dict.fromkeys(prompts))
        for p in unique:
            hit = self._lookup(p) if keep else (p if self._cached(p) else None)
            if hit is None:
                missing.append(p)
            elif keep:
                entries[p] = hit  # type: ignore[assignment]
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        starts = range(0, len(missing), self.batch_size)
        if progress and missing:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encoding prompts", unit="batch")
        for start in starts:
            chunk = missing[start : start + self.batch_size]
            batch = self.encoder.encode(chunk)
            for i, p in enumerate(chunk):
                entry = tuple(e[i][m[i]].detach().float().cpu() for e, m in zip(batch.embeddings, batch.masks))
                self._store(p, entry)
                if keep:
                    entries[p] = entry
        return entries

    def _cached(self, prompt: str) -> bool:
        key = self.key(prompt)
        path = self._path(key)
        return key in self._memory or (path is not None and path.is_file())

    def _lookup(self, prompt: str) -> Entry | None:
        key = self.key(prompt)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self._path(key)
        if path is not None and path.is_file():
            tensors = load_file(path)
            entry = tuple(tensors[f"emb{i}"] for i in range(len(self.dims)))
            self._remember(key, entry)
            return entry
        return None

    def _store(self, prompt: str, entry: Entry) -> None:
        key = self.key(prompt)
        self._remember(key, entry)
        path = self._path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:  # a reader never sees half a file
                save_file({f"emb{i}": e.contiguous() for i, e in enumerate(entry)}, tmp, metadata={"prompt": prompt})

    def _remember(self, key: str, entry: Entry) -> None:
        if self.memory_items == 0:
            return
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    def _path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.safetensors"


def _collate(entries: Sequence[Entry], dims: tuple[int, ...]) -> TextBatch:
    """Pad per-prompt token rows into a `TextBatch` (real tokens first, mask True on them)."""
    embeddings, masks = [], []
    for i, dim in enumerate(dims):
        # At least one slot even if every prompt is empty, so shapes stay valid.
        length = max(1, max(e[i].shape[0] for e in entries))
        emb = torch.zeros(len(entries), length, dim)
        mask = torch.zeros(len(entries), length, dtype=torch.bool)
        for b, e in enumerate(entries):
            emb[b, : e[i].shape[0]] = e[i]
            mask[b, : e[i].shape[0]] = True
        embeddings.append(emb)
        masks.append(mask)
    return TextBatch(tuple(embeddings), tuple(masks))
