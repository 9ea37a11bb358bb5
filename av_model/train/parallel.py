"""The one place where parallelism is applied to the diffusion transformer.

Called from `AVDiffusion.configure_model` under Lightning's `ModelParallelStrategy` (and, for
activation checkpointing and compilation alone, under any strategy). The model stays a
single-device `nn.Module`; this module wraps it from outside, in torchtitan's order:

1. activation checkpointing of each block (`checkpoint_wrapper`; "full" or every n-th block),
2. `torch.compile` of each block (`nn.Module.compile`, so names and state dicts stay the same),
3. FSDP2 `fully_shard` of each block, then of the root, with a bf16/fp32 mixed-precision policy.

Meshes: Lightning's `ModelParallelStrategy` builds a 2D mesh `(data_parallel, tensor_parallel)`,
by default (nodes, GPUs per node). The generator uses no tensor parallelism, so every rank trains
on its own data and FSDP must reduce gradients over all ranks: `sharding="full"` shards over the
flattened mesh, `sharding="hybrid"` (HSDP) shards within the second axis and replicates along the
first, so all-gathers stay on a node's fast links.

With `meta_init`, the model reaches `apply_parallelism` on the meta device and is allocated and
initialized shard by shard afterwards (`av_model.train.meta_init`, from `AVDiffusion.configure_model`).
`rank_memory` computes what each rank holds under each layout (docs/training.md, "Memory per rank").

Expert weights `(E, D, F)`: FSDP2 shards every parameter along dim 0, which for the stacked expert
weights is the expert axis. The shard axis therefore is the expert-parallel dimension for storage:
with E divisible by its size n, each rank keeps E / n whole experts (and their optimizer state),
gathered for the forward pass by FSDP's all-gather. With `expert_parallel: N` the experts are
instead split over N ranks that exchange tokens by all-to-all (`expert_parallel.py`), and FSDP2
shards what each rank holds over the remaining ranks; `sequence_parallel: N` splits the joint
sequence over N ranks (`context_parallel.py`). Both are applied first, before checkpointing.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn

__all__ = ["LAYOUTS", "ParallelConfig", "RankMemory", "apply_parallelism", "expert_parameters", "rank_memory",
           "shard_mesh"]

ACMode = Literal["none", "full", "selective"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
# Models already wrapped: wrapping twice would nest checkpoint wrappers and shard twice.
_PARALLELIZED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


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
        compile_mode: `torch.compile`'s mode for the blocks: "default", or "reduce-overhead" to replay
            each block's kernels as a CUDA graph (fewer launches when the host is the limit).
        sharding: "full" (FSDP over all ranks) or "hybrid" (HSDP: shard within the mesh's second
            axis, replicate along the first).
        expert_parallel: N ranks share the experts of each MoE layer (each holds E / N) and exchange
            tokens by all-to-all; 1 is off. N must divide the number of ranks and of experts, and
            needs `fsdp` under `ModelParallelStrategy`.
        sequence_parallel: N ranks share each clip's joint audio-video sequence (Ulysses: all-to-all
            from sequence shards to head shards around attention); 1 is off. N must divide the number
            of ranks and of attention heads; the N ranks of a group read the same batches.
        meta_init: build the generator on the meta device and allocate and initialize only this
            rank's shards once it is sharded (`av_model.train.meta_init`): host memory per rank at
            start-up is about its shard instead of the whole model; the weights are the ones the
            ordinary build gives for the same seed. `init_from` then streams the file into the shards.
    """

    fsdp: bool = True
    reshard_after_forward: bool = True
    param_dtype: str = "bfloat16"
    reduce_dtype: str = "float32"
    activation_checkpointing: ACMode = "none"
    ac_every: int = 2
    compile: bool = False
    compile_mode: CompileMode = "default"
    sharding: Literal["full", "hybrid"] = "full"
    expert_parallel: int = 1
    sequence_parallel: int = 1
    meta_init: bool = False

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
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"parallel.compile_mode must be one of {', '.join(COMPILE_MODES)}; got {self.compile_mode!r}.")
        if self.sharding not in ("full", "hybrid"):
            raise ValueError(f"parallel.sharding must be full or hybrid; got {self.sharding!r}.")
        for name in ("expert_parallel", "sequence_parallel"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"parallel.{name} must be >= 1 (1 is off); got {getattr(self, name)}.")
        if self.expert_parallel > 1 and not self.fsdp:
            raise ValueError("parallel.expert_parallel > 1 needs fsdp: true under ModelParallelStrategy (each rank "
                             "holds different experts, which DDP's replicated weights cannot express).")

    def check_model(self, num_experts: int, num_heads: int, world_size: int | None = None) -> None:
        """Refuse sizes that do not divide the model's experts or heads, or the number of ranks."""
        for name, size, total, what in (("expert_parallel", self.expert_parallel, num_experts, "experts"),
                                        ("sequence_parallel", self.sequence_parallel, num_heads, "attention heads"),
                                        ("expert_parallel", self.expert_parallel, world_size, "ranks"),
                                        ("sequence_parallel", self.sequence_parallel, world_size, "ranks")):
            if size > 1 and total is not None and total % size:
                good = [d for d in range(1, total + 1) if total % d == 0]
                raise ValueError(f"parallel.{name}={size} must divide the {total} {what}; use one of {good}.")


