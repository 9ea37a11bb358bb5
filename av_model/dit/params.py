"""Parameter and FLOP counts of a `DiTConfig`, without allocating the model.

The model is built on the meta device, so even `cluster_8b` is counted exactly in milliseconds.

FLOPs per token (training, forward + backward = 3 x forward), for a sequence of N tokens and L
text tokens, with P the matmul parameters a token passes through (active parameters minus the
embedding-like vectors, adaLN and text projections, which run per slot or per text token):
    forward = 2 * P + depth * (4 * N * D  [self-attention scores and values]
                               + 4 * L * D  [cross-attention scores and values]
                               + 4 * L * D^2 / N  [cross-attention keys/values, shared by the N tokens])
    flops_per_token = 3 * forward
This is the figure the throughput callback divides by the hardware peak to report MFU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from av_model.dit.config import DiTConfig


@dataclass(frozen=True)
class ParamCount:
    """Sizes of a model.

    Attributes:
        total: all parameters.
        active: parameters used per token (routed experts counted top_k times out of num_experts).
        flops_per_token: training FLOPs (forward + backward) per token at `seq_len` tokens.
        seq_len: tokens per sample the FLOPs were counted at.
        text_len: text tokens the FLOPs were counted at.
    """

    total: int
    active: int
    flops_per_token: float
    seq_len: int
    text_len: int

    @property
    def forward_flops_per_token(self) -> float:
        return self.flops_per_token / 3


def count_params(cfg: DiTConfig, seq_len: int | None = None, text_len: int | None = None) -> ParamCount:
    """Total and active parameters and training FLOPs per token.

    Args:
        cfg: the model configuration.
        seq_len: tokens per sample (default: cfg.ref_video_tokens + cfg.ref_audio_tokens).
        text_len: text tokens per sample (default: cfg.text_max_tokens_hint).
    """
    from av_model.dit.model import AVDiT

    n = seq_len if seq_len is not None else cfg.ref_video_tokens + cfg.ref_audio_tokens
    txt = text_len if text_len is not None else cfg.text_max_tokens_hint
    if n < 1 or txt < 0:
        raise ValueError(f"count_params needs seq_len >= 1 and text_len >= 0; got {n}, {txt}.")
    with torch.device("meta"):
        model = AVDiT(cfg)
    total = sum(p.numel() for p in model.parameters())
    d, f, e, k = cfg.width, cfg.expert_hidden, cfg.num_experts, cfg.top_k
    inactive = cfg.depth * (e - k) * 3 * d * f
    active = total - inactive
    blk = model.block_list()[0]
    per_block_token = (
        _numel(blk.attn.qkv, blk.attn.proj, blk.cross.q, blk.cross.proj)
        + k * 3 * d * f
        + (_numel(blk.moe.shared) if blk.moe.shared is not None else 0)
        + (d * e if e > 1 else 0)  # router
    )
    pt, ph, pw = cfg.video_patch
    frac_v = cfg.ref_video_tokens / max(cfg.ref_video_tokens + cfg.ref_audio_tokens, 1)
    # Input and output projections: each token uses its own modality's pair.
    io = 2 * d * (frac_v * cfg.video_channels * pt * ph * pw + (1 - frac_v) * cfg.audio_channels * cfg.audio_group)
    matmul = cfg.depth * per_block_token + io
    attention = cfg.depth * (4 * n * d + 4 * txt * d + 4 * txt * d * d / n)
    forward = 2 * matmul + attention
    return ParamCount(total=int(total), active=int(active), flops_per_token=3 * forward, seq_len=n, text_len=txt)


def _numel(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters() if p.dim() > 1)
