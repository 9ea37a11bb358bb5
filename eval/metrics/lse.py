"""LSE-C and LSE-D: lip-sync error from SyncNet embeddings (Prajwal et al., Wav2Lip, 2020).

For one clip, SyncNet embeds every 0.2 s window of video and of audio (`eval.features.syncnet`).
As syncnet_python's `calc_pdist` does, video window i is compared with audio windows i - 15 ...
i + 15 (zero vectors past either end), by Euclidean distance (`pairwise_distance`, eps 1e-6); the
distances are averaged over i for each of the 31 offsets:

- **LSE-D** = the smallest mean distance (lower is better);
- **LSE-C** = median over offsets minus that smallest mean distance (higher is better);
- the offset (frames) is 15 - argmin: negative when the sound comes late.

A set's figure is the mean over clips, as Wav2Lip's evaluation averages the per-video numbers.
Each result also carries the same system's mismatched-pair floor (clip i's frames with clip j's
sound, truncated to the shorter one): LSE-C near the floor means the sound does not follow the lips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eval.features.syncnet import ClipEmbeddings, SyncNetExtractor
from eval.features.weights import resolve_weights
from eval.metrics.base import Metric, MetricOptions, MetricResult, clip_embeddings, pair_floor_result
from eval.metrics.floors import floor_partners
from eval.sets import ClipSet

__all__ = ["LSEScores", "lse_scores", "LSEC", "LSED"]

V_SHIFT = 15  # syncnet_python's --vshift default: ±15 frames = ±0.6 s


@dataclass(frozen=True)
class LSEScores:
    """SyncNet's figures for one pair of embedding sequences.

    Attributes:
        dist: LSE-D, the smallest mean distance over offsets.
        conf: LSE-C, median minus smallest mean distance.
        offset: 15 - argmin, in frames of 40 ms (negative: audio late).
        mean_dist: (31,) mean distance at each offset, audio shifted from -15 to +15 windows.
    """

    dist: float
    conf: float
    offset: int
    mean_dist: np.ndarray


def lse_scores(video: np.ndarray, audio: np.ndarray, vshift: int = V_SHIFT) -> LSEScores:
    """syncnet_python's offset search on (N, D) video and (M, D) audio embeddings (both cut to min(N, M))."""
    n = min(len(video), len(audio))
    v = torch.as_tensor(video[:n], dtype=torch.float32)  # (n, D)
    a = torch.nn.functional.pad(torch.as_tensor(audio[:n], dtype=torch.float32), (0, 0, vshift, vshift))  # (n+2s, D)
    win = 2 * vshift + 1
    idx = torch.arange(n)[:, None] + torch.arange(win)[None, :]  # (n, win)
    d = torch.nn.functional.pairwise_distance(v[:, None, :].expand(-1, win, -1), a[idx])  # (n, win)
    mdist = d.mean(dim=0)  # (win,)
    minval, minidx = torch.min(mdist, 0)
    conf = torch.median(mdist) - minval
    return LSEScores(dist=float(minval), conf=float(conf), offset=int(vshift - minidx), mean_dist=mdist.numpy())


def _embeddings(system: ClipSet, opts: MetricOptions, cache: dict[str, Any]) -> tuple[SyncNetExtractor, list[ClipEmbeddings]]:
    if "extractor:syncnet" not in cache:
        cache["extractor:syncnet"] = SyncNetExtractor(resolve_weights("syncnet", opts.weights),
                                                      device=opts.torch_device())
    ext: SyncNetExtractor = cache["extractor:syncnet"]
    return ext, clip_embeddings(ext, system, cache)


def _score_matrix(system: ClipSet, opts: MetricOptions, cache: dict[str, Any]) -> tuple[SyncNetExtractor, np.ndarray, list[int]]:
    """(N, N, 2) [LSE-D, LSE-C] of clip i's video with clip j's audio (NaN: pair not scored), offsets."""
    key = f"lse_matrix:{system.source}:{system.name}:{len(system)}:{opts.floor_partners}:{opts.seed}"
    ext, embs = _embeddings(system, opts, cache)
    if key not in cache:
        n = len(embs)
        m = np.full((n, n, 2), np.nan)
        offsets = []
        for i, e in enumerate(embs):
            own = lse_scores(e.video, e.audio)
            m[i, i] = (own.dist, own.conf)
            offsets.append(own.offset)
        for i, partners in enumerate(floor_partners(n, opts.floor_partners, opts.seed)):
            for j in partners:
                s = lse_scores(embs[i].video, embs[j].audio)
                m[i, j] = (s.dist, s.conf)
        cache[key] = (m, offsets)
    m, offsets = cache[key]
    return ext, m, offsets


class _LSE(Metric):
    streams = frozenset({"video", "audio"})
    weight_key = "syncnet"
    component = 0

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        ext, m, offsets = _score_matrix(system, opts, cache)
        other = np.diagonal(m[..., 1 - self.component])
        return pair_floor_result(self, system, m[..., self.component], opts, ext, {
            "deviations": "no face detector: centre crop instead of syncnet_python's S3FD face track",
            ("lse_c" if self.component == 0 else "lse_d"): float(np.mean(other)),
            "offset_frames_median": float(np.median(offsets)),
            "offset_frames_abs_mean": float(np.mean(np.abs(offsets))),
            "offset_convention": "15 - argmin over ±15 frames of 40 ms; negative: audio late"})


class LSED(_LSE):
    """LSE-D: SyncNet's smallest mean audio-lip distance over ±15 frames (lower is better)."""

    name, title, higher_is_better, component = "lse_d", "LSE-D (SyncNet)", False, 0


class LSEC(_LSE):
    """LSE-C: SyncNet's confidence, median minus smallest mean distance (higher is better)."""

    name, title, higher_is_better, component = "lse_c", "LSE-C (SyncNet)", True, 1
