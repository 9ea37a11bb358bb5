"""Meta-device initialization: build the generator without memory, shard it, then fill each shard
with exactly the weights the ordinary CPU build would have given it for the same seed.

Why by hand: PyTorch's recipe (torchtitan, Lightning's `_materialize_distributed_module`) is
`to_empty` then `reset_parameters()` per module, which draws new random numbers in another order
than the CPU build, so a run's initial weights would depend on whether it was built on `meta`.
Instead, `build_on_meta` records every initialization write to a parameter while the model is
built (constructors' `reset_parameters` and `AVDiT.initialize_weights` alike), and
`materialize_and_initialize` replays that record on a CPU generator started from the same state:

- every random draw is made again, in the same order and of the same size, so the generator
  passes through the same states as in the ordinary build (the CPU generator cannot skip ahead,
  so the cost is the ordinary build's arithmetic, once per rank);
- only a parameter's last write counts (every recorded write replaces the whole tensor); its full
  tensor is made on the CPU, this rank's slice is copied into its shard (every rank slices its
  own: no communication) and the full tensor is freed. Earlier draws fill a scratch tensor that
  is freed at once.

Peak host memory per rank is therefore this rank's shards plus the largest single tensor, not the
model. Buffers are built for real on the CPU (they are small and some are computed, such as the
rotary frequencies), and a parameter created by a constant factory (`torch.zeros(...)`) and never
written again keeps that constant.

Exactness: the replay reproduces the ordinary build bit for bit on CPU (tested against it);
what it does not reproduce is the global RNG's state after the build (the ordinary build advances
it, the meta build leaves it where it was), which nothing in training reads: the flow noise has
its own seeded generators.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["InitPlan", "build_on_meta", "copy_full_into", "has_meta_parameters", "materialize_and_initialize"]

M = TypeVar("M", bound=nn.Module)

# Writes a replay can make again: each replaces the whole tensor without reading it. Tensor methods
# by name; every `torch.nn.init` function qualifies (they all overwrite). Some of these reach the
# recorder as the `nn.init` function itself (those that dispatch `__torch_function__`), others as the
# tensor method it calls; either is replayed as it was called.
_TENSOR_WRITES = ("uniform_", "normal_", "zero_", "fill_")
_CONSTANT = frozenset({"zero_", "fill_", "zeros_", "ones_", "constant_"})


def _replayable(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    if getattr(func, "__module__", None) == "torch.nn.init":
        return name.endswith("_")
    return name in _TENSOR_WRITES


def _takes_generator(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    if name in ("uniform_", "normal_") and getattr(func, "__module__", None) != "torch.nn.init":
        return True  # the tensor methods
    try:
        return "generator" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class _Write:
    name: str  # the parameter's name in the model
    func: Any  # the tensor method or `nn.init` function, called as func(tensor, *args, **kwargs)
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def constant(self) -> bool:
        return getattr(self.func, "__name__", "") in _CONSTANT


@dataclass
class InitPlan:
    """What the ordinary build of a model would have written into each parameter.

    Attributes:
        rng_state: the CPU generator's state when the build started.
        writes: the recorded writes, in order.
        constants: parameters whose creating factory gave a constant (`torch.zeros`): name -> value.
        shapes: every parameter's full shape and dtype.
    """

    rng_state: torch.Tensor
    writes: list[_Write] = field(default_factory=list)
    constants: dict[str, float] = field(default_factory=dict)
    shapes: dict[str, tuple[torch.Size, torch.dtype]] = field(default_factory=dict)


class _RecordWrites(TorchFunctionMode):
    """Records in-place calls on meta parameters (by object, named later); refuses what it cannot replay."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[nn.Parameter, Any, tuple[Any, ...], dict[str, Any]]] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")
        if isinstance(target, nn.Parameter) and target.is_meta and name.endswith("_") and not name.startswith("__"):
            if not _replayable(func):
                raise NotImplementedError(
                    f"meta-device initialization cannot replay `{name}` on a parameter (it replays the tensor methods "
                    f"{', '.join(_TENSOR_WRITES)} and the torch.nn.init functions); set model.parallel.meta_init: "
                    "false, or initialize that parameter with one of those."
                )
            if kwargs.get("generator") is not None:
                raise NotImplementedError("meta-device initialization replays draws from the default generator only; "
                                          "an init with its own generator cannot be replayed (meta_init: false).")
            rest = {k: v for k, v in kwargs.items() if k != "tensor"}
            self.calls.append((target, func, tuple(args[1:]), rest))
        return func(*args, **kwargs)


