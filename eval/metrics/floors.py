"""The mismatched-pair floor of a per-pair sync score, with paired bootstrap intervals.

A sync score computed on a clip's own video and audio is only worth something beside the same
score on mismatched pairs of the same system: clip i's video with clip j's audio (j != i). A
system whose sound ignores its picture scores the same on both. `pair_floor` takes the matrix of
scores `M[i, j]` (video of clip i, audio of clip j; NaN where a pair was not scored) and returns
the matched mean (the diagonal), the floor (the mean off the diagonal), their intervals and the
interval of their difference, all from the same bootstrap resamples of clips (a pair of resampled
copies of one clip is never counted as mismatched).

For large sets, scoring all N^2 pairs is too slow for network-based scores, so `floor_partners`
draws, for each clip, a fixed number of other clips (seeded); the unscored pairs stay NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PairFloor", "pair_floor", "floor_partners"]


@dataclass(frozen=True)
class PairFloor:
    """A matched score beside its mismatched-pair floor.

    Attributes:
        value, ci: mean over clips of the matched score, and its bootstrap interval.
        floor, floor_ci: mean over mismatched pairs, and its bootstrap interval.
        gap_ci: interval of value - floor over the same resamples.
        higher_is_better: direction of the score (decides what "cleared" means).
        n_pairs: mismatched pairs scored.
    """

    value: float
    ci: tuple[float, float]
    floor: float
    floor_ci: tuple[float, float]
    gap_ci: tuple[float, float]
    higher_is_better: bool
    n_pairs: int

    @property
    def cleared(self) -> bool:
        """Whether the matched interval lies wholly on the better side of the floor's interval."""
        if not all(math.isfinite(v) for v in (*self.ci, *self.floor_ci)):
            return False
        return bool(self.ci[0] > self.floor_ci[1]) if self.higher_is_better else bool(self.ci[1] < self.floor_ci[0])

    def extra(self) -> dict[str, Any]:
        """The fields every sync result carries in `MetricResult.extra` (and report.csv)."""
        return {"floor": self.floor, "floor_ci_low": self.floor_ci[0], "floor_ci_high": self.floor_ci[1],
                "gap_ci_low": self.gap_ci[0], "gap_ci_high": self.gap_ci[1], "floor_cleared": self.cleared,
                "floor_pairs": self.n_pairs,
                "floor_definition": "same system, clip i's video with clip j's audio (j != i)"}


def floor_partners(n: int, max_partners: int, seed: int) -> list[np.ndarray]:
    """For each of n clips, the other clips it is paired with: all of them, or `max_partners` drawn."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        others = np.delete(np.arange(n), i)
        out.append(others if len(others) <= max_partners else np.sort(rng.choice(others, max_partners, replace=False)))
    return out


def _figures(m: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
    diag = m[idx, idx]
    sub = m[np.ix_(idx, idx)]
    off = sub[(idx[:, None] != idx[None, :]) & np.isfinite(sub)]
    diag = diag[np.isfinite(diag)]
    return (float(diag.mean()) if diag.size else float("nan"), float(off.mean()) if off.size else float("nan"))


def pair_floor(m: np.ndarray, *, higher_is_better: bool, n_boot: int, ci_level: float, seed: int) -> PairFloor:
    """Matched mean, mismatched floor and their paired bootstrap intervals.

    Args:
        m: (N, N) scores, video of clip i with audio of clip j; NaN where not scored.
        higher_is_better: the score's direction.
        n_boot: bootstrap resamples of clips (0: no intervals).
        ci_level: interval level, e.g. 0.95.
        seed: random seed.
    """
    m = np.asarray(m, np.float64)
    n = m.shape[0]
    value, floor = _figures(m, np.arange(n))
    nan2 = (float("nan"), float("nan"))
    ci = floor_ci = gap_ci = nan2
    if n_boot and n > 1:
        rng = np.random.default_rng(seed)
        boots = np.array([_figures(m, np.asarray(rng.integers(0, n, size=n), dtype=np.int64)) for _ in range(n_boot)])  # (n_boot, 2)
        alpha = (1 - ci_level) / 2
        q = (alpha, 1 - alpha)

        def interval(v: np.ndarray) -> tuple[float, float]:
            v = v[np.isfinite(v)]
            return (float(np.quantile(v, q[0])), float(np.quantile(v, q[1]))) if v.size else nan2

        ci, floor_ci, gap_ci = interval(boots[:, 0]), interval(boots[:, 1]), interval(boots[:, 0] - boots[:, 1])
    off = ~np.eye(n, dtype=bool) & np.isfinite(m)
    return PairFloor(value=value, ci=ci, floor=floor, floor_ci=floor_ci, gap_ci=gap_ci,
                     higher_is_better=higher_is_better, n_pairs=int(off.sum()))
