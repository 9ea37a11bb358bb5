"""The one place where parallelism is applied to the diffusion transformer.

Called from `AVDiffusion.configure_model` under Lightning's `ModelParallelStrategy` (and, for
activation checkpointing and compilation alone, under any strategy). The model stays a
single-device `nn.Module`; this module wraps it from outside, in torchtitan's order:

1. activation checkpointing of each block (`checkpoint_wrapper`; "full" or every n-th block),
2. `torch.compile` of each block (`nn.Module.compile`, so names and state dicts stay the same),
3. FSDP2 `fully_shard` of each block, then of the root, with a bf16/fp32 mixed-precision policy.

Expert weights `(E, D, F)` are sharded along the expert axis: FSDP2 shards every parameter along
dim 0, which for the experts is E, over the mesh given by `shard_experts_over`. "data_parallel"
spreads them over the data-parallel ranks like every other weight; "all" flattens the whole
`(data_parallel, tensor_parallel)` mesh of `ModelParallelStrategy` and uses its second axis as the
expert-parallel dimension, so `E` must divide by that size (checked). Each rank then stores
`E / ranks` experts and gathers the others for the forward pass (FSDP's communication, no token
all-to-all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["ParallelConfig", "apply_parallelism", "expert_parameters"]

ACMode = Literal["none", "full", "selective"]


@dataclass
class ParallelConfig:
    """How the generator is parallelized (the `model.parallel` section of a config).

    Attributes:
        fsdp: shard parameters, gradients and optimizer state with FSDP2 (only under
            `ModelParallelStrategy`; other strategies ignore it).
        reshard_after_forward: free gathered weights after each block's forward (saves memory,
            costs one more all-gather in backward). The root module never reshards.
        param_dtype: dtype of gathered weights for compute ("bfloat16", "float32"); FSDP2's mixed
            precision replaces Lightning's autocast for sharded runs.
        reduce_dtype: dtype of gradient reduction ("float32" keeps sums exact).
        activation_checkpointing: "none", "full" (every block) or "selective" (every `ac_every`-th).
        ac_every: with "selective", checkpoint blocks 0, n, 2n, ...
        compile: `torch.compile` each block (one graph per block type keeps compile time flat in depth).
        shard_experts_over: "data_parallel" (like every weight) or "all" (data x tensor-parallel
            axes: the second axis acts as the expert-parallel dimension).
    """

    fsdp: bool = True
    reshard_after_forward: bool = True
    param_dtype: str = "bfloat16"
    reduce_dtype: str = "float32"
    activation_checkpointing: ACMode = "none"
    ac_every: int = 2
    compile: bool = False
    shard_experts_over: Literal["data_parallel", "all"] = "data_parallel"

    def __post_init__(self) -> None:
        for name in ("param_dtype", "reduce_dtype"):
            if getattr(self, name) not in ("bfloat16", "float16", "float32"):
                raise ValueError(f"parallel.{name} must be bfloat16, float16 or float32; got {getattr(self, name)!r}.")
        if self.activation_checkpointing not in ("none", "full", "selective"):
            raise ValueError(
                f"parallel.activation_checkpointing must be none, full or selective; got {self.activation_checkpointing!r}."
            )
        if self.ac_every < 1:
            raise ValueError(f"parallel.ac_every must be >= 1; got {self.ac_every}.")
        if self.shard_experts_over not in ("data_parallel", "all"):
            raise ValueError(f"parallel.shard_experts_over must be data_parallel or all; got {self.shard_experts_over!r}.")


def expert_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The routed experts' stacked weights `(E, ., .)` of every MoE layer (none for a dense model)."""
    params = []
    for m in module.modules():
        if getattr(m, "num_experts", 1) > 1:
            params += [p for name, p in m.named_parameters(recurse=False) if name.endswith(("_EDF", "_EFD"))]
    return params


def _blocks(model: nn.Module) -> nn.ModuleList:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} has no `blocks` ModuleList; parallelism is applied per block.")
    return blocks


def _checkpoint(model: nn.Module, cfg: ParallelConfig) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    blocks = _blocks(model)
    for i, block in enumerate(blocks):
        if cfg.activation_checkpointing == "full" or i % cfg.ac_every == 0:
            # The wrapper's state-dict hooks strip its prefix, so checkpoints stay interchangeable
            # with unwrapped models. preserve_rng_state: the block's dropout (if any) must replay.
            blocks[i] = checkpoint_wrapper(block, preserve_rng_state=True)


def _compile(model: nn.Module) -> None:
    for block in _blocks(model):
        block.compile()  # in place: module names (and checkpoint keys) do not change


def _fully_shard(model: nn.Module, mesh: Any, cfg: ParallelConfig) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=getattr(torch, cfg.param_dtype), reduce_dtype=getattr(torch, cfg.reduce_dtype))
    dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
    if cfg.shard_experts_over == "all" and mesh.ndim > 1:
        ep = mesh.size(1)
        experts = expert_parameters(model)
        if experts and experts[0].shape[0] % ep:
            raise ValueError(
                f"shard_experts_over='all' needs the {experts[0].shape[0]} experts to divide by the second mesh axis "
                f"(tensor_parallel_size={ep}); pick a tensor_parallel_size that divides the expert count."
            )
        dp_mesh = mesh._flatten("data_expert_parallel")
    for block in _blocks(model):
        fully_shard(block, mesh=dp_mesh, mp_policy=mp, reshard_after_forward=cfg.reshard_after_forward)
    # The root holds the embeddings and the final layer; they run last in forward and first in
    # backward, so resharding them would only add an all-gather.
    fully_shard(model, mesh=dp_mesh, mp_policy=mp, reshard_after_forward=False)


def apply_parallelism(model: nn.Module, cfg: ParallelConfig, device_mesh: Any | None = None) -> nn.Module:
    """Apply checkpointing, compilation and (with a mesh) FSDP2 to `model` in place; returns it.

    Args:
        model: the generator (`AVDiT`), with its blocks in `model.blocks`.
        cfg: what to apply.
        device_mesh: `ModelParallelStrategy`'s mesh with dims ("data_parallel", "tensor_parallel");
            None (any other strategy) skips FSDP.
    """
    if getattr(model, "_avgen_parallelized", False):
        return model  # configure_model may run more than once (fit, then validate)
    if cfg.activation_checkpointing != "none":
        _checkpoint(model, cfg)
    if cfg.compile:
        _compile(model)
    if cfg.fsdp and device_mesh is not None:
        _fully_shard(model, device_mesh, cfg)
    model._avgen_parallelized = True  # type: ignore[attr-defined]
    return model
