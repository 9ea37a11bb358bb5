"""Expert parallelism: each rank of an expert-parallel group holds E / N experts, tokens travel to them.

Applied from outside the model (torchtitan's shape): `apply_expert_parallel` turns every MoE
layer's stacked expert weights `(E, D, 2F)`, `(E, F, D)` into DTensors sharded along the expert axis
over the mesh's "ep" dimension (each rank keeps `E / N` whole experts) and plugs an
`ExpertParallelDispatch` into the layer's `expert_fn` hook. The router, the shared experts and the
rest of the model are untouched: every rank routes its own tokens.

One layer's forward on rank r of N (El = E / N local experts, rank r owns experts r*El .. r*El+El-1):

1. sort the S = T * K routed slots by expert (the single-device grouped path's first step); sorted
   by expert they are also sorted by the rank that owns the expert;
2. count exchange: `all_to_all_single` of the per-expert counts, so each rank learns how many rows
   every source sends to each of its experts, and from them the split sizes;
3. token exchange: `all_to_all_single` with those variable split sizes; rows arrive grouped by
   (source rank, local expert), are permuted to (local expert, source rank) and run through the
   grouped SwiGLU of the local experts;
4. combine: the inverse permutation, the reverse `all_to_all_single`, then the single-device path's
   unsort and gate-weighted sum.

Autograd: the token exchanges use `torch.distributed.nn.functional.all_to_all_single`, whose
backward is the reverse all-to-all, and the permutations are gathers whose backward is the gather by
the inverse (no scatter-add). The split sizes are read on the host: `all_to_all_single` takes them
as lists (the same synchronization torchtitan's token dispatch makes).

Routing statistics stay global: the layer's `group_sum` hook all-reduces (with autograd) the sums
that the balance loss and the z-loss are made of, and the logged counts, over the routing batch.

Gradients and FSDP2 (`fully_shard_with_experts`): every rank's loss is its own micro-batch's, and
data parallelism averages gradients over all W ranks. An expert's gradient on its owner already sums
the contributions of the N ranks of its "ep" row (the backward all-to-all brings them home), so FSDP2
over "dp_shard" adds the rest and the divide factor is set to W, not W / N. The router's weights are
kept out of FSDP (they are tiny and computed in fp32 anyway) and averaged over all ranks by a hook.

Weights on several meshes (experts, dense weights) beside plain tensors (the router) are more than
torch's foreach and fused kernels take in one list: `total_norm`, `clip_grads_with_norm_` and
`split_by_layout` (optimizer parameter groups) work one layout at a time.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Shard

from av_model.dit.moe import (
    GroupedImpl,
    MoEFeedForward,
    MoEOutput,
    compute_dtype,
    dispatch_rows,
    expert_order,
    grouped_swiglu,
    mix_slots,
    permute_rows,
)

__all__ = [
    "ExpertParallelDispatch", "GroupSum", "apply_expert_parallel", "clip_grads_with_norm_", "fully_shard_with_experts",
    "moe_layers", "split_by_layout", "total_norm",
]


ModelT = TypeVar("ModelT", bound=nn.Module)


class GroupSum:
    """Sum a tensor over a process group, with autograd (the backward sums the gradients too).

    Every rank of the group computes the same global value from the sum and adds it to its own loss;
    data parallelism then averages over the ranks, which turns the summed backward into exactly
    the gradient of the global value.
    """

    def __init__(self, group: Any) -> None:
        self.group = group

    def __call__(self, x: Tensor) -> Tensor:
        return dist_nn.all_reduce(x, op=dist.ReduceOp.SUM, group=self.group)


class ExpertParallelDispatch:
    """The `expert_fn` of a MoE layer whose experts are split over an expert-parallel group.

    Args:
        group: the expert-parallel process group (N ranks).
        num_experts: E, divisible by N.
    """

    def __init__(self, group: Any, num_experts: int) -> None:
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if num_experts % self.size:
            raise ValueError(f"{num_experts} experts do not split over {self.size} expert-parallel ranks.")
        self.num_experts, self.local_experts = num_experts, num_experts // self.size

    def __call__(self, x_TD: Tensor, idx_TK: Tensor, gates_TK: Tensor, w13_ED2F: Tensor, w2_EFD: Tensor,
                 impl: GroupedImpl) -> Tensor:
        """Routed experts' output (T, D) for this rank's tokens; `w13`, `w2` hold this rank's experts."""
        w13_LD2F, w2_LFD = _local(w13_ED2F), _local(w2_EFD)  # L = El local experts
        if w13_LD2F.shape[0] != self.local_experts:
            raise ValueError(f"rank holds {w13_LD2F.shape[0]} experts, expected {self.local_experts}: "
                             "the expert weights were not sharded by apply_expert_parallel.")
        t, k = idx_TK.shape
        n, el = self.size, self.local_experts
        # 1. Slots in expert order (so also in the order of the ranks that own the experts).
        order_S, inv_S, counts_E = expert_order(idx_TK, self.num_experts)
        xs_SD = dispatch_rows(x_TD.to(compute_dtype(x_TD)), order_S, inv_S, k)  # (S, D)
        # 2. Count exchange: rows each source sends to each of this rank's experts.
        recv_NL = exchange_counts(counts_E.long().view(n, el), self.group)  # (N, El)
        send_splits = counts_E.view(n, el).sum(1).tolist()  # rows to each rank (host sync, see module doc)
        recv_splits = recv_NL.sum(1).tolist()
        # 3. Token exchange, then the local experts on rows grouped by expert.
        xr_RD = _all_to_all(xs_SD, recv_splits, send_splits, self.group)  # (R, D): (source, expert) order
        perm_R, inv_R, local_counts_L = source_to_expert_order(recv_NL)
        xe_RD = permute_rows(xr_RD, perm_R, inv_R)  # (R, D): (expert, source) order
        ye_RD = grouped_swiglu(xe_RD, w13_LD2F, w2_LFD, local_counts_L, impl)  # (R, D)
        # 4. Combine: back to (source, expert) order, home to the source ranks, back to slot order.
        yr_RD = to_source_order(ye_RD, perm_R, inv_R)
        ys_SD = _all_to_all(yr_RD, send_splits, recv_splits, self.group)  # (S, D), expert order
        y_TKD = permute_rows(ys_SD, inv_S, order_S).view(t, k, ys_SD.shape[-1])  # (T, K, D)
        return mix_slots(y_TKD, gates_TK).to(x_TD.dtype)


