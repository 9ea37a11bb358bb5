"""`AVDiT`: one transformer over video and audio tokens on one clock, with a mixture of experts.

Reading order: embedders, block, final layer, the model. See docs/architecture.md for the diagram.

The model is a one-device module; parallelism plugs into hooks from outside (av_model/train): the
MoE layers' `expert_fn`/`group_sum` (expert parallelism) and `AVDiT.sequence_parallel` (Ulysses
sequence parallelism: each rank runs the blocks on its share of the joint sequence).

Shapes (legend): B batch, C_v/C_a latent channels, T_v/T_a latent frames, H_v/W_v latent size,
N = Nv + Na tokens, D width, S = Tt + Na conditioning slots (one per video token row in time, one
per audio token), L text tokens, E experts, M modalities, Q noise-level buckets, T = B * N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from av_model.dit.config import DiTConfig
from av_model.dit.layers import JointSelfAttention, SequenceSplit, TextCrossAttention, TimestepEmbedder
from av_model.dit.moe import NUM_MODALITIES, MoEFeedForward, MoEOutput
from av_model.dit.rope import AVRotary, TokenLayout, TokenSpan
from av_model.text.batch import TextBatch


@dataclass
class MoEAux:
    """Auxiliary losses (already weighted: add them to the flow loss) and routing statistics.

    `stats` (all detached) holds, over the L MoE layers:
        "moe/counts" (L, E), "moe/counts_modality" (L, M, E), "moe/counts_t" (L, Q, E): routed slots;
        "moe/load" (L, E), "moe/load_video" (L, E), "moe/load_audio" (L, E), "moe/load_t{q}" (L, E):
        the same as shares (each row sums to 1); "moe/imbalance" (): mean over layers of
        E * max_e load (1.0 is perfectly even).
    """

    losses: dict[str, Tensor]
    stats: dict[str, Tensor]


@dataclass
class DiTOutput:
    """Velocities predicted for each modality, in the latents' shapes, and the MoE record."""

    video: Tensor
    audio: Tensor
    aux: MoEAux


@dataclass
class BlockContext:
    """Everything a block needs besides the tokens; built once per forward.

    Under sequence parallelism (`seq` set) the block's tokens are this rank's share: `span`
    modulates them, `cos_NR`/`sin_NR`/`key_mask_N` cover the whole padded sequence (attention
    sees all of it), and `modality_T`/`t_bucket_T` describe the share's real tokens only.
    """

    layout: TokenLayout
    cos_NR: Tensor
    sin_NR: Tensor
    ctx_BLD: Tensor
    ctx_mask_BL: Tensor
    modality_T: Tensor
    t_bucket_T: Tensor
    seq: SequenceSplit | None = None
    span: TokenSpan | None = None
    key_mask_N: Tensor | None = None


class AVDiTBlock(nn.Module):
    """Pre-norm block: joint self-attention, text cross-attention, MoE feed-forward.

    Self-attention and the feed-forward are modulated per token by adaptive layer norm from the
    token's own modality time (shift, scale, gate). The six modulation vectors are the model-wide
    projection of the time embedding plus this block's learned offsets (PixArt-alpha's adaLN-single:
    a per-block 6 D x D projection would be a third of the 1B preset's parameters). Gates start at
    zero so a fresh block is the identity (DiT's adaLN-Zero), which lets deep stacks train at once.
    """

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        d = cfg.width
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = JointSelfAttention(d, cfg.num_heads)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.cross = TextCrossAttention(d, cfg.num_heads)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.moe = MoEFeedForward(
            d, cfg.expert_hidden, cfg.num_experts, cfg.top_k, cfg.num_shared_experts, cfg.balance,
            cfg.bias_update_rate, cfg.aux_loss_coeff, cfg.z_loss_coeff, cfg.dispatch, cfg.num_t_buckets,
        )
        self.modulation = nn.Parameter(torch.zeros(6, d))

    def forward(self, x_BND: Tensor, mod_BS6D: Tensor, bc: BlockContext) -> tuple[Tensor, MoEOutput]:
        """x: (B, N, D) tokens; mod: (B, S, 6, D) shared time modulation; returns (B, N, D) and the MoE record."""
        lay: TokenLayout | TokenSpan = bc.layout if bc.span is None else bc.span
        mods = (mod_BS6D + self.modulation.to(mod_BS6D.dtype)).unbind(dim=2)  # 6 x (B, S, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        h = self.attn(lay.modulate(self.norm1(x_BND), shift1, scale1), bc.cos_NR, bc.sin_NR, bc.seq,
                      bc.key_mask_N)  # (B, N, D)
        x_BND = x_BND + lay.gate(h, gate1)
        x_BND = x_BND + self.cross(self.norm2(x_BND), bc.ctx_BLD, bc.ctx_mask_BL)  # (B, N, D)
        h = lay.modulate(self.norm3(x_BND), shift2, scale2)  # (B, N, D)
        n = h.shape[1] if bc.span is None else bc.span.valid  # padding never reaches the router
        moe = self.moe(h[:, :n].flatten(0, 1), bc.modality_T, bc.t_bucket_T)  # out_TD: (B*n, D)
        y = moe.out_TD.view(h.shape[0], n, -1)  # (B, n, D)
        if n < h.shape[1]:
            y = F.pad(y, (0, 0, 0, h.shape[1] - n))  # (B, N, D): zero update on padding
        x_BND = x_BND + lay.gate(y, gate2)
        return x_BND, moe


