"""Building blocks of the transformer: time embedding, joint self-attention, text cross-attention.

Shapes (legend): B batch, N tokens, D width, H heads, Dh head size, L text tokens, S conditioning slots.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from av_model.dit.rope import apply_rotary


class TimestepEmbedder(nn.Module):
    """Flow time t in [0, 1] -> vector of width D (sinusoidal features then an MLP, as in DiT)."""

    def __init__(self, width: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        """t: any shape (...,) float -> (..., D)."""
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        # t is scaled by 1000 so the sinusoids resolve the [0, 1] range like DiT's integer steps.
        args = t.float()[..., None] * 1000.0 * freqs  # (..., half)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (..., freq_dim)
        return self.mlp(emb.to(next(self.mlp.parameters()).dtype))


class SequenceSplit(Protocol):
    """Ulysses sequence parallelism as the model sees it (set by `av_model.train.context_parallel`).

    Each of `size` ranks holds n consecutive tokens of the (padded) joint sequence of N = n * size.
    """

    size: int
    rank: int

    def to_heads(self, x_BnCHX: Tensor) -> Tensor:
        """(B, n, C, H, Dh) sequence shard, all heads -> (B, N, C, H / size, Dh) all tokens, this rank's heads."""
        ...

    def to_sequence(self, x_BNhX: Tensor) -> Tensor:
        """(B, N, H / size, Dh) -> (B, n, H, Dh): the inverse exchange."""
        ...

    def gather(self, x_BnD: Tensor) -> Tensor:
        """(B, n, D) -> (B, N, D): every rank's shard, in rank order."""
        ...


class JointSelfAttention(nn.Module):
    """Bidirectional self-attention over all video and audio tokens, QK-norm and rotary positions.

    QK-norm (RMSNorm per head on queries and keys) keeps attention logits bounded, which large
    diffusion transformers need for stable bf16 training.
    """

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = nn.RMSNorm(width // num_heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(width // num_heads, eps=1e-6)
        self.proj = nn.Linear(width, width)

    def forward(self, x_BND: Tensor, cos_NR: Tensor, sin_NR: Tensor, seq: SequenceSplit | None = None,
                key_mask_N: Tensor | None = None) -> Tensor:
        """x: (B, N, D) -> (B, N, D).

        With `seq` (sequence parallelism), x holds this rank's n tokens; queries, keys and values
        are exchanged so that attention runs over all N tokens for H / size heads, and `cos`,
        `sin` (and `key_mask_N`, False on padding) cover all N tokens.
        """
        b, n, d = x_BND.shape
        qkv = self.qkv(x_BND).view(b, n, 3, self.num_heads, d // self.num_heads)  # (B, n, 3, H, Dh)
        if seq is not None:
            qkv = seq.to_heads(qkv)  # (B, N, 3, H/size, Dh): the whole sequence, this rank's heads
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, N, Dh)
        # Norm and rotation in fp32, then back to v's dtype: SDPA needs q, k, v of one dtype, and
        # under autocast the norm's output dtype differs between devices.
        q = apply_rotary(self.q_norm(q.float()), cos_NR, sin_NR).to(v.dtype)  # (B, H, N, Dh)
        k = apply_rotary(self.k_norm(k.float()), cos_NR, sin_NR).to(v.dtype)  # (B, H, N, Dh)
        mask = None if key_mask_N is None else key_mask_N[None, None, None, :]  # padding is never a key
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)  # (B, N, H, Dh)
        if seq is not None:
            out = seq.to_sequence(out)  # (B, n, H, Dh): this rank's tokens, all heads
        return self.proj(out.reshape(b, n, d))  # (B, N, D)


class TextCrossAttention(nn.Module):
    """Cross-attention from audio-video tokens to the text tokens plus one learned null token.

    The null key/value is always visible, so a sample with no text (all-False mask: the
    unconditional branch of guidance) attends to it instead of to nothing (which would be NaN).
    """

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.q_norm = nn.RMSNorm(width // num_heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(width // num_heads, eps=1e-6)
        self.null_kv = nn.Parameter(torch.zeros(1, 1, width))
        self.proj = nn.Linear(width, width)

    def forward(self, x_BND: Tensor, ctx_BLD: Tensor, mask_BL: Tensor) -> Tensor:
        b, n, d = x_BND.shape
        h, dh = self.num_heads, d // self.num_heads
        ctx = torch.cat([self.null_kv.expand(b, 1, d).to(ctx_BLD.dtype), ctx_BLD], dim=1)  # (B, 1+L, D)
        mask = torch.cat([mask_BL.new_ones(b, 1), mask_BL], dim=1)  # (B, 1+L)
        kv = self.kv(ctx).view(b, -1, 2, h, dh).permute(2, 0, 3, 1, 4)  # (2, B, H, 1+L, Dh)
        v = kv[1]  # (B, H, 1+L, Dh)
        q = self.q_norm(self.q(x_BND).view(b, n, h, dh).transpose(1, 2).float()).to(v.dtype)  # (B, H, N, Dh)
        k = self.k_norm(kv[0].float()).to(v.dtype)  # (B, H, 1+L, Dh)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, H, N, Dh)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))  # (B, N, D)


class SwiGLU(nn.Module):
    """Feed-forward `w2(silu(w1 x) * w3 x)`; used for the shared experts.

    w1 and w3 are one projection of width 2F (`w13`, gate rows first): one matmul instead of two.
    """

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.w13 = nn.Linear(width, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, width, bias=False)

    def forward(self, x_TD: Tensor) -> Tensor:
        gate, up = self.w13(x_TD).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)
