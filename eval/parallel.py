"""The metrics' per-clip work spread over processes (`avgen eval --jobs N`).

Most of an evaluation of the synthetic benchmark is per-clip work on one core: decoding, audio
onsets, visual events, optical flow, the attribute recognisers' features. Each metric names the
per-clip results it is about to need (`Metric.clip_tasks`): the cache key it reads them under and
a module-level function with its arguments. With N > 1 the runner computes the missing ones in N
processes (joblib) before the metrics run, and the metrics find them in the cache, so the figures
are those of a one-process run. A task that fails is left out: the metric computes it again
itself, where a bad clip is skipped and reported as in a one-process run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from joblib import Parallel, delayed
from tqdm.auto import tqdm

__all__ = ["ClipTask", "run_clip_tasks"]


@dataclass(frozen=True)
class ClipTask:
    """One per-clip result a metric will read from the cache.

    Attributes:
        key: the cache key the metric reads it under.
        fn: a module-level function (it runs in another process) returning the result.
        args: its arguments (picklable).
        priority: of two tasks with one key, the higher runs (e.g. flow with warp errors over flow
            alone, which it includes).
    """

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    priority: int = 0


def _attempt(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except Exception:  # noqa: BLE001 - the metric recomputes it and reports the clip with its reason
        return False, None


def run_clip_tasks(tasks: Iterable[ClipTask], cache: dict[str, Any], jobs: int, progress: bool = True) -> int:
    """Compute the tasks whose key is not in `cache` in `jobs` processes, storing each result under
    its key; returns how many were computed. With `jobs` < 2 nothing runs (the metrics compute as
    they go)."""
    todo: dict[str, ClipTask] = {}
    for t in tasks:
        if t.key not in cache and (t.key not in todo or t.priority > todo[t.key].priority):
            todo[t.key] = t
    if jobs < 2 or len(todo) < 2:
        return 0
    results = Parallel(n_jobs=min(jobs, len(todo)), return_as="generator", batch_size=1)(
        delayed(_attempt)(t.fn, t.args) for t in todo.values())
    done = 0
    for t, (ok, value) in zip(todo.values(), tqdm(results, total=len(todo), desc=f"per-clip work ({jobs} processes)",
                                                  leave=False, disable=not progress)):
        if ok:
            cache[t.key] = value
            done += 1
    return done
