"""The ImageBind audio-video score (IB-score of MMAudio's av-benchmark, AV-IB of JavisBench).

100 x the cosine between ImageBind's embedding of a clip's frames and of its sound
(`eval.features.imagebind`), averaged over clips; higher is better. It measures whether picture
and sound show the same kind of thing, not their timing: a sound shifted by a second keeps nearly
the same score. Each result carries the same system's mismatched-pair floor (clip i's frames with
clip j's sound, over all pairs): a score near the floor means the sound is generic for the set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eval.features.imagebind import ImageBindExtractor
from eval.metrics.base import (
    Metric,
    MetricOptions,
    MetricResult,
    clip_embeddings,
    pair_floor_result,
    windowed_extractor,
)
from eval.sets import ClipSet

__all__ = ["ImageBindScore"]


class ImageBindScore(Metric):
    """100 x cosine of ImageBind's vision and audio embeddings of each clip."""

    name = "imagebind_score"
    title = "ImageBind AV score (100 x cos)"
    higher_is_better = True
    streams = frozenset({"video", "audio"})
    weight_key = "imagebind"

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        ext = windowed_extractor(ImageBindExtractor, "imagebind", opts, cache)
        embs = clip_embeddings(ext, system, cache, opts.desync_duration)  # (vision, audio) per clip
        v, a = np.stack([e[0] for e in embs]), np.stack([e[1] for e in embs])  # (N, D) each
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        m = 100.0 * v @ a.T  # (N, N): clip i's frames with clip j's sound
        return pair_floor_result(self, system, m, opts, ext, {"ignored_modalities": ",".join(ext.ignored_modalities)})
