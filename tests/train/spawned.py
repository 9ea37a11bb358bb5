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

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run_spawned(fn: Callable[..., None], world: int, folder: Path, *args: Any, timeout_s: float = 60.0) -> None:
    """Call `fn(rank, world, folder, *args)` on `world` processes; re-raises a worker's error."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rendezvous").unlink(missing_ok=True)  # a file store left by an earlier spawn would be reused
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


def _expert_and_sequence_cases(rank: int, world: int, folder: Path) -> None:
    # Imported here: the test modules import this one.
    from . import test_expert_parallel, test_sequence_parallel

    test_expert_parallel.worker(rank, world, folder)
    test_sequence_parallel.worker(rank, world, folder)


_SHARED: dict[str, Path] = {}


def expert_and_sequence_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of every 2-process case of test_expert_parallel.py and test_sequence_parallel.py,
    all run by one spawn per session (starting two processes costs more than all the cases)."""
    if "runs" not in _SHARED:
        folder = tmp_path_factory.mktemp("parallel_runs")
        run_spawned(_expert_and_sequence_cases, 2, folder)
        _SHARED["runs"] = folder
    return _SHARED["runs"]
