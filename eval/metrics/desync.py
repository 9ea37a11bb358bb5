"""DeSync: Synchformer's predicted audio-video offset, in seconds (MMAudio's av-benchmark).

Lower is better; 0 means Synchformer sees the sound where the picture puts it. The figure is the
mean over clips of each clip's mean |offset| over its first and last 4.8 s (`eval.features.desync`).
Synchformer predicts one of 21 offsets, -2 ... +2 s in 0.2 s steps, so a clip's DeSync is a
multiple of 0.1 s and a set's is coarse for small sets. Each result carries the same system's
mismatched-pair floor (clip i's video features with clip j's audio features): a system whose
sound ignores its picture scores near the floor, whatever the absolute number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eval.features.desync import ClipSyncFeatures, SynchformerExtractor
from eval.metrics.base import (
    Metric,
    MetricOptions,
    MetricResult,
    clip_embeddings,
    pair_floor_result,
    windowed_extractor,
)
from eval.metrics.floors import floor_partners
from eval.sets import ClipSet

__all__ = ["DeSync"]


class DeSync(Metric):
    """Mean |offset| (s) that Synchformer predicts between each clip's video and its audio."""

    name = "desync"
    title = "DeSync (Synchformer, s)"
    higher_is_better = False
    streams = frozenset({"video", "audio"})
    weight_key = "synchformer"

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        ext = windowed_extractor(SynchformerExtractor, "synchformer", opts, cache)
        feats: list[ClipSyncFeatures] = clip_embeddings(ext, system, cache, opts.desync_duration)
        n = len(feats)
        m = np.full((n, n), np.nan)
        signed: list[list[float]] = []
        for i, f in enumerate(feats):
            m[i, i], offs = ext.desync(f, f)
            signed.append(offs)
        for i, partners in enumerate(floor_partners(n, opts.floor_partners, opts.seed)):
            for j in partners:
                m[i, j] = ext.desync(feats[i], feats[j])[0]
        flat = np.asarray(signed).ravel()
        return pair_floor_result(self, system, m, opts, ext, {
            "offset_s_median": float(np.median(flat)), "share_in_sync": float(np.mean(np.abs(flat) < 1e-6)),
            "offset_convention": "Synchformer's class grid -2..+2 s"})