@contextmanager
def _parameters_on_meta(constants: dict[int, float]) -> Iterator[None]:
    """Parameters go to the meta device as they are registered; buffers stay on the CPU.

    Registration sees the tensor the constructor made (`torch.empty` or a factory like
    `torch.zeros`, allocated but for `empty` never touched, one at a time); a constant one is noted
    before it is dropped, since it is the parameter's value if nothing writes it later.
    """
    original = nn.Module.register_parameter

    @functools.wraps(original)
    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            flat = param.detach().reshape(-1)
            if flat.numel() and bool((flat == flat[0]).all()):
                constants[id(param)] = float(flat[0])
            meta = nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=param.requires_grad)
            if id(param) in constants:
                constants[id(meta)] = constants.pop(id(param))
            param = meta
        original(module, name, param)

    nn.Module.register_parameter = register  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def build_on_meta(factory: Callable[[], M]) -> tuple[M, InitPlan]:
    """Build `factory()` with its parameters on the meta device, recording how to initialize them.

    Args:
        factory: builds the model as the ordinary path does (e.g. `lambda: AVDiT(cfg)`).

    Returns:
        The model (parameters on `meta`, buffers on the CPU) and its `InitPlan`.
    """
    plan = InitPlan(rng_state=torch.get_rng_state())
    constants: dict[int, float] = {}
    recorder = _RecordWrites()
    with _parameters_on_meta(constants), recorder:
        model = factory()
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    for param, func, args, kwargs in recorder.calls:
        if id(param) in names:  # writes to parameters that did not stay in the model are irrelevant
            plan.writes.append(_Write(names[id(param)], func, args, kwargs))
    written = {w.name for w in plan.writes}
    for n, p in model.named_parameters():
        plan.shapes[n] = (p.shape, p.dtype)
        if id(p) in constants:
            plan.constants[n] = constants[id(p)]
        elif n not in written:
            raise NotImplementedError(f"parameter {n} is neither initialized by a recorded write nor created constant; "
                                      "meta-device initialization cannot reproduce it (meta_init: false).")
    return model, plan


# Name parts that wrappers applied after the build insert (activation checkpointing, compile);
# FSDP2 keeps names.
_WRAPPER_PARTS = ("_checkpoint_wrapped_module.", "_orig_mod.")


def _unwrapped(name: str) -> str:
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    return name


def has_meta_parameters(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())


def _local(param: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return param.to_local() if isinstance(param, DTensor) else param


def copy_full_into(param: torch.Tensor, full: torch.Tensor) -> None:
    """Copy this rank's part of the full tensor `full` into `param` (a DTensor shard or a plain tensor).

    Only the shard's part of `full` is read, so a memory-mapped `full` (`torch.load(..., mmap=True)`)
    brings just that part into memory.
    """
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    with torch.no_grad():
        if isinstance(param, DTensor):
            # The slice this rank holds, cut on the host and only then moved to the shard's device
            # (`distribute_tensor` would first move the whole tensor there). The helper is DTensor's
            # own rule for where a rank's shard lies (torch.distributed.checkpoint uses it too).
            shape, offset = compute_local_shape_and_global_offset(full.shape, param.device_mesh, param.placements)
            part = full[tuple(slice(o, o + n) for o, n in zip(offset, shape))]
            param.to_local().copy_(part)
        else:
            param.copy_(full)


def materialize_and_initialize(model: nn.Module, plan: InitPlan, device: torch.device | str = "cpu") -> None:
    """Allocate `model`'s (possibly FSDP2-sharded) meta parameters on `device` and fill them as the
    ordinary build would have; buffers keep their values.

    Args:
        model: built by `build_on_meta`, then optionally sharded (`fully_shard`).
        plan: the `InitPlan` that `build_on_meta` returned with it.
        device: where the parameters live (the FSDP2 mesh's device: `cuda:LOCAL_RANK` on GPUs).
    """
    device = torch.device(device)
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    model.to_empty(device=device)  # parameters and buffers: shards only, uninitialized
    with torch.no_grad():
        for n, b in model.named_buffers():
            if n in buffers:
                b.copy_(buffers[n])
    params = {_unwrapped(n): p for n, p in model.named_parameters()}
    missing = set(plan.shapes) - set(params)
    if missing:
        raise ValueError(f"the model has lost parameters since it was built on meta: {sorted(missing)[:5]}")
    last = {w.name: i for i, w in enumerate(plan.writes)}
    gen = torch.Generator().set_state(plan.rng_state)
    for i, w in enumerate(plan.writes):
        final = last[w.name] == i
        if w.constant:  # no draw: only the last one matters, made on the shard itself
            if final:
                with torch.no_grad():
                    w.func(_local(params[w.name]), *w.args, **w.kwargs)
            continue
        shape, dtype = plan.shapes[w.name]
        full = torch.empty(shape, dtype=dtype, device="cpu")  # the CPU generator's stream, whatever the context
        kwargs = {**w.kwargs, "generator": gen} if _takes_generator(w.func) else w.kwargs
        with torch.no_grad():
            w.func(full, *w.args, **kwargs)  # the same draw from the same generator state
        if final:
            copy_full_into(params[w.name], full)
        del full
    with torch.no_grad():
        for n, value in plan.constants.items():
            if n not in last:
                _local(params[n]).fill_(value)