class FinalLayer(nn.Module):
    """Norm, per-slot shift/scale, linear to the patch values; zero-initialized (DiT)."""

    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x_BXD: Tensor, c_BXD: Tensor) -> Tensor:
        """x: (B, ..., D) tokens, c: conditioning broadcastable to x -> (B, ..., out_dim)."""
        shift, scale = self.adaln(c_BXD).chunk(2, dim=-1)
        return self.linear(self.norm(x_BXD) * (1 + scale) + shift)


class AVDiT(nn.Module):
    """Joint audio-video diffusion transformer predicting flow velocities for both modalities.

    Args:
        cfg: the model's shape (`DiTConfig`, see `get_preset`).
    """

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        pt, ph, pw = cfg.video_patch
        self.video_in = nn.Linear(cfg.video_channels * pt * ph * pw, d)
        self.audio_in = nn.Linear(cfg.audio_channels * cfg.audio_group, d)
        self.modality_embed = nn.Parameter(torch.zeros(NUM_MODALITIES, d))  # added to tokens
        self.modality_cond = nn.Parameter(torch.zeros(NUM_MODALITIES, d))  # added to time conditioning
        self.t_embedder = TimestepEmbedder(d, cfg.time_freq_dim)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # shared by all blocks (adaLN-single)
        self.text_proj = nn.ModuleList(nn.Sequential(nn.LayerNorm(k), nn.Linear(k, d)) for k in cfg.text_dims)
        self.rotary = AVRotary(
            cfg.head_dim, cfg.rope_dims, cfg.rope_time_min_period, cfg.rope_time_max_period, cfg.rope_space_theta
        )
        self.blocks = nn.ModuleList(AVDiTBlock(cfg) for _ in range(cfg.depth))
        self.video_out = FinalLayer(d, cfg.video_channels * pt * ph * pw)
        self.audio_out = FinalLayer(d, cfg.audio_channels * cfg.audio_group)
        # Sequence parallelism hook (`av_model.train.context_parallel`); None on one device.
        self.sequence_parallel: SequenceSplit | None = None
        self.initialize_weights()

    # ----------------------------------------------------------------------------------- init
    def initialize_weights(self) -> None:
        """All initialization in one place; the unusual choices carry their reason."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.modality_embed, std=0.02)
        nn.init.normal_(self.modality_cond, std=0.02)
        for layer in self.t_embedder.mlp.modules():
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)  # DiT's choice for the timestep MLP
        # adaLN-Zero: zero shift/scale/gate (shared projection and per-block offsets), so every
        # block starts as the identity map.
        adaln = cast(nn.Linear, self.adaln[-1])
        nn.init.zeros_(adaln.weight)
        nn.init.zeros_(adaln.bias)
        for block in self.block_list():
            nn.init.zeros_(block.modulation)
            # Zero output of cross-attention completes the identity (it has no adaLN gate).
            nn.init.zeros_(block.cross.proj.weight)
            block.moe.reset_parameters()
        for final in (self.video_out, self.audio_out):
            # Zero outputs: the untrained model predicts velocity 0 rather than noise.
            final_adaln = cast(nn.Linear, final.adaln[-1])
            nn.init.zeros_(final_adaln.weight)
            nn.init.zeros_(final_adaln.bias)
            nn.init.zeros_(final.linear.weight)
            nn.init.zeros_(final.linear.bias)

    # -------------------------------------------------------------------------------- helpers
    def layout(self, video_shape: tuple[int, ...], audio_shape: tuple[int, ...], video_rate: float,
               audio_rate: float) -> TokenLayout:
        """Token layout for latents of these shapes and latent frame rates (frames per second)."""
        pt, ph, pw = self.cfg.video_patch
        _, _, tv, hv, wv = video_shape
        ta = audio_shape[-1]
        return TokenLayout(
            video_frames=tv // pt,
            video_height=hv // ph,
            video_width=wv // pw,
            audio_tokens=-(-ta // self.cfg.audio_group),
            video_token_seconds=pt / video_rate,
            audio_token_seconds=self.cfg.audio_group / audio_rate,
        )

    def patchify_video(self, video: Tensor) -> Tensor:
        """(B, C_v, T_v, H_v, W_v) -> (B, Nv, C_v*pt*ph*pw), tokens ordered (time, height, width)."""
        b, c, t, h, w = video.shape
        pt, ph, pw = self.cfg.video_patch
        x = video.view(b, c, t // pt, pt, h // ph, ph, w // pw, pw)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (t // pt) * (h // ph) * (w // pw), c * pt * ph * pw)

    def unpatchify_video(self, x: Tensor, lay: TokenLayout) -> Tensor:
        """(B, Nv, C_v*pt*ph*pw) -> (B, C_v, T_v, H_v, W_v)."""
        pt, ph, pw = self.cfg.video_patch
        b, c = x.shape[0], self.cfg.video_channels
        x = x.view(b, lay.video_frames, lay.video_height, lay.video_width, c, pt, ph, pw)
        x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)
        return x.reshape(b, c, lay.video_frames * pt, lay.video_height * ph, lay.video_width * pw)

    def patchify_audio(self, audio: Tensor) -> Tensor:
        """(B, C_a, T_a) -> (B, Na, C_a*g); T_a is zero-padded up to a multiple of g."""
        g = self.cfg.audio_group
        pad = (-audio.shape[-1]) % g
        x = F.pad(audio, (0, pad))  # (B, C_a, Na*g)
        b, c, t = x.shape
        return x.view(b, c, t // g, g).permute(0, 2, 1, 3).reshape(b, t // g, c * g)

    def unpatchify_audio(self, x: Tensor, frames: int) -> Tensor:
        """(B, Na, C_a*g) -> (B, C_a, frames), dropping the padding."""
        b, n, _ = x.shape
        g, c = self.cfg.audio_group, self.cfg.audio_channels
        return x.view(b, n, c, g).permute(0, 2, 1, 3).reshape(b, c, n * g)[..., :frames]

    def slot_times(self, t_video: Tensor, t_audio: Tensor, lay: TokenLayout, frames_audio: int) -> Tensor:
        """Per-slot flow time (B, S) from per-sample (B,) or per-latent-frame (B, T_v)/(B, T_a) times."""
        b = t_video.shape[0]
        pt, g = self.cfg.video_patch[0], self.cfg.audio_group
        tv = t_video[:, None].expand(b, lay.video_frames) if t_video.dim() == 1 else \
            t_video.reshape(b, lay.video_frames, pt).mean(-1)  # (B, Tt)
        if t_audio.dim() == 1:
            ta = t_audio[:, None].expand(b, lay.audio_tokens)  # (B, Na)
        else:
            ta = F.pad(t_audio, (0, lay.audio_tokens * g - frames_audio), mode="replicate")
            ta = ta.view(b, lay.audio_tokens, g).mean(-1)  # (B, Na)
        return torch.cat([tv, ta], dim=1).float()  # (B, S)

    # -------------------------------------------------------------------------------- forward
    def forward(
        self,
        video: Tensor,
        audio: Tensor,
        t_video: Tensor,
        t_audio: Tensor,
        text: TextBatch,
        video_rate: float,
        audio_rate: float,
        time_offset: float = 0.0,
    ) -> DiTOutput:
        """Predict the flow velocity of both modalities.

        Args:
            video: (B, C_v, T_v, H_v, W_v) normalized video latents at flow time t_video.
            audio: (B, C_a, T_a) normalized audio latents at flow time t_audio.
            t_video: (B,) flow time per sample, or (B, T_v) per latent frame (clean prefixes).
            t_audio: (B,) or (B, T_a), likewise.
            text: per-token text conditioning with B samples (`TextBatch.null_like()` for none).
            video_rate: video latent frames per second (fps / temporal compression).
            audio_rate: audio latent frames per second (codec frame rate).
            time_offset: seconds added to every token's time (rotary positions are relative, so
                the output does not depend on it; useful to place a window inside a longer clip).

        Returns:
            `DiTOutput` with velocities shaped like `video` and `audio`, and the MoE record.
        """
        self._check_inputs(video, audio, t_video, t_audio, text, video_rate, audio_rate)
        lay = self.layout(tuple(video.shape), tuple(audio.shape), video_rate, audio_rate)
        b, frames_audio = video.shape[0], audio.shape[-1]
        # 1. Tokens of both modalities, one sequence, each with its modality embedding.
        xv = self.video_in(self.patchify_video(video)) + self.modality_embed[0]  # (B, Nv, D)
        xa = self.audio_in(self.patchify_audio(audio)) + self.modality_embed[1]  # (B, Na, D)
        x = torch.cat([xv, xa], dim=1)  # (B, N, D)
        # 2. Rotary angles from each token's time in seconds (and height/width for video).
        cos, sin = self.rotary(lay.positions(video.device, time_offset))  # (N, R) each
        # 3. Per-slot conditioning from each modality's own flow time.
        t_slots = self.slot_times(t_video, t_audio, lay, frames_audio)  # (B, S)
        slot_modality = torch.cat([t_slots.new_zeros(lay.video_frames), t_slots.new_ones(lay.audio_tokens)]).long()
        c = self.t_embedder(t_slots) + self.modality_cond[slot_modality]  # (B, S, D)
        # 4. Text tokens: each encoder projected to the width, then concatenated.
        ctx = torch.cat([p(e.to(x.dtype)) for p, e in zip(self.text_proj, text.embeddings)], dim=1)  # (B, L, D)
        ctx_mask = torch.cat(list(text.masks), dim=1)  # (B, L)
        # 5. Routing side information per token: modality and noise-level bucket.
        sizes = torch.cat([torch.full((lay.video_frames,), lay.video_height * lay.video_width,
                                      device=x.device), torch.ones(lay.audio_tokens, device=x.device)]).long()
        bucket = (t_slots * self.cfg.num_t_buckets).long().clamp(0, self.cfg.num_t_buckets - 1)  # (B, S)
        # output_size spares the GPU a host sync to learn the result's length
        bucket_BN = bucket.repeat_interleave(sizes, dim=1, output_size=lay.num_tokens)  # (B, N)
        bc = BlockContext(
            layout=lay, cos_NR=cos, sin_NR=sin, ctx_BLD=ctx, ctx_mask_BL=ctx_mask,
            modality_T=lay.modality_ids(x.device).repeat(b), t_bucket_T=bucket_BN.reshape(-1),
        )
        if self.sequence_parallel is not None:  # this rank's share of the sequence (and its context)
            x, bc = _shard_sequence(x, bc, bucket_BN, self.sequence_parallel)  # (B, n, D)
        # 6. Blocks, all modulated from the same per-slot projection of the time conditioning.
        mod = self.adaln(c).unflatten(-1, (6, -1))  # (B, S, 6, D)
        moe_outs = []
        for block in self.blocks:
            x, moe = block(x, mod, bc)  # (B, N, D)
            moe_outs.append(moe)
        if self.sequence_parallel is not None:
            x = self.sequence_parallel.gather(x)[:, : lay.num_tokens]  # (B, N, D), padding dropped
        # 7. Per-modality output heads back to latent shapes.
        x_v, x_a = lay.split(x)  # (B, Tt, Hp*Wp, D), (B, Na, D)
        c_v, c_a = lay.split_slots(c)  # (B, Tt, 1, D), (B, Na, D)
        out_v = self.video_out(x_v, c_v).flatten(1, 2)  # (B, Nv, C_v*pt*ph*pw)
        out_a = self.audio_out(x_a, c_a)  # (B, Na, C_a*g)
        return DiTOutput(
            video=self.unpatchify_video(out_v, lay),  # (B, C_v, T_v, H_v, W_v)
            audio=self.unpatchify_audio(out_a, frames_audio),  # (B, C_a, T_a)
            aux=_collect_aux(moe_outs),
        )

    @torch.no_grad()
    def update_router_bias(self) -> Tensor:
        """One bias-balancing step for every MoE layer; call after each optimizer step.

        Returns:
            (L, E) routed-slot counts accumulated since the last call (all-reduced across ranks).
        """
        return torch.stack([blk.moe.update_bias() for blk in self.block_list()])

    def set_dispatch(self, dispatch: str, grouped_impl: str = "auto") -> None:
        """Switch every MoE layer between "grouped" and "reference" dispatch (for tests and benchmarks)."""
        if dispatch not in ("grouped", "reference") or grouped_impl not in ("auto", "torch", "loop"):
            raise ValueError(f"unknown dispatch {dispatch!r}/{grouped_impl!r}.")
        for blk in self.block_list():
            blk.moe.dispatch = dispatch
            blk.moe.grouped_impl = grouped_impl  # type: ignore[assignment]

    def block_list(self) -> list[AVDiTBlock]:
        """`self.blocks` with their type (FSDP and checkpoint wrappers keep the attributes)."""
        return [cast(AVDiTBlock, b) for b in self.blocks]

    def _check_inputs(self, video: Tensor, audio: Tensor, t_video: Tensor, t_audio: Tensor, text: TextBatch,
                      video_rate: float, audio_rate: float) -> None:
        cfg = self.cfg
        if video.dim() != 5 or video.shape[1] != cfg.video_channels:
            raise ValueError(f"video latents must be (B, {cfg.video_channels}, T, H, W); got {tuple(video.shape)}.")
        if audio.dim() != 3 or audio.shape[1] != cfg.audio_channels:
            raise ValueError(f"audio latents must be (B, {cfg.audio_channels}, T); got {tuple(audio.shape)}.")
        b = video.shape[0]
        if audio.shape[0] != b or text.batch_size != b:
            raise ValueError(f"batch sizes differ: video {b}, audio {audio.shape[0]}, text {text.batch_size}.")
        for size, p, name in zip(video.shape[2:], cfg.video_patch, ("time", "height", "width")):
            if size % p:
                raise ValueError(
                    f"video latent {name} {size} is not a multiple of the patch size {p} (video_patch="
                    f"{cfg.video_patch}); crop or pad the clip so it is."
                )
        for t, n, name in ((t_video, video.shape[2], "t_video"), (t_audio, audio.shape[2], "t_audio")):
            if t.shape not in ((b,), (b, n)):
                raise ValueError(f"{name} must be (B,)=({b},) or per latent frame ({b}, {n}); got {tuple(t.shape)}.")
        if video_rate <= 0 or audio_rate <= 0:
            raise ValueError(f"latent rates must be positive frames per second; got {video_rate}, {audio_rate}.")
        if text.dims != cfg.text_dims:
            raise ValueError(
                f"text embeddings have widths {text.dims} but the model expects {cfg.text_dims} "
                "(DiTConfig.text_dims); use the text encoders the model was built for."
            )


def _shard_sequence(x_BND: Tensor, bc: BlockContext, bucket_BN: Tensor, seq: SequenceSplit) -> tuple[Tensor, BlockContext]:
    """This rank's n = ceil(N / size) consecutive tokens, and the block context that goes with them.

    The sequence is zero-padded to n * size tokens; padded tokens are masked out as keys, skip the
    MoE (so routing statistics count real tokens only) and are dropped by `gather`. The rotary
    angles stay those of all N tokens: after the exchange to head shards attention sees the whole
    sequence, so every token keeps its global time and place.
    """
    lay, b = bc.layout, x_BND.shape[0]
    total = lay.num_tokens
    n = -(-total // seq.size)
    pad, start = n * seq.size - total, seq.rank * n
    span = TokenSpan.of(lay, start, n, x_BND.device)
    real = slice(start, start + span.valid)
    return F.pad(x_BND, (0, 0, 0, pad))[:, start : start + n], BlockContext(
        layout=lay,
        cos_NR=F.pad(bc.cos_NR, (0, 0, 0, pad), value=1.0),  # padding: the identity rotation
        sin_NR=F.pad(bc.sin_NR, (0, 0, 0, pad)),
        ctx_BLD=bc.ctx_BLD, ctx_mask_BL=bc.ctx_mask_BL,
        modality_T=bc.modality_T.view(b, total)[:, real].reshape(-1),
        t_bucket_T=bucket_BN[:, real].reshape(-1),
        seq=seq, span=span,
        key_mask_N=torch.arange(total + pad, device=x_BND.device) < total if pad else None,
    )


def _collect_aux(outs: list[MoEOutput]) -> MoEAux:
    losses = {
        "moe_aux": torch.stack([o.aux_loss for o in outs]).sum(),
        "router_z": torch.stack([o.z_loss for o in outs]).sum(),
    }
    counts = torch.stack([o.counts_E for o in outs])  # (L, E)
    counts_m = torch.stack([o.counts_ME for o in outs])  # (L, M, E)
    counts_q = torch.stack([o.counts_QE for o in outs])  # (L, Q, E)

    def share(c: Tensor) -> Tensor:
        return c / c.sum(-1, keepdim=True).clamp_min(1.0)

    load = share(counts)
    stats = {
        "moe/counts": counts,
        "moe/counts_modality": counts_m,
        "moe/counts_t": counts_q,
        "moe/load": load,
        "moe/load_video": share(counts_m[:, 0]),
        "moe/load_audio": share(counts_m[:, 1]),
        "moe/imbalance": (load.amax(-1) * load.shape[-1]).mean(),
    }
    for q in range(counts_q.shape[1]):
        stats[f"moe/load_t{q}"] = share(counts_q[:, q])
    return MoEAux(losses=losses, stats=stats)
