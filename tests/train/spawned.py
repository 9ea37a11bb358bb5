"""Run a function in N CPU processes joined by a gloo process group (torch.multiprocessing.spawn).

Workers write their results with `torch.save` into the shared folder; the test, in the parent
process, computes the single-process reference and compares. A collective that waits for a peer
which never comes fails after `timeout_s` instead of hanging the test run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run_spawned(fn: Callable[..., None], world: int, folder: Path, *args: Any, timeout_s: float = 60.0) -> None:
    """Call `fn(rank, world, folder, *args)` on `world` processes; re-raises a worker's error."""
    folder.mkdir(parents=True, exist_ok=True)
    mp.spawn(_entry, args=(world, str(folder), timeout_s, fn, args), nprocs=world, join=True)


def _entry(rank: int, world: int, folder: str, timeout_s: float, fn: Callable[..., None], args: tuple) -> None:
    torch.set_num_threads(1)  # two processes on a shared two-core machine
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))
    try:
        fn(rank, world, Path(folder), *args)
    finally:
        dist.destroy_process_group()
    # Done and saved: skip the interpreter's teardown of torch (seconds on a loaded machine). An
    # error above never gets here, so spawn still reports it with its traceback.
    os._exit(0)


def load_ranks(folder: Path, name: str, world: int) -> list[dict[str, Any]]:
    """What each rank saved under `name` (`torch.save(obj, folder / f"{name}_rank{rank}.pt")`)."""
    return [torch.load(folder / f"{name}_rank{r}.pt") for r in range(world)]
