"""Mixture-of-experts feed-forward: token-choice top-k routing, shared experts, dropless dispatch.

Tensor names carry their axes (as torchtitan's moe.py does):
    T  tokens in the flattened batch (B * N)     D  model width
    E  routed experts                            F  hidden size of one expert
    K  experts per token (top_k)                 M  modalities (0 video, 1 audio)
    Q  noise-level buckets of the flow time t    S  T * K routed token slots

Two dispatch paths compute the same function:
  * `reference`: a plain loop over experts (index, SwiGLU, scatter-add): the readable oracle.
  * `grouped`: sort the S slots by expert, run every expert in one grouped matmul over contiguous
    segments, gather back into slot order and mix each token's K outputs by its gates (every row
    move is a gather by a permutation, also in the backward pass: no scatter-add). On CUDA in bf16
    this is `torch._grouped_mm` with int32 cumulative offsets and no host synchronization; elsewhere
    the segments are multiplied one by one (the segment sizes must then be read on the host, which
    costs nothing on a CPU).

Each expert's gate and up projections are stored side by side, `w13_ED2F = [w1 | w3]`, so the
grouped path runs two grouped matmuls per layer instead of three (one of width 2F, which uses the
tensor cores better than two of width F), and tokens are cast to the compute dtype before they
are gathered into expert order (half the bytes moved).

Parallel hooks (set from outside by `av_model.train.expert_parallel` / `context_parallel`; the layer
itself never imports torch.distributed):
  * `expert_fn`: computes the routed experts' output in place of the local dispatch (expert
    parallelism: tokens travel to the ranks that hold their experts and back).
  * `group_sum`: sums a tensor over the ranks whose tokens form one routing batch (with autograd),
    so the balance loss, the z-loss and the logged counts are those of the whole batch.

Load balancing:
  * "bias" (DeepSeek-V3): a per-expert bias is added to the scores only to choose experts, never to
    the gate values, and is nudged by `rate * sign(mean load - load)` in `update_bias()`, which the
    training loop calls once per optimizer step (outside autograd, so activation checkpointing
    recomputation and gradient accumulation cannot corrupt it; counts are all-reduced across ranks).
  * "aux": the Switch/GShard loss E * sum_e f_e * P_e (f: share of routed slots, P: mean probability).
  * a router z-loss (mean squared log-sum-exp of the logits) keeps logits small in both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from av_model.dit.layers import SwiGLU

GroupedImpl = Literal["auto", "torch", "loop"]
NUM_MODALITIES = 2


class ExpertFn(Protocol):
    """Routed experts' output for routed tokens: what expert parallelism plugs into a layer."""

    def __call__(self, x_TD: Tensor, idx_TK: Tensor, gates_TK: Tensor, w13_ED2F: Tensor, w2_EFD: Tensor,
                 impl: GroupedImpl) -> Tensor: ...


@dataclass
class MoEOutput:
    """Result of one MoE layer.

    Attributes:
        out_TD: (T, D) output.
        aux_loss: scalar balance loss, already weighted (zero unless balance="aux").
        z_loss: scalar router z-loss, already weighted.
        counts_E: (E,) routed slots per expert.
        counts_ME: (M, E) routed slots per expert and modality.
        counts_QE: (Q, E) routed slots per expert and noise-level bucket.
    """

    out_TD: Tensor
    aux_loss: Tensor
    z_loss: Tensor
    counts_E: Tensor
    counts_ME: Tensor
    counts_QE: Tensor