def exchange_counts(send_NL: Tensor, group: Any) -> Tensor:
    """(N, El) rows this rank sends to each rank's experts -> (N, El) rows each rank sends to ours."""
    recv_NL = torch.empty_like(send_NL)
    dist.all_to_all_single(recv_NL, send_NL.contiguous(), group=group)
    return recv_NL


def source_to_expert_order(recv_NL: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Permutation from received order (source-major) to local-expert-major order.

    Returns:
        perm_R (received row of each expert-major row), inv_R, counts_L (int32 rows per local expert).
    """
    n, el = recv_NL.shape
    expert_R = torch.arange(el, device=recv_NL.device).repeat(n).repeat_interleave(recv_NL.reshape(-1))
    perm_R = torch.argsort(expert_R, stable=True)  # stable: sources stay in rank order within an expert
    inv_R = torch.empty_like(perm_R).scatter_(0, perm_R, torch.arange(perm_R.numel(), device=perm_R.device))
    return perm_R, inv_R, recv_NL.sum(0).to(torch.int32)


def to_source_order(ye_RD: Tensor, perm_R: Tensor, inv_R: Tensor) -> Tensor:
    """Inverse of the (source, expert) -> (expert, source) permutation of the received rows."""
    return permute_rows(ye_RD, inv_R, perm_R)


def _all_to_all(x_SD: Tensor, out_splits: list[int], in_splits: list[int], group: Any) -> Tensor:
    out = x_SD.new_empty((sum(out_splits), *x_SD.shape[1:]))
    return dist_nn.all_to_all_single(out, x_SD.contiguous(), out_splits, in_splits, group=group)


def _local(w: Tensor) -> Tensor:
    return w.to_local() if isinstance(w, DTensor) else w


def moe_layers(model: nn.Module) -> list[MoEFeedForward]:
    """The routed MoE layers of `model` (a dense layer, E = 1, has nothing to split)."""
    return [m for m in model.modules() if isinstance(m, MoEFeedForward) and m.num_experts > 1]


def apply_expert_parallel(model: ModelT, ep_mesh: DeviceMesh, stats_group: Any | None = None) -> ModelT:
    """Split every MoE layer's experts over the mesh's "ep" dimension; in place, returns `model`.

    Every rank must hold the same initial weights (seeded init or a loaded checkpoint), as FSDP2
    assumes too: each keeps its slice.

    Args:
        model: a module holding `MoEFeedForward` layers (the `AVDiT`, or one layer in tests).
        ep_mesh: a mesh with an "ep" dimension (`build_meshes(...).ep`), or a 1-D expert-parallel mesh.
        stats_group: the group whose tokens form one routing batch (default: the "ep" group).
    """
    mesh = ep_mesh["ep"] if ep_mesh.mesh_dim_names and "ep" in ep_mesh.mesh_dim_names else ep_mesh
    group, n, rank = mesh.get_group(), mesh.size(), mesh.get_local_rank()
    for layer in moe_layers(model):
        if layer.num_experts % n:
            divisors = [d for d in range(1, layer.num_experts + 1) if layer.num_experts % d == 0]
            raise ValueError(f"parallel.expert_parallel={n} does not divide the {layer.num_experts} experts; "
                             f"use one of {divisors}.")
        if isinstance(layer.w13_ED2F, DTensor):
            raise ValueError("apply_expert_parallel was already applied to this model.")
        el = layer.num_experts // n
        for name in ("w13_ED2F", "w2_EFD"):
            full = getattr(layer, name)
            local = full.detach()[rank * el : (rank + 1) * el].clone()
            if not local.is_meta:  # a model built on the meta device stays there until materialized
                local = local.to(mesh.device_type)
            shard = DTensor.from_local(local, mesh, [Shard(0)], run_check=False)
            setattr(layer, name, nn.Parameter(shard, requires_grad=full.requires_grad))
        layer.expert_fn = ExpertParallelDispatch(group, layer.num_experts)
        layer.group_sum = GroupSum(stats_group if stats_group is not None else group)
    return model


def fully_shard_with_experts(model: nn.Module, blocks: nn.ModuleList, ep_mesh: DeviceMesh, dense_mesh: DeviceMesh,
                             mp_policy: Any, reshard_after_forward: bool) -> None:
    """FSDP2 for a model whose experts `apply_expert_parallel` split over `ep_mesh`'s "ep" dimension.

    Per block, bottom-up: the shared experts on `dense_mesh`; the MoE layer (its local experts) over
    "dp_shard" with the gradient divided by all W ranks (see the module docstring); the router out
    of FSDP, averaged over all ranks by a gradient hook; the rest of the block on `dense_mesh`; then
    the root.

    Args:
        ep_mesh: the ("dp_shard", "ep") mesh of `build_meshes`.
        dense_mesh: where every other weight is sharded (all ranks, or the 2-D HSDP mesh).
    """
    from torch.distributed.fsdp import fully_shard
    from torch.utils import _pytree

    # FSDP2 finds the tensors of a module's output with pytree to hook its pre-backward all-gather
    # on them; without this registration the `MoEOutput` dataclass would hide them, and backward
    # would read experts that were resharded after forward.
    if MoEOutput not in _pytree.SUPPORTED_NODES:
        _pytree.register_dataclass(MoEOutput)
    world = ep_mesh.size()
    device = _mesh_device(ep_mesh)
    for block in blocks:
        for layer in moe_layers(block):
            if layer.shared is not None:
                fully_shard(layer.shared, mesh=dense_mesh, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward)
            router = {layer.router_DE, layer.router_bias_ME}
            for p in router:
                p.data = p.data.to(device)  # FSDP moves only the parameters it manages
                if p.requires_grad:
                    p.register_post_accumulate_grad_hook(_average_over(world))
            shards = ep_mesh["dp_shard"]
            local = layer.num_experts // ep_mesh["ep"].size()
            # FSDP2 shards dim 0; with fewer local experts than shards that would leave ranks empty,
            # so the experts are then sharded along their width instead.
            placement = None if local % shards.size() == 0 else _shard_width
            sharded = fully_shard(layer, mesh=shards, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward,
                                  shard_placement_fn=placement, ignored_params=router)
            sharded.set_gradient_divide_factor(float(world))
            if shards.size() > 1 and dist.get_backend(shards.get_group()) != "nccl":
                # A custom factor makes the reduce-scatter a pre-multiplied sum, which only NCCL has:
                # sum, then divide. (Not on one shard: there FSDP divides without a collective, and
                # with this flag would divide twice.)
                sharded.set_force_sum_reduction_for_comms(True)
        fully_shard(block, mesh=dense_mesh, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=dense_mesh, mp_policy=mp_policy, reshard_after_forward=False)


def _shard_width(p: nn.Parameter) -> Shard:
    return Shard(1)


def _average_over(world: int) -> Any:
    def hook(p: Tensor) -> None:
        if p.grad is not None:
            dist.all_reduce(p.grad)  # over all ranks; SUM, then divide: gloo has no AVG
            p.grad.div_(world)

    return hook


def _mesh_device(mesh: DeviceMesh) -> torch.device:
    if mesh.device_type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(mesh.device_type)


# ------------------------------------------------------------------------- gradient norm and clipping
def _by_layout(tensors: list[Tensor]) -> list[list[Tensor]]:
    """Tensors grouped by (mesh, placements), plain tensors together, in order of first appearance
    (the same on every rank, so the collectives below line up)."""
    groups: dict[Any, list[Tensor]] = {}
    for t in tensors:
        key = (t.device_mesh, t.placements) if isinstance(t, DTensor) else None
        groups.setdefault(key, []).append(t)
    return list(groups.values())


def total_norm(grads: list[Tensor], norm_type: float = 2.0) -> Tensor:
    """`torch.nn.utils.get_total_norm` for gradients on several meshes (experts on ("dp_shard", "ep"),
    the rest on all ranks) and plain tensors (the router): one fused norm per layout, each made
    global, then combined. The torch function refuses a list that mixes them.

    Returns:
        a plain 0-dim tensor, the same on every rank.
    """
    parts = []
    for group in _by_layout(grads):
        norm = torch.nn.utils.get_total_norm(group, norm_type)
        parts.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    if not parts:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(parts), norm_type)


def clip_grads_with_norm_(params: list[Tensor], max_norm: float, norm: Tensor) -> None:
    """`torch.nn.utils.clip_grads_with_norm_` for parameters of several layouts (see `total_norm`)."""
    with_grad = [p for p in params if p.grad is not None]
    for group in _by_layout(with_grad):
        torch.nn.utils.clip_grads_with_norm_(group, max_norm, norm)


def split_by_layout(param_groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Optimizer parameter groups with one layout each (see `_by_layout`), same settings.

    The foreach and fused optimizers run one kernel over a group's tensors, which DTensor refuses
    when they live on different meshes or mix with plain tensors (experts, dense weights and the
    router under expert parallelism). A group with one layout is returned unchanged; the others'
    extra parts are named `<name>@1`, `<name>@2`, ...
    """
    out = []
    for group in param_groups:
        parts = _by_layout(list(group["params"])) or [[]]
        for i, params in enumerate(parts):
            part = {**group, "params": params}
            if i and "name" in group:
                part["name"] = f"{group['name']}@{i}"
            out.append(part)
    return out
