"""Weights-free temporal measures of the video: flicker and motion amount.

- **flicker**: the change between consecutive frames that motion does not explain: frame t is
  warped onto frame t+1 with Farneback optical flow and the mean absolute luma difference is
  taken, in percent of full scale (0-100, lower is steadier). Plain frame differences (as VBench's
  temporal flickering) would punish motion as much as flicker; warping first separates them.
- **motion**: the mean optical-flow magnitude, in frame widths per second, so clips of different
  sizes and frame rates compare. There is no better direction: a still video scores 0 and
  should be compared with the reference row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval.metrics.base import Metric, MetricOptions, MetricResult, NotApplicable, mean_with_ci
from eval.metrics.flow import clip_flow_stats, flow_task
from eval.parallel import ClipTask
from eval.sets import ClipSet

__all__ = ["Flicker", "Motion"]


class _FlowMetric(Metric):
    warp = False

    def per_clip(self, stats: Any) -> float:
        raise NotImplementedError

    def clip_tasks(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                   cache: dict[str, Any]) -> list[ClipTask]:
        return [flow_task(rec, warp=self.warp) for rec in system.records]

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        values: dict[str, float] = {}
        for rec in tqdm(system.records, desc=f"{system.name}: {self.name}", leave=False,
                        disable=not cache.get("progress", True)):
            stats = clip_flow_stats(rec, cache, warp=self.warp)
            if stats.magnitude.size == 0:
                continue  # a single frame has no temporal change
            values[rec.id] = self.per_clip(stats)
        if not values:
            raise NotApplicable("every clip has a single frame")
        value, lo, hi = mean_with_ci(np.array(list(values.values())), opts)
        return MetricResult(
            metric=self.name, system=system.name, value=value, ci_low=lo, ci_high=hi,
            higher_is_better=self.higher_is_better, n_generated=len(values),
            preprocessing={"video": "native fps and size, luma", "flow": "Farneback (0.5, 3, 15, 3, 5, 1.2, 0)"},
            per_clip=values,
        )


class Flicker(_FlowMetric):
    """Mean motion-compensated frame change, % of full scale (lower is better)."""

    name = "flicker"
    title = "Flicker (% luma, warped)"
    higher_is_better = False
    warp = True

    def per_clip(self, stats: Any) -> float:
        return float(stats.warp_error.mean() / 255.0 * 100.0)


class Motion(_FlowMetric):
    """Mean optical-flow magnitude in frame widths per second (compare with the reference)."""

    name = "motion"
    title = "Motion (widths/s)"
    higher_is_better = None  # no better direction

    def per_clip(self, stats: Any) -> float:
        return float(stats.magnitude.mean() * stats.fps / stats.width)
