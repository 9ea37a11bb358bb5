"""Device meshes of expert and sequence parallelism, built over all ranks of the job, and the one
call that applies both (`apply_expert_and_sequence_parallel`, from `apply_parallelism`).

Ranks are laid out row-major, so the innermost axis of each mesh holds consecutive ranks: with
`expert_parallel` or `sequence_parallel` at most the GPUs of a node, its all-to-alls stay on the
node's fast links (Lightning's `ModelParallelStrategy` numbers ranks node by node, as torchrun and
SLURM do).

- expert parallelism: `("dp_shard", "ep")` of shape `(W / ep, ep)`. Experts are split over "ep";
  FSDP2 shards each rank's experts further over "dp_shard" and everything else over all W ranks.
- sequence parallelism: `("dp", "sp")` of shape `(W / sp, sp)`. The ranks of one "sp" row train on
  the same clips, each holding a contiguous share of the joint sequence.
- routing statistics: the ranks whose tokens meet in one routing batch. Expert parallelism mixes
  the tokens of an "ep" row, sequence parallelism splits one batch over an "sp" row; the smallest
  block of consecutive ranks closed under both is `lcm(ep, sp)` ranks long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

if TYPE_CHECKING:
    from av_model.train.parallel import ParallelConfig

__all__ = ["ParallelMeshes", "apply_expert_and_sequence_parallel", "build_meshes", "check_divides"]


@dataclass
class ParallelMeshes:
    """Meshes of one job (None where that parallelism is off).

    Attributes:
        ep: ("dp_shard", "ep") mesh, when expert_parallel > 1.
        sp: ("dp", "sp") mesh, when sequence_parallel > 1.
        stats_group: process group of this rank's routing batch (the "ep" or "sp" group when only
            one is on, a group of lcm(ep, sp) consecutive ranks when both are).
    """

    ep: DeviceMesh | None
    sp: DeviceMesh | None
    stats_group: Any


def check_divides(name: str, size: int, world: int) -> None:
    """Refuse a parallel size that does not divide the number of ranks, saying which would."""
    if size < 1 or world % size:
        sizes = [d for d in range(1, world + 1) if world % d == 0]
        raise ValueError(f"parallel.{name}={size} must divide the {world} ranks of this job; use one of {sizes}.")


def _device_type() -> str:
    return "cuda" if dist.get_backend() == "nccl" and torch.cuda.is_available() else "cpu"


def build_meshes(expert_parallel: int, sequence_parallel: int, device_type: str | None = None) -> ParallelMeshes:
    """Meshes for the given sizes over every rank of the initialized default process group.

    Every rank must call this, with the same arguments, in the same order as its other collectives.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("expert and sequence parallelism need torch.distributed initialized "
                           "(launch with torchrun or SLURM under ModelParallelStrategy).")
    world = dist.get_world_size()
    check_divides("expert_parallel", expert_parallel, world)
    check_divides("sequence_parallel", sequence_parallel, world)
    device_type = device_type or _device_type()

    def mesh(size: int, names: tuple[str, str]) -> DeviceMesh:
        return init_device_mesh(device_type, (world // size, size), mesh_dim_names=names)

    ep = mesh(expert_parallel, ("dp_shard", "ep")) if expert_parallel > 1 else None
    sp = mesh(sequence_parallel, ("dp", "sp")) if sequence_parallel > 1 else None
    stats_group: Any = None
    if ep is not None and sp is not None:
        stats_group = mesh(math.lcm(expert_parallel, sequence_parallel), ("outer", "batch")).get_group("batch")
    elif ep is not None or sp is not None:
        stats_group = ep.get_group("ep") if ep is not None else sp.get_group("sp")  # type: ignore[union-attr]
    return ParallelMeshes(ep=ep, sp=sp, stats_group=stats_group)


def apply_expert_and_sequence_parallel(model: nn.Module, cfg: ParallelConfig, device_mesh: Any | None) -> DeviceMesh | None:
    """Sequence then expert parallelism as `cfg` says, on `model` in place (called by `apply_parallelism`
    before checkpointing, compilation and FSDP2).

    Returns:
        the ("dp_shard", "ep") mesh that FSDP2 must shard the experts over, or None.
    """
    if device_mesh is None:
        raise ValueError("parallel.expert_parallel and parallel.sequence_parallel need ModelParallelStrategy "
                         "(trainer.strategy: lightning.pytorch.strategies.ModelParallelStrategy).")
    from av_model.train.context_parallel import apply_sequence_parallel
    from av_model.train.expert_parallel import apply_expert_parallel

    dit_cfg = getattr(model, "cfg", None)
    if dit_cfg is not None:
        cfg.check_model(dit_cfg.num_experts, dit_cfg.num_heads, device_mesh.size())
    meshes = build_meshes(cfg.expert_parallel, cfg.sequence_parallel, device_mesh.device_type)
    if meshes.sp is not None:
        apply_sequence_parallel(model, meshes.sp, meshes.stats_group)
    if meshes.ep is not None:
        apply_expert_parallel(model, meshes.ep, meshes.stats_group)
    return meshes.ep