def expert_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The routed experts' stacked weights `(E, ., .)` of every MoE layer (none for a dense model)."""
    params = []
    for m in module.modules():
        if getattr(m, "num_experts", 1) > 1:
            params += [p for name, p in m.named_parameters(recurse=False) if name.endswith(("_ED2F", "_EFD"))]
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


def _compile(model: nn.Module, mode: str) -> None:
    for block in _blocks(model):
        block.compile(mode=mode)  # in place: module names (and checkpoint keys) do not change


def shard_mesh(mesh: Any, sharding: str) -> Any:
    """The mesh FSDP2 shards over: all ranks ("full") or (replicate, shard) axes ("hybrid")."""
    if mesh.ndim == 1:
        return mesh
    if sharding == "hybrid":
        return mesh  # fully_shard on a 2D mesh is HSDP: replicate on dim 0, shard on dim 1
    return mesh._flatten("data_shard")


def _fully_shard(model: nn.Module, mesh: Any, cfg: ParallelConfig, ep_mesh: Any | None = None) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=getattr(torch, cfg.param_dtype), reduce_dtype=getattr(torch, cfg.reduce_dtype))
    fsdp_mesh = shard_mesh(mesh, cfg.sharding)
    if ep_mesh is not None:
        from av_model.train.expert_parallel import fully_shard_with_experts

        fully_shard_with_experts(model, _blocks(model), ep_mesh, fsdp_mesh, mp, cfg.reshard_after_forward)
        return
    shards = fsdp_mesh.size(fsdp_mesh.ndim - 1)
    experts = expert_parameters(model)
    if experts and experts[0].shape[0] % shards:
        warnings.warn(
            f"{experts[0].shape[0]} experts do not divide over {shards} shards, so experts are split across ranks; "
            "pick a shard count that divides the expert count to keep whole experts per rank.", stacklevel=2,
        )
    for block in _blocks(model):
        fully_shard(block, mesh=fsdp_mesh, mp_policy=mp, reshard_after_forward=cfg.reshard_after_forward)
    # The root holds the embeddings and the final layer; they run last in forward and first in
    # backward, so resharding them would only add an all-gather.
    fully_shard(model, mesh=fsdp_mesh, mp_policy=mp, reshard_after_forward=False)


def apply_parallelism(model: nn.Module, cfg: ParallelConfig, device_mesh: Any | None = None) -> nn.Module:
    """Apply checkpointing, compilation and (with a mesh) FSDP2 to `model` in place; returns it.

    Args:
        model: the generator (`AVDiT`), with its blocks in `model.blocks`.
        cfg: what to apply.
        device_mesh: `ModelParallelStrategy`'s mesh with dims ("data_parallel", "tensor_parallel");
            None (any other strategy) skips FSDP.
    """
    if model in _PARALLELIZED:
        return model  # configure_model may run more than once (fit, then validate)
    ep_mesh = None
    if cfg.expert_parallel > 1 or cfg.sequence_parallel > 1:  # first: they replace weights and add hooks
        from av_model.train.meshes import apply_expert_and_sequence_parallel

        ep_mesh = apply_expert_and_sequence_parallel(model, cfg, device_mesh)
    if cfg.activation_checkpointing != "none":
        _checkpoint(model, cfg)
    if cfg.compile:
        _compile(model, cfg.compile_mode)
    if cfg.fsdp and device_mesh is not None:
        _fully_shard(model, device_mesh, cfg, ep_mesh)
    _PARALLELIZED.add(model)
    return model


