"""`TextBatch`: the per-token text conditioning that the diffusion transformer cross-attends to.

A batch holds one `(embeddings, mask)` pair per text encoder, kept separate because the
transformer projects each encoder's tokens with its own linear layer before concatenating them
(as Movie Gen does with UL2, ByT5 and MetaCLIP).

Shapes (legend): B batch, L_i tokens of encoder i (padded), D_i width of encoder i.

The null conditioning used for classifier-free guidance and text dropout is "no text at all": every
mask entry False. The transformer always attends to one learned null token besides the text, so an
all-False mask is well defined and identical for every encoder set (an encoded empty string would
differ per encoder and still carry the [CLS]/[SEP] tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TextBatch:
    """Per-token text embeddings of one or more encoders.

    Attributes:
        embeddings: one tensor per encoder, each `(B, L_i, D_i)` float.
        masks: one tensor per encoder, each `(B, L_i)` bool, True where a token is real.
    """

    embeddings: tuple[Tensor, ...]
    masks: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        self.embeddings = tuple(self.embeddings)
        self.masks = tuple(self.masks)
        if not self.embeddings:
            raise ValueError("TextBatch needs at least one encoder's embeddings; got none.")
        if len(self.embeddings) != len(self.masks):
            raise ValueError(
                f"TextBatch has {len(self.embeddings)} embedding tensors but {len(self.masks)} masks; "
                "give one mask per encoder."
            )
        batch = self.embeddings[0].shape[0]
        for i, (emb, mask) in enumerate(zip(self.embeddings, self.masks)):
            if emb.dim() != 3:
                raise ValueError(f"TextBatch embeddings[{i}] must be (B, L, D); got shape {tuple(emb.shape)}.")
            if mask.shape != emb.shape[:2]:
                raise ValueError(
                    f"TextBatch masks[{i}] must be (B, L) = {tuple(emb.shape[:2])}; got {tuple(mask.shape)}."
                )
            if mask.dtype != torch.bool:
                raise ValueError(f"TextBatch masks[{i}] must be bool; got {mask.dtype}.")
            if emb.shape[0] != batch:
                raise ValueError(
                    f"TextBatch encoders disagree on the batch size: {batch} vs {emb.shape[0]} (encoder {i})."
                )

    @property
    def batch_size(self) -> int:
        return int(self.embeddings[0].shape[0])

    @property
    def dims(self) -> tuple[int, ...]:
        """Width `D_i` of each encoder."""
        return tuple(int(e.shape[-1]) for e in self.embeddings)

    @property
    def device(self) -> torch.device:
        return self.embeddings[0].device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextBatch:
        """Move embeddings (and masks) to `device`; cast embeddings to `dtype` if given."""
        return TextBatch(
            tuple(e.to(device=device, dtype=dtype) for e in self.embeddings),
            tuple(m.to(device=device) for m in self.masks),
        )

    def index(self, idx: int | slice | Sequence[int] | Tensor) -> TextBatch:
        """Select samples along the batch axis (keeps the batch axis for an int index)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        elif not isinstance(idx, slice | Tensor):
            idx = torch.as_tensor(list(idx), dtype=torch.long)
        if isinstance(idx, Tensor):
            idx = idx.to(self.device)
        return TextBatch(tuple(e[idx] for e in self.embeddings), tuple(m[idx] for m in self.masks))

    @staticmethod
    def cat(batches: Sequence[TextBatch]) -> TextBatch:
        """Concatenate along the batch axis, padding each encoder's token axis to the longest."""
        if not batches:
            raise ValueError("TextBatch.cat needs at least one batch.")
        n_enc = len(batches[0].embeddings)
        dims = batches[0].dims
        for b in batches:
            if b.dims != dims:
                raise ValueError(
                    f"TextBatch.cat: batches come from different encoders (widths {dims} vs {b.dims})."
                )
        embeddings, masks = [], []
        for i in range(n_enc):
            length = max(b.embeddings[i].shape[1] for b in batches)
            embeddings.append(torch.cat([_pad_tokens(b.embeddings[i], length) for b in batches]))
            masks.append(torch.cat([_pad_tokens(b.masks[i], length) for b in batches]))
        return TextBatch(tuple(embeddings), tuple(masks))

    def null_like(self) -> TextBatch:
        """The unconditional ("no text") batch of the same shapes: zero embeddings, all-False masks."""
        return TextBatch(
            tuple(torch.zeros_like(e) for e in self.embeddings),
            tuple(torch.zeros_like(m) for m in self.masks),
        )

    def drop(self, drop_B: Tensor) -> TextBatch:
        """Replace the samples where `drop_B` (B,) bool is True by the null conditioning."""
        keep = ~drop_B.to(device=self.device, dtype=torch.bool)
        return TextBatch(
            tuple(e * keep[:, None, None].to(e.dtype) for e in self.embeddings),
            tuple(m & keep[:, None] for m in self.masks),
        )


def _pad_tokens(x: Tensor, length: int) -> Tensor:
    """Zero-pad (False-pad for masks) axis 1 of `x` to `length`."""
    if x.shape[1] == length:
        return x
    pad = x.new_zeros((x.shape[0], length - x.shape[1], *x.shape[2:]))
    return torch.cat([x, pad], dim=1)
