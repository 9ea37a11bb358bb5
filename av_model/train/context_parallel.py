"""Sequence (context) parallelism for the joint audio-video sequence, Ulysses-style.

`apply_sequence_parallel` plugs a `UlyssesSplit` into the model's `sequence_parallel` hook. The N
ranks of a sequence-parallel group all receive the same clips; in each forward pass:

1. every rank embeds the whole batch (patchify, input projections, time and text conditioning are
   cheap next to the blocks), pads the joint sequence of video then audio tokens with zeros to a
   multiple of N and keeps its n = ceil(tokens / N) consecutive tokens;
2. in each block's self-attention, one all-to-all turns (tokens of this rank, all heads) into
   (all tokens, heads of this rank): attention runs over the whole sequence for H / N heads, with
   the rotary angles of every token's global time in seconds (and place in the frame) — the angles
   are computed once for the whole sequence, so a rank's shard changes no token's position. A
   second all-to-all turns the result back. Padded tokens are masked out as keys and skip the MoE.
   Cross-attention to the text and the MoE feed-forward are per token and run on the shard;
3. after the last block the shards are all-gathered and every rank runs the output heads on the whole sequence, so the model's output, its loss and
   sampling are those of one process on every rank.

Gradients: the gather's backward sums the N ranks' (identical) output gradients for each shard, so
each rank's gradient is N times its shard's share; averaging over the ranks, which FSDP2 and DDP do,
gives exactly the one-process gradient. The MoE routing statistics are summed over the group (the
layers' `group_sum` hook), so the balance loss and the logged counts are the whole sequence's.

Communication per block: 2 all-to-alls of the shard's q, k, v and output (4 n D values per sample),
independent of N; the head count must be divisible by N.

The exchanges are `torch.distributed.nn.functional.all_to_all_single` (equal splits; its backward
is the reverse exchange) and `all_gather` (backward: reduce-scatter); both have autograd and run on
NCCL and on gloo (the CPU tests), so no collective here needed a hand-written autograd Function.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh

from av_model.train.expert_parallel import GroupSum, moe_layers

__all__ = ["UlyssesSplit", "apply_sequence_parallel"]

ModelT = TypeVar("ModelT", bound=nn.Module)


class UlyssesSplit:
    """The model's `sequence_parallel` hook: exchanges over one sequence-parallel process group."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)

    def to_heads(self, x_BnCHX: Tensor) -> Tensor:
        """(B, n, C, H, Dh) -> (B, N, C, H / size, Dh): chunk j of the heads goes to rank j."""
        b, n, c, h, dh = x_BnCHX.shape
        send = x_BnCHX.view(b, n, c, self.size, h // self.size, dh).permute(3, 1, 0, 2, 4, 5)  # (size, n, B, C, h, Dh)
        recv = self._exchange(send)  # (size, n, B, C, h, Dh): chunk j of the sequence from rank j
        return recv.flatten(0, 1).transpose(0, 1)  # (B, N, C, h, Dh)

    def to_sequence(self, x_BNhX: Tensor) -> Tensor:
        """(B, N, H / size, Dh) -> (B, n, H, Dh): chunk j of the sequence goes back to rank j."""
        b, big_n, h, dh = x_BNhX.shape
        send = x_BNhX.view(b, self.size, big_n // self.size, h, dh).permute(1, 2, 0, 3, 4)  # (size, n, B, h, Dh)
        recv = self._exchange(send)  # (size, n, B, h, Dh): heads of rank j
        return recv.permute(2, 1, 0, 3, 4).flatten(2, 3)  # (B, n, H, Dh), head j * h + i

    def gather(self, x_BnD: Tensor) -> Tensor:
        """(B, n, D) -> (B, N, D): every rank's shard, in rank order. The backward sums the ranks'
        gradients of this rank's shard (a reduce-scatter): see the module docstring."""
        return torch.cat(dist_nn.all_gather(x_BnD.contiguous(), group=self.group), dim=1)

    def _exchange(self, send: Tensor) -> Tensor:
        send = send.contiguous()
        return dist_nn.all_to_all_single(send.new_empty(send.shape), send, group=self.group)


def apply_sequence_parallel(model: ModelT, sp_mesh: DeviceMesh, stats_group: Any | None = None) -> ModelT:
    """Split `model`'s joint sequence over the mesh's "sp" dimension; in place, returns `model`.

    Works for training (under `apply_parallelism`) and for sampling: every rank of the group runs
    the same sampler with the same noise and gets the same clip.

    Args:
        model: an `AVDiT` (with its `sequence_parallel` hook and `cfg.num_heads`).
        sp_mesh: a mesh with an "sp" dimension (`build_meshes(...).sp`), or a 1-D mesh.
        stats_group: the group whose tokens form one routing batch (default: the "sp" group). With
            expert parallelism too, both must get the same one (`build_meshes(...).stats_group`).
    """
    mesh = sp_mesh["sp"] if sp_mesh.mesh_dim_names and "sp" in sp_mesh.mesh_dim_names else sp_mesh
    if not hasattr(model, "sequence_parallel"):
        raise TypeError(f"{type(model).__name__} has no `sequence_parallel` hook; apply it to an AVDiT.")
    cfg: Any = model.cfg
    heads, size = int(cfg.num_heads), mesh.size()
    if heads % size:
        good = [d for d in range(1, heads + 1) if heads % d == 0]
        raise ValueError(f"parallel.sequence_parallel={size} must divide the {heads} attention heads "
                         f"(each rank attends with heads / N of them); use one of {good}.")
    split = UlyssesSplit(mesh.get_group())
    model.sequence_parallel = split  # type: ignore[assignment]
    summed = GroupSum(stats_group if stats_group is not None else split.group)
    for layer in moe_layers(model):
        layer.group_sum = summed
    return model