# ----------------------------------------------------------------------------- memory per rank
LAYOUTS = ("single", "ddp", "fsdp", "hsdp")
# Bytes per parameter kept between steps: (weights, gradients, AdamW's two moments).
_STATE_BYTES = {"bf16-mixed": (4, 4, 8), "32-true": (4, 4, 8), "bf16-true": (2, 2, 4)}


@dataclass(frozen=True)
class RankMemory:
    """Bytes one rank holds for the model's training state (activations not included: they depend
    on batch, sequence length and activation checkpointing).

    Attributes:
        weights, grads, optimizer: this rank's part of the weights, gradients and AdamW moments.
        buffers: DDP's gradient buckets (a second copy of the gradients; 0 for other layouts).
        gathered: the most unsharded compute weights FSDP2 holds at once: the root module (never
            resharded) and two blocks (the running one and the prefetched next), in `param_dtype`.
        ema: a full fp32 copy of the weights for the EMA (single and DDP runs with `ema.enabled`).
    """

    layout: str
    world_size: int
    shards: int
    precision: str
    weights: float
    grads: float
    optimizer: float
    buffers: float
    gathered: float
    ema: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.buffers + self.gathered + self.ema


def rank_memory(cfg: Any, layout: str, world_size: int = 1, shard_size: int | None = None,
                precision: str = "bf16-mixed", ema: bool = False) -> RankMemory:
    """Training-state memory per rank of the generator `cfg` (a `DiTConfig`) under a layout, from
    its parameter counts (the model is built on the meta device, so any size is counted at once).

    Args:
        cfg: the model's `DiTConfig`.
        layout: "single" (one device), "ddp" (replicated), "fsdp" (sharded over all `world_size`
            ranks) or "hsdp" (sharded over `shard_size` ranks, replicated across the groups).
        world_size: ranks in all.
        shard_size: ranks one copy is sharded over, with "hsdp" (e.g. the GPUs of a node).
        precision: Lightning's: "bf16-mixed" and "32-true" keep fp32 weights, gradients and moments
            (bf16 compute copies under FSDP2's mixed precision); "bf16-true" keeps them in bf16.
        ema: an fp32 EMA copy on every rank (single and DDP only: it is refused under sharding).

    Raises:
        ValueError: an unknown layout or precision, or a shard size that does not divide the world.
    """
    from av_model.dit.model import AVDiT

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}.")
    if precision not in _STATE_BYTES:
        raise ValueError(f"precision must be one of {', '.join(_STATE_BYTES)}; got {precision!r}.")
    if world_size < 1 or (layout == "single" and world_size != 1):
        raise ValueError(f"world_size must be >= 1 (1 for layout single); got {world_size}.")
    shards = {"single": 1, "ddp": 1, "fsdp": world_size}.get(layout, shard_size or 0)
    if layout == "hsdp" and (shards < 1 or world_size % shards):
        raise ValueError(f"hsdp needs a shard_size that divides world_size {world_size} (the GPUs of a node, "
                         f"e.g. 8); got {shard_size}.")
    if ema and layout in ("fsdp", "hsdp"):
        raise ValueError("the EMA keeps a full copy and is refused under sharding; pass ema=False for fsdp/hsdp.")
    with torch.device("meta"):
        model = AVDiT(cfg)
    total = sum(p.numel() for p in model.parameters())
    block = max(sum(p.numel() for p in b.parameters()) for b in _blocks(model))
    root = total - sum(sum(p.numel() for p in b.parameters()) for b in _blocks(model))
    w, g, o = _STATE_BYTES[precision]
    compute = 2 if precision != "32-true" else 4
    sharded = layout in ("fsdp", "hsdp")
    return RankMemory(
        layout=layout, world_size=world_size, shards=shards, precision=precision,
        weights=w * total / shards, grads=g * total / shards, optimizer=o * total / shards,
        buffers=g * total if layout == "ddp" else 0.0,
        gathered=compute * (root + 2 * block) if sharded and shards > 1 else 0.0,
        ema=4.0 * total if ema else 0.0,
    )