class MoEFeedForward(nn.Module):
    """SwiGLU experts behind a modality-aware fp32 router, plus always-on shared experts.

    Args:
        width: D.
        hidden: F, hidden size of each expert.
        num_experts: E; with E == 1 there is no router and the layer is a dense SwiGLU.
        top_k: K.
        num_shared: shared experts, fused into one SwiGLU of hidden size num_shared * F.
        balance: "bias", "aux" or "none".
        bias_update_rate, aux_loss_coeff, z_loss_coeff: see `DiTConfig`.
        dispatch: "grouped" or "reference".
        num_t_buckets: Q, for routing statistics.
    """

    expert_bias_E: Tensor
    load_accum_E: Tensor

    def __init__(
        self,
        width: int,
        hidden: int,
        num_experts: int,
        top_k: int,
        num_shared: int = 0,
        balance: str = "bias",
        bias_update_rate: float = 1e-3,
        aux_loss_coeff: float = 1e-2,
        z_loss_coeff: float = 1e-3,
        dispatch: str = "grouped",
        num_t_buckets: int = 4,
    ) -> None:
        super().__init__()
        if top_k > num_experts:
            raise ValueError(f"top_k={top_k} is larger than num_experts={num_experts}.")
        self.num_experts, self.top_k = num_experts, top_k
        self.balance, self.dispatch = balance, dispatch
        self.bias_update_rate, self.aux_loss_coeff, self.z_loss_coeff = bias_update_rate, aux_loss_coeff, z_loss_coeff
        self.num_t_buckets = num_t_buckets
        self.grouped_impl: GroupedImpl = "auto"
        # Parallel hooks (see the module docstring); None on one device.
        self.expert_fn: ExpertFn | None = None
        self.group_sum: Callable[[Tensor], Tensor] | None = None
        self.w13_ED2F = nn.Parameter(torch.empty(num_experts, width, 2 * hidden))  # [w1 | w3]
        self.w2_EFD = nn.Parameter(torch.empty(num_experts, hidden, width))
        self.shared = SwiGLU(width, num_shared * hidden) if num_shared > 0 else None
        if num_experts > 1:
            self.router_DE = nn.Parameter(torch.empty(width, num_experts))
            # The router sees the modality through a learned per-modality logit offset, which is
            # what a one-hot modality feature concatenated to its input would learn.
            self.router_bias_ME = nn.Parameter(torch.zeros(NUM_MODALITIES, num_experts))
        # Selection bias of "bias" balancing: state, not a parameter (no gradient), saved in checkpoints.
        self.register_buffer("expert_bias_E", torch.zeros(num_experts))
        self.register_buffer("load_accum_E", torch.zeros(num_experts), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        width, hidden = self.w2_EFD.shape[1:][::-1]
        std_in = (2.0 / (width + hidden)) ** 0.5  # xavier-normal of each D x F matrix, as DiT initializes MLPs
        for w in (self.w13_ED2F, self.w2_EFD):
            nn.init.normal_(w, std=std_in)
        if self.num_experts > 1:
            # Small router weights: near-uniform routing at the start, so every expert gets tokens.
            nn.init.normal_(self.router_DE, std=0.02)
            nn.init.zeros_(self.router_bias_ME)
        self.expert_bias_E.zero_()
        self.load_accum_E.zero_()

    def forward(self, x_TD: Tensor, modality_T: Tensor, t_bucket_T: Tensor) -> MoEOutput:
        """Route each token to K experts and mix their outputs by the gate values.

        Args:
            x_TD: (T, D) tokens (already normalized and modulated).
            modality_T: (T,) long, 0 video / 1 audio.
            t_bucket_T: (T,) long, noise-level bucket in [0, Q).
        """
        zero = x_TD.new_zeros((), dtype=torch.float32)
        if self.num_experts == 1:  # dense baseline: no router, every token through the one expert
            out_TD = swiglu(x_TD, self.w13_ED2F[0], self.w2_EFD[0])
            idx_TK = torch.zeros_like(modality_T)[:, None]
            aux_loss = z_loss = zero
        else:
            idx_TK, gates_TK, aux_loss, z_loss = self.route(x_TD, modality_T)
            if self.expert_fn is not None:
                out_TD = self.expert_fn(x_TD, idx_TK, gates_TK, self.w13_ED2F, self.w2_EFD, self.grouped_impl)
            elif self.dispatch == "reference":
                out_TD = moe_reference(x_TD, idx_TK, gates_TK, self.w13_ED2F, self.w2_EFD)
            else:
                out_TD = moe_grouped(x_TD, idx_TK, gates_TK, self.w13_ED2F, self.w2_EFD, impl=self.grouped_impl)
        if self.shared is not None:
            out_TD = out_TD + self.shared(x_TD)
        with torch.no_grad():
            counts_QME = self._counts(idx_TK, modality_T, t_bucket_T)
            if self.training and self.balance == "bias" and self.num_experts > 1:
                self.load_accum_E += counts_QME.sum((0, 1))  # this rank's: `update_bias` all-reduces
            if self.group_sum is not None:
                counts_QME = self.group_sum(counts_QME)  # logged statistics: the whole batch's
        return MoEOutput(out_TD, aux_loss, z_loss, counts_QME.sum((0, 1)), counts_QME.sum(0), counts_QME.sum(1))

    def route(self, x_TD: Tensor, modality_T: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Top-k routing in fp32.

        Returns:
            idx_TK (T, K) long chosen experts, gates_TK (T, K) mixing weights, aux_loss, z_loss.
        """
        # fp32 even under autocast: near-tied bf16 scores would flip expert choices from noise.
        with torch.autocast(device_type=x_TD.device.type, enabled=False):
            # The modality offset as a one-hot product, not `router_bias_ME[modality_T]`: indexing's
            # backward scatter-adds every token into the same few rows (atomics on 2 x E addresses).
            onehot_TM = F.one_hot(modality_T, NUM_MODALITIES).float()
            logits_TE = x_TD.float() @ self.router_DE.float() + onehot_TM @ self.router_bias_ME.float()
            probs_TE = logits_TE.softmax(dim=-1)
            select_TE = probs_TE + self.expert_bias_E if self.balance == "bias" else probs_TE
            idx_TK = select_TE.topk(self.top_k, dim=-1).indices  # bias chooses experts, never weights them
            gates_TK = probs_TE.gather(1, idx_TK)
            if self.top_k > 1:
                gates_TK = gates_TK / gates_TK.sum(dim=-1, keepdim=True)
            # Both losses from sums over the batch (divided once at the end), so that with `group_sum`
            # they are the losses of the whole batch, not an average of per-rank ones.
            sums = [torch.logsumexp(logits_TE, dim=-1).square().sum()[None], logits_TE.new_full((1,), len(x_TD))]
            if self.balance == "aux":
                slots_E = probs_TE.new_zeros(self.num_experts).scatter_add_(
                    0, idx_TK.reshape(-1), torch.ones_like(idx_TK, dtype=torch.float32).reshape(-1)
                )
                sums += [slots_E, probs_TE.sum(0)]
            total = torch.cat(sums)
            if self.group_sum is not None:
                total = self.group_sum(total)  # one all-reduce for both losses
            lse2, tokens = total[0], total[1].clamp_min(1.0)
            z_loss = self.z_loss_coeff * lse2 / tokens
            if self.balance == "aux":
                e = self.num_experts
                share_E, prob_E = total[2 : 2 + e] / (tokens * self.top_k), total[2 + e :] / tokens
                aux_loss = self.aux_loss_coeff * e * (share_E * prob_E).sum()
            else:
                aux_loss = z_loss.new_zeros(())
        return idx_TK, gates_TK.to(x_TD.dtype), aux_loss, z_loss

    def _counts(self, idx_TK: Tensor, modality_T: Tensor, t_bucket_T: Tensor) -> Tensor:
        """(Q, M, E) slots per expert, modality and noise bucket: one joint histogram."""
        e, m, q = self.num_experts, NUM_MODALITIES, self.num_t_buckets
        key_TK = (t_bucket_T[:, None] * m + modality_T[:, None]) * e + idx_TK  # (T, K) cell of (Q, M, E)
        ones = torch.ones(1, device=idx_TK.device).expand(key_TK.numel())
        return torch.zeros(q * m * e, device=idx_TK.device).scatter_add_(0, key_TK.reshape(-1), ones).view(q, m, e)

    @torch.no_grad()
    def update_bias(self) -> Tensor:
        """Apply one DeepSeek-V3 bias step from the loads accumulated since the last call.

        Returns:
            (E,) the accumulated (all-reduced) load that drove the update.
        """
        load_E = self.load_accum_E.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(load_E)  # every rank must take the same step
        # A frozen router (fine-tuning with `model.freeze` or LoRA) keeps its selection bias too, so
        # the base weights plus the trained ones reproduce the fine-tuned model.
        if self.balance == "bias" and self.num_experts > 1 and self.router_DE.requires_grad:
            # sign(0) = 0: no tokens seen means no change, without a host-side check.
            self.expert_bias_E += self.bias_update_rate * torch.sign(load_E.mean() - load_E)
        self.load_accum_E.zero_()
        return load_E


def glu(h_X2F: Tensor) -> Tensor:
    """silu(gate) * up for the side-by-side [gate | up] projection output (..., 2F) -> (..., F)."""
    gate, up = h_X2F.chunk(2, dim=-1)
    return F.silu(gate) * up


def swiglu(x_TD: Tensor, w13_D2F: Tensor, w2_FD: Tensor) -> Tensor:
    """One SwiGLU expert: `(silu(x w1) * (x w3)) w2` with w1, w3 side by side in `w13`."""
    return glu(x_TD @ w13_D2F) @ w2_FD


def moe_reference(x_TD: Tensor, idx_TK: Tensor, gates_TK: Tensor, w13_ED2F: Tensor, w2_EFD: Tensor) -> Tensor:
    """The oracle: loop over experts, gather their tokens, SwiGLU, scatter-add weighted outputs."""
    out_TD = torch.zeros_like(x_TD)
    for e in range(w13_ED2F.shape[0]):
        tok, slot = torch.where(idx_TK == e)  # tokens (and which of their K slots) routed to e
        if tok.numel() == 0:
            continue
        y = swiglu(x_TD[tok], w13_ED2F[e], w2_EFD[e])  # (n_e, D)
        out_TD = out_TD.index_add(0, tok, y * gates_TK[tok, slot, None])
    return out_TD


def moe_grouped(
    x_TD: Tensor,
    idx_TK: Tensor,
    gates_TK: Tensor,
    w13_ED2F: Tensor,
    w2_EFD: Tensor,
    impl: GroupedImpl = "auto",
) -> Tensor:
    """Dropless dispatch: sort slots by expert, grouped SwiGLU, unsort and mix by the gates.

    Every move of rows is a gather by a permutation whose backward is the gather by the inverse
    permutation (`_Dispatch`, `_Unsort`), so neither direction scatter-adds: no atomics, no sort of
    indices in the backward pass, and deterministic gradients.

    Args:
        impl: "torch" uses `torch._grouped_mm`; "loop" multiplies segment by segment; "auto"
            picks `torch._grouped_mm` on CUDA when the dtype and sizes allow it, else "loop".
    """
    e, (t, k) = w13_ED2F.shape[0], idx_TK.shape
    order_S, inv_S, counts_E = expert_order(idx_TK, e)
    xs_SD = dispatch_rows(x_TD.to(compute_dtype(x_TD)), order_S, inv_S, k)  # (S, D) in expert order, cast first
    y_SD = grouped_swiglu(xs_SD, w13_ED2F, w2_EFD, counts_E, impl)  # (S, D), expert order
    y_TKD = permute_rows(y_SD, inv_S, order_S).view(t, k, y_SD.shape[-1])  # back to token-major slots
    return mix_slots(y_TKD, gates_TK).to(x_TD.dtype)


def expert_order(idx_TK: Tensor, num_experts: int) -> tuple[Tensor, Tensor, Tensor]:
    """The S = T * K slots (token-major: slot s = token * K + k) sorted by expert.

    Returns:
        order_S: slots in expert order (stable), inv_S: its inverse permutation,
        counts_E: (E,) int32 slots per expert.
    """
    flat_S = idx_TK.reshape(-1)  # (S,) expert of each slot
    order_S = torch.argsort(flat_S, stable=True)  # slots sorted by expert
    inv_S = torch.empty_like(order_S).scatter_(0, order_S, torch.arange(order_S.numel(), device=order_S.device))
    counts_E = torch.zeros(num_experts, dtype=torch.int32, device=idx_TK.device).scatter_add_(
        0, flat_S, torch.ones_like(flat_S, dtype=torch.int32)
    )  # scatter_add, not bincount: bincount reads its size on the host (a GPU sync)
    return order_S, inv_S, counts_E


def dispatch_rows(x_TD: Tensor, order_S: Tensor, inv_S: Tensor, k: int) -> Tensor:
    """(S, D) rows of `x_TD` in expert order (each token K times); backward without scatter-add."""
    return _Dispatch.apply(x_TD, order_S // k, inv_S, k)


def permute_rows(y_SD: Tensor, perm_S: Tensor, inv_perm_S: Tensor) -> Tensor:
    """`y_SD[perm_S]` for a permutation, whose backward is the gather by the inverse permutation."""
    return _Unsort.apply(y_SD, perm_S, inv_perm_S)


def grouped_swiglu(xs_SD: Tensor, w13_ED2F: Tensor, w2_EFD: Tensor, counts_E: Tensor,
                   impl: GroupedImpl = "auto") -> Tensor:
    """Every expert's SwiGLU on its contiguous segment of rows sorted by expert: (S, D) -> (S, D).

    Args:
        xs_SD: rows in expert order, already in the compute dtype.
        counts_E: (E,) int32 rows per expert (segment sizes, summing to S).
        impl: "torch" uses `torch._grouped_mm`; "loop" multiplies segment by segment; "auto"
            picks `torch._grouped_mm` on CUDA when the dtype and sizes allow it, else "loop".
    """
    offsets_E = torch.cumsum(counts_E, dim=0, dtype=torch.int32)  # end of each expert's segment
    w13, w2 = w13_ED2F.to(xs_SD.dtype), w2_EFD.to(xs_SD.dtype)
    use_torch = impl == "torch" or (impl == "auto" and _grouped_mm_ok(xs_SD, w13, w2))
    mm = _grouped_mm_torch if use_torch else _grouped_mm_loop
    h_SF = glu(mm(xs_SD, w13, offsets_E, counts_E))  # (S, F)
    return mm(h_SF, w2, offsets_E, counts_E)  # (S, D)


def mix_slots(y_TKD: Tensor, gates_TK: Tensor) -> Tensor:
    """Each token's K expert outputs weighted by its gates, summed in fp32: (T, K, D) -> (T, D) fp32."""
    return (y_TKD.float() * gates_TK.float().unsqueeze(-1)).sum(dim=1)


class _Dispatch(torch.autograd.Function):
    """Rows of x_TD in expert order, `x_TD[tok_S]`, where every token appears K times.

    Backward: the gradient rows are put back in slot order by the inverse permutation and the K
    slots of each token summed, instead of autograd's scatter-add into `tok_S` (atomic, and on
    CUDA it sorts the indices first). Written by hand because autograd cannot know that an index
    is a permutation.
    """

    @staticmethod
    def forward(ctx, x_TD: Tensor, tok_S: Tensor, inv_S: Tensor, k: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(inv_S)
        ctx.k = k
        return x_TD.index_select(0, tok_S)

    @staticmethod
    def backward(ctx, grad_SD: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (inv_S,) = ctx.saved_tensors
        grad_TKD = grad_SD.index_select(0, inv_S).view(-1, ctx.k, grad_SD.shape[-1])
        return grad_TKD.sum(dim=1), None, None, None


class _Unsort(torch.autograd.Function):
    """`y_SD[inv_S]`: rows from expert order back to slot order; backward gathers by `order_S`."""

    @staticmethod
    def forward(ctx, y_SD: Tensor, inv_S: Tensor, order_S: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(order_S)
        return y_SD.index_select(0, inv_S)

    @staticmethod
    def backward(ctx, grad_SD: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (order_S,) = ctx.saved_tensors
        return grad_SD.index_select(0, order_S), None, None


def compute_dtype(x: Tensor) -> torch.dtype:
    # `_grouped_mm` is not on autocast's cast lists, so apply the autocast dtype by hand.
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _grouped_mm_ok(x_SD: Tensor, w13_ED2F: Tensor, w2_EFD: Tensor) -> bool:
    """`torch._grouped_mm` runs on CUDA in bf16 with 16-byte aligned rows (D, F multiples of 8)."""
    d, f = w13_ED2F.shape[1], w13_ED2F.shape[2] // 2
    return (
        x_SD.is_cuda
        and x_SD.dtype == torch.bfloat16
        and hasattr(torch, "_grouped_mm")
        and d % 8 == 0
        and f % 8 == 0
        and w2_EFD.shape[1] == f
    )


def _grouped_mm_torch(x_SD: Tensor, w_EDF: Tensor, offsets_E: Tensor, counts_E: Tensor) -> Tensor:
    return torch._grouped_mm(x_SD.contiguous(), w_EDF.contiguous(), offs=offsets_E)


def _grouped_mm_loop(x_SD: Tensor, w_EDF: Tensor, offsets_E: Tensor, counts_E: Tensor) -> Tensor:
    # Written by hand because no public PyTorch op multiplies ragged segments on a CPU.
    segments = torch.split(x_SD, counts_E.tolist())
    return torch.cat([seg @ w_EDF[i] for i, seg in enumerate(segments)], dim=0)
