"""The text encoder interface: prompts in, a `TextBatch` out.

`encoders` implements it for Hugging Face models (one or several at once), `cache` wraps any
implementation with an embedding cache; both build on this file alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from av_model.text.batch import TextBatch

__all__ = ["TextEncoder", "check_prompts"]


class TextEncoder(ABC):
    """Prompts -> `TextBatch`. Frozen: no gradients, eval mode, deterministic.

    Attributes:
        dims: width `D_i` of each encoder's token embeddings.
        fingerprint: hash of the configuration and weights; caches keyed on it never mix encoders.
    """

    dims: tuple[int, ...]
    fingerprint: str

    @abstractmethod
    def encode(self, prompts: Sequence[str]) -> TextBatch:
        """Encode `prompts` (B strings) into per-token embeddings `(B, L_i, D_i)` and masks `(B, L_i)`."""

    @property
    def names(self) -> tuple[str, ...]:
        """Human-readable name of each encoder (for listings and logs)."""
        return tuple(f"encoder{i}" for i in range(len(self.dims)))

    def __call__(self, prompts: Sequence[str]) -> TextBatch:
        return self.encode(prompts)


def check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("encode() takes a list of prompts, not one string; wrap it: encode([prompt]).")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("encode() got an empty list of prompts.")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is a {type(p).__name__}, not a string.")
    return prompts
