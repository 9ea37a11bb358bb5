"""Synchformer (Iashin et al., 2024) as MMAudio's av-benchmark runs it, for DeSync.

The module tree and parameter names follow av-benchmark's `av_bench/synchformer` (the layout of
`synchformer_state_dict.pth`, which av-benchmark loads with strict key matching, and which loads
here the same way):

- `vfeat_extractor`: MotionFormer, a ViT-B/16 with divided space-time attention on 16-frame
  segments (tubelets of 2 frames, so 8 x 14 x 14 tokens); each block attends over time first
  (`timeattn`, `norm3`), then over space (`attn`, `norm1`), then the MLP (`norm2`, `mlp`). The
  CLS token attends to every token. A spatial aggregator (`spatial_attn_agg`, a pre-norm
  `nn.TransformerEncoderLayer` with its own CLS token) pools each of the 8 time steps to one vector.
  The unused 2D `patch_embed` is kept because the state dict holds it.
- `afeat_extractor`: AST (the transformers layout under `ast.`: `embeddings`, `encoder.layer.N`,
  `layernorm`) on 128-bin log-mel segments of 66 frames (12 x 6 patches of 16 with stride 10),
  then a frequency aggregator (`freq_attn_agg`) that pools each of the 6 time steps.
- `vproj`, `aproj` and `transformer`: a minGPT-style encoder over [OFF, 14 x 8 video tokens,
  MOD, 14 x 6 audio tokens] (198 positions, learned), whose OFF token is classified into 21
  offsets, -2.0 ... +2.0 s in 0.2 s steps.

Widths and depths are configurable (`SynchformerConfig`; the loader reads them from the state dict)
so tests run tiny random models in the official layout; the token counts (16-frame segments,
224 x 224 frames, 66 x 128 spectrograms, 14 segments) are the official ones, because the
positional embeddings fix them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SynchformerConfig", "Synchformer", "OFFSET_GRID", "SEGMENTS", "synchformer_config_from_state", "offsets_of"]

# av-benchmark's `make_class_grid(-2, 2, 21)`: the class index -> offset in seconds (computed in
# float64 as there, so the middle class is exactly 0).
OFFSET_GRID = torch.from_numpy(np.linspace(-2.0, 2.0, 21)).float()
SEGMENTS = 14  # segments the sync transformer sees (4.8 s); its 198 positions are 1 + 14*8 + 1 + 14*6
V_FRAMES, V_TUBELET, PATCH, SIZE = 16, 2, 16, 224
A_FRAMES, A_MELS, A_PATCH, A_STRIDE = 66, 128, 16, 10


@dataclass(frozen=True)
class SynchformerConfig:
    """Sizes of the three parts (official: 768 wide; 12, 12 and 3 layers; 12, 12 and 8 heads).

    Attributes:
        dim: width of every part (the official model is 768 throughout).
        v_depth, v_heads, v_mlp: MotionFormer blocks, heads, MLP hidden width.
        a_depth, a_heads, a_mlp: AST layers, heads, intermediate width.
        agg_mlp_v, agg_mlp_a: feed-forward width of the spatial and frequency aggregators.
        s_depth, s_heads, s_mlp: sync transformer blocks, heads, MLP hidden width.
        n_classes: offset classes (21).
    """

    dim: int = 768
    v_depth: int = 12
    v_heads: int = 12
    v_mlp: int = 3072
    a_depth: int = 12
    a_heads: int = 12
    a_mlp: int = 3072
    agg_mlp_v: int = 3072
    agg_mlp_a: int = 3072
    s_depth: int = 3
    s_heads: int = 8
    s_mlp: int = 3072
    n_classes: int = 21

    def __post_init__(self) -> None:
        for name, heads in (("v_heads", self.v_heads), ("a_heads", self.a_heads), ("s_heads", self.s_heads)):
            if heads < 1 or self.dim % heads:
                raise ValueError(f"{name}={heads} must divide dim={self.dim}.")


# ---------------------------------------------------------------------------------------------
# Shared pieces


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _ClsEncoderLayer(nn.TransformerEncoderLayer):
    """av-benchmark's `BaseEncoderLayer`: prepend a CLS token, run one pre-norm encoder layer,
    return the CLS output. (B, N, D) -> (B, D)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__(d_model=dim, nhead=heads, dim_feedforward=hidden, dropout=0.0, activation=nn.GELU(),
                         layer_norm_eps=1e-6, batch_first=True, norm_first=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:  # type: ignore[override]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
        return super().forward(x)[:, 0]  # (B, D)


# ---------------------------------------------------------------------------------------------
# MotionFormer (video)


class _DividedAttention(nn.Module):
    """Attention over time or over space; the CLS token attends to all tokens, and every group
    (a patch's time line, or a frame) also attends to the CLS token."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, t: int, n: int, over_time: bool) -> torch.Tensor:
        """x: (B, 1 + t*n, D), tokens frame-major (frame f, patch p at 1 + f*n + p)."""
        B, N, D = x.shape
        h, hd = self.heads, D // self.heads
        q, k, v = self.qkv(x).reshape(B, N, 3, h, hd).permute(2, 0, 3, 1, 4)  # each (B, h, N, hd)
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # (B, h, 1, hd)

        def groups(z: torch.Tensor) -> torch.Tensor:  # (B, h, t*n, hd) -> (B, h, G, L, hd)
            z = z.reshape(B, h, t, n, hd)
            return z.transpose(2, 3) if over_time else z  # time: G=n patches of L=t; space: G=t frames of L=n

        qg, kg, vg = groups(q[:, :, 1:]), groups(k[:, :, 1:]), groups(v[:, :, 1:])
        G = qg.shape[2]
        kg = torch.cat([k[:, :, None, :1].expand(-1, -1, G, -1, -1), kg], dim=3)  # (B, h, G, 1+L, hd)
        vg = torch.cat([v[:, :, None, :1].expand(-1, -1, G, -1, -1), vg], dim=3)
        out = F.scaled_dot_product_attention(qg, kg, vg)  # (B, h, G, L, hd)
        if over_time:
            out = out.transpose(2, 3)  # (B, h, t, n, hd)
        out = torch.cat([cls_out, out.reshape(B, h, t * n, hd)], dim=2)  # (B, h, N, hd)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class _DividedBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _DividedAttention(dim, heads)
        self.timeattn = _DividedAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, hidden)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, t: int, n: int) -> torch.Tensor:
        x = x + self.timeattn(self.norm3(x), t, n, over_time=True)
        x = x + self.attn(self.norm1(x), t, n, over_time=False)
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.proj = conv


class MotionFormer(nn.Module):
    """Segments (B, 3, 16, 224, 224) in [-1, 1] -> (B, 8, D): one vector per tubelet time step."""

    def __init__(self, cfg: SynchformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.t, self.n = V_FRAMES // V_TUBELET, (SIZE // PATCH) ** 2
        self.patch_embed = _PatchEmbed(nn.Conv2d(3, d, PATCH, PATCH))  # unused; kept: the state dict has it
        self.patch_embed_3d = _PatchEmbed(nn.Conv3d(3, d, (V_TUBELET, PATCH, PATCH), (V_TUBELET, PATCH, PATCH)))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n + 1, d))
        self.temp_embed = nn.Parameter(torch.zeros(1, self.t, d))
        self.blocks = nn.ModuleList([_DividedBlock(d, cfg.v_heads, cfg.v_mlp) for _ in range(cfg.v_depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.spatial_attn_agg = _ClsEncoderLayer(d, cfg.v_heads, cfg.agg_mlp_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        x = self.patch_embed_3d.proj(x).flatten(2).transpose(1, 2)  # (B, t*n, D), frame-major
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1+t*n, D)
        # "separate" positions: the spatial table repeated per time step plus a per-step vector
        pos = self.pos_embed[:, 1:].repeat(1, self.t, 1) + self.temp_embed.repeat_interleave(self.n, 1)
        x = x + torch.cat([self.pos_embed[:, :1], pos], dim=1)
        for blk in self.blocks:
            x = blk(x, self.t, self.n)
        x = self.norm(x[:, 1:])  # (B, t*n, D)
        x = x.reshape(B * self.t, self.n, -1)  # (B*t, h*w, D)
        return self.spatial_attn_agg(x).reshape(B, self.t, -1)  # (B, t, D)


# ---------------------------------------------------------------------------------------------
# AST (audio), in transformers' module layout


def _multi_head_attention(x: torch.Tensor, query: nn.Module, key: nn.Module, value: nn.Module,
                          heads: int) -> torch.Tensor:
    """Self-attention of x (B, N, D) with `heads` heads of the given projections, heads merged: (B, N, D)."""
    B, N, D = x.shape

    def split(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(B, N, heads, D // heads).transpose(1, 2)  # (B, h, N, hd)

    out = F.scaled_dot_product_attention(split(query(x)), split(key(x)), split(value(x)))
    return out.transpose(1, 2).reshape(B, N, D)


class _ASTSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _multi_head_attention(x, self.query, self.key, self.value, self.heads)


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class _ASTAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = _ASTSelfAttention(dim, heads)
        self.output = _Dense(dim, dim)


class _ASTLayer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attention = _ASTAttention(dim, heads)
        self.intermediate = _Dense(dim, hidden)
        self.output = _Dense(hidden, dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention.output.dense(self.attention.attention(self.layernorm_before(x)))
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class _ASTEncoder(nn.Module):
    def __init__(self, cfg: SynchformerConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList([_ASTLayer(cfg.dim, cfg.a_heads, cfg.a_mlp) for _ in range(cfg.a_depth)])


class _ASTPatchEmbeddings(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(1, dim, A_PATCH, A_STRIDE)


class _ASTEmbeddings(nn.Module):
    def __init__(self, dim: int, n_patches: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embeddings = _ASTPatchEmbeddings(dim)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_patches + 2, dim))


class _ASTModel(nn.Module):
    def __init__(self, cfg: SynchformerConfig, n_patches: int) -> None:
        super().__init__()
        self.embeddings = _ASTEmbeddings(cfg.dim, n_patches)
        self.encoder = _ASTEncoder(cfg)
        self.layernorm = nn.LayerNorm(cfg.dim, eps=1e-12)


class AST(nn.Module):
    """Log-mel segments (B, 66, 128) (time, mel) -> (B, 6, D): one vector per patch column."""

    def __init__(self, cfg: SynchformerConfig) -> None:
        super().__init__()
        self.f = (A_MELS - A_PATCH) // A_STRIDE + 1  # 12
        self.t = (A_FRAMES - A_PATCH) // A_STRIDE + 1  # 6
        self.ast = _ASTModel(cfg, self.f * self.t)
        self.freq_attn_agg = _ClsEncoderLayer(cfg.dim, cfg.a_heads, cfg.agg_mlp_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        emb = self.ast.embeddings
        x = emb.patch_embeddings.projection(x.transpose(1, 2)[:, None])  # (B, D, f, t)
        x = x.flatten(2).transpose(1, 2)  # (B, f*t, D), frequency-major
        x = torch.cat([emb.cls_token.expand(B, -1, -1), emb.distillation_token.expand(B, -1, -1), x], dim=1)
        x = x + emb.position_embeddings  # (B, 2+f*t, D)
        for layer in self.ast.encoder.layer:
            x = layer(x)
        x = self.ast.layernorm(x)[:, 2:]  # (B, f*t, D)
        x = x.reshape(B, self.f, self.t, -1).transpose(1, 2).reshape(B * self.t, self.f, -1)  # (B*t, f, D)
        return self.freq_attn_agg(x).reshape(B, self.t, -1)  # (B, t, D)


# ---------------------------------------------------------------------------------------------
# The sync transformer (minGPT blocks)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.key, self.query, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(_multi_head_attention(x, self.query, self.key, self.value, self.heads))


class _GPTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class _PosEmb(nn.Module):
    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.pos_emb = nn.Parameter(torch.zeros(1, n, dim))


class GlobalTransformer(nn.Module):
    """[OFF, video tokens, MOD, audio tokens] -> logits over the offset classes (B, n_classes)."""

    def __init__(self, cfg: SynchformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.vis_in_lnorm, self.aud_in_lnorm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.OFF_tok = nn.Parameter(torch.zeros(1, 1, d))
        self.MOD_tok = nn.Parameter(torch.zeros(1, 1, d))
        n_pos = 2 + SEGMENTS * (V_FRAMES // V_TUBELET + (A_FRAMES - A_PATCH) // A_STRIDE + 1)  # 198
        self.pos_emb_cfg = _PosEmb(n_pos, d)
        self.blocks = nn.Sequential(*[_GPTBlock(d, cfg.s_heads, cfg.s_mlp) for _ in range(cfg.s_depth)])
        self.ln_f = nn.LayerNorm(d)
        self.off_head = nn.Linear(d, cfg.n_classes)

    def forward(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        B = v.shape[0]
        x = torch.cat([self.OFF_tok.expand(B, -1, -1), self.vis_in_lnorm(v),
                       self.MOD_tok.expand(B, -1, -1), self.aud_in_lnorm(a)], dim=1)  # (B, 198, D)
        x = self.blocks(x + self.pos_emb_cfg.pos_emb)
        return self.off_head(self.ln_f(x)[:, 0])  # (B, n_classes)


class Synchformer(nn.Module):
    """The whole model; `extract_vfeats`/`extract_afeats` per segment, `compare_v_a` on 14 segments."""

    def __init__(self, cfg: SynchformerConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or SynchformerConfig()
        self.cfg = cfg
        self.vfeat_extractor = MotionFormer(cfg)
        self.afeat_extractor = AST(cfg)
        self.vproj = nn.Linear(cfg.dim, cfg.dim)
        self.aproj = nn.Linear(cfg.dim, cfg.dim)
        self.transformer = GlobalTransformer(cfg)

    def extract_vfeats(self, segments: torch.Tensor) -> torch.Tensor:
        """(B, S, 16, 3, 224, 224) in [-1, 1] -> (B, S, 8, D)."""
        B, S = segments.shape[:2]
        x = segments.flatten(0, 1).transpose(1, 2)  # (B*S, 3, 16, 224, 224)
        return self.vfeat_extractor(x).reshape(B, S, -1, self.cfg.dim)

    def extract_afeats(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, S, 128, 66) normalised log-mel -> (B, S, 6, D)."""
        B, S = spec.shape[:2]
        x = spec.flatten(0, 1).transpose(1, 2)  # (B*S, 66, 128)
        return self.afeat_extractor(x).reshape(B, S, -1, self.cfg.dim)

    def compare_v_a(self, vis: torch.Tensor, aud: torch.Tensor) -> torch.Tensor:
        """(B, 14, 8, D) and (B, 14, 6, D) -> offset logits (B, 21)."""
        v = self.vproj(vis).flatten(1, 2)  # (B, 112, D)
        a = self.aproj(aud).flatten(1, 2)  # (B, 84, D)
        return self.transformer(v, a)


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def _heads(dim: int, official: int) -> int:
    """The official head count where it divides the width (always, at 768), else 2 (tiny test models)."""
    return official if dim % official == 0 else 2


def synchformer_config_from_state(state: dict[str, torch.Tensor]) -> SynchformerConfig:
    """The sizes a state dict was saved with (head counts: `_heads`)."""
    dim = int(state["vproj.weight"].shape[0])
    return SynchformerConfig(
        dim=dim,
        v_depth=_count(state, "vfeat_extractor.blocks."), v_heads=_heads(dim, 12),
        v_mlp=int(state["vfeat_extractor.blocks.0.mlp.fc1.weight"].shape[0]),
        a_depth=_count(state, "afeat_extractor.ast.encoder.layer."), a_heads=_heads(dim, 12),
        a_mlp=int(state["afeat_extractor.ast.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        agg_mlp_v=int(state["vfeat_extractor.spatial_attn_agg.linear1.weight"].shape[0]),
        agg_mlp_a=int(state["afeat_extractor.freq_attn_agg.linear1.weight"].shape[0]),
        s_depth=_count(state, "transformer.blocks."), s_heads=_heads(dim, 8),
        s_mlp=int(state["transformer.blocks.0.mlp.0.weight"].shape[0]),
        n_classes=int(state["transformer.off_head.weight"].shape[0]),
    )


def offsets_of(logits: torch.Tensor) -> torch.Tensor:
    """Predicted offsets in seconds (B,) from logits (B, 21): the grid value of the argmax."""
    return OFFSET_GRID.to(logits.device)[logits.argmax(dim=-1)]

