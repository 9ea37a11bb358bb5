"""Weights-free audio-video synchrony: AV-Align and the event measure.

**AV-Align** (Yariv et al., TempoTokens): video peaks are the local maxima of the mean Farneback
flow magnitude between consecutive frames; audio peaks are onsets; an audio peak matches when a
video peak lies within the tolerance (one frame period by default, as published); the score is
matches / (|A| + |V| - matches). Fixed against the published code:

- audio onsets come from `eval.onsets.detect_onsets` at the file's own sample rate (the published
  code fixed the rate);
- matching is one to one (the published loop lets one video peak match several audio peaks, so
  the "intersection" can exceed |V| and the score can leave [0, 1]);
- a clip with no peaks on either side gives no score instead of dividing by zero (it is counted
  in `extra["clips_without_peaks"]`), and one side empty scores 0;
- no undefined variables: both directions are reported (`audio_hit_rate`: audio peaks with a
  video peak within the tolerance; `video_hit_rate`: the converse);
- a flow value is placed at the middle of its frame interval ((i + 0.5) / fps), not at its end,
  which removed a half-frame bias;
- the tolerance is an option (`av_align_tolerance`, seconds; default one frame period).

Every AV-Align result carries the same system's mismatched-pair floor (`eval.metrics.floors`):
clip i's motion peaks against clip j's audio onsets.

**Event measure**: detected audio onsets against event times within a tolerance: precision,
recall and F1 (one-to-one matching), pooled over clips; and the signed offset of onsets against
events matched within a wider window (median, in ms; positive = audio late), which measures a lag
even when it exceeds the tolerance. Event times are the ground truth of the reference manifest
(v2a: the paired reference clip's events; the reference set itself: its own events) or, for
text-to-audio-video where there is no ground truth, the events detected in the generated video
(`visual_events`). For audio-to-video (a2v) the roles turn: the events seen in the generated video
are matched against the given sound's ground-truth events. Every result also carries the
mismatched-pair floor (`event_floor`): the same predictions against every other clip's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import argrelmax
from tqdm.auto import tqdm

from eval.metrics.base import Metric, MetricOptions, MetricResult, NotApplicable, mean_with_ci
from eval.metrics.floors import floor_partners, pair_floor
from eval.metrics.flow import clip_flow_stats, flow_task
from eval.metrics.visual_events import detect_visual_events
from eval.onsets import detect_onsets, match_events
from eval.parallel import ClipTask
from eval.reader import read_audio, read_video
from eval.sets import ClipRecord, ClipSet, pair_sets

__all__ = ["FLOOR_TOLERANCES", "AVAlign", "EventFloor", "EventSync", "av_align_score", "event_floor", "video_peaks"]

# Flow maxima below this (pixels per frame) are numerical noise of a still picture, not motion.
_MIN_PEAK_FLOW = 0.01


def video_peaks(magnitude: np.ndarray, fps: float) -> np.ndarray:
    """Times (s) of the local maxima of a flow-magnitude series (T-1,), each at its interval's middle."""
    if magnitude.size < 3:
        return np.zeros(0)
    idx = argrelmax(magnitude)[0]
    idx = idx[magnitude[idx] > _MIN_PEAK_FLOW]
    return (idx + 0.5) / fps


def av_align_score(audio_peaks: np.ndarray, video_peak_times: np.ndarray, tolerance: float) -> dict[str, float]:
    """AV-Align of one clip.

    Returns:
        {"score": IoU with one-to-one matching (NaN if both sides are empty), "audio_hit_rate",
        "video_hit_rate" (NaN when that side is empty), "n_audio", "n_video"}.
    """
    a, v = np.asarray(audio_peaks, float), np.asarray(video_peak_times, float)
    if a.size == 0 and v.size == 0:
        return {"score": float("nan"), "audio_hit_rate": float("nan"), "video_hit_rate": float("nan"),
                "n_audio": 0, "n_video": 0}
    m = match_events(a, v, tolerance).n_matched if a.size and v.size else 0
    near = np.abs(a[:, None] - v[None, :]) <= tolerance if a.size and v.size else np.zeros((a.size, v.size), bool)
    return {
        "score": m / (a.size + v.size - m),
        "audio_hit_rate": float(near.any(axis=1).mean()) if a.size else float("nan"),
        "video_hit_rate": float(near.any(axis=0).mean()) if v.size else float("nan"),
        "n_audio": int(a.size),
        "n_video": int(v.size),
    }


def _clip_key(prefix: str, record: ClipRecord) -> str:
    return f"{prefix}:{record.path}:{record.start}:{record.end}"


def onsets_of(path: Path, start: float, duration: float | None) -> np.ndarray:
    """Onset times (s) of a clip's audio, mono."""
    audio, sr = read_audio(path, channels=1, start=start, duration=duration)
    return detect_onsets(audio, sr)


def visual_event_times(path: Path, start: float, duration: float | None) -> np.ndarray:
    """Times (s) of the events seen in a clip's frames."""
    frames, fps = read_video(path, start=start, duration=duration)
    return np.array([e.time for e in detect_visual_events(frames, fps)])


def _onsets(record: ClipRecord, cache: dict[str, Any]) -> np.ndarray:
    key = _clip_key("onsets", record)
    if key not in cache:
        cache[key] = onsets_of(record.path, record.start, record.duration)
    return cache[key]


def _visual_events(record: ClipRecord, cache: dict[str, Any]) -> np.ndarray:
    key = _clip_key("visual_events", record)
    if key not in cache:
        cache[key] = visual_event_times(record.path, record.start, record.duration)
    return cache[key]


def _task(kind: str, record: ClipRecord) -> ClipTask:
    fn = onsets_of if kind == "onsets" else visual_event_times
    return ClipTask(_clip_key(kind, record), fn, (record.path, record.start, record.duration))


class AVAlign(Metric):
    """AV-Align, bugs of the published implementation fixed (see the module docstring)."""

    name = "av_align"
    title = "AV-Align (IoU)"
    higher_is_better = True

    def clip_tasks(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                   cache: dict[str, Any]) -> list[ClipTask]:
        return [t for rec in system.records for t in (flow_task(rec), _task("onsets", rec))]

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        rows: dict[str, dict[str, float]] = {}
        peaks, onsets, tols = [], [], []
        for rec in tqdm(system.records, desc=f"{system.name}: av_align", leave=False, disable=not cache.get("progress", True)):
            flow = clip_flow_stats(rec, cache)
            tols.append(opts.av_align_tolerance or 1.0 / flow.fps)
            peaks.append(video_peaks(flow.magnitude, flow.fps))
            onsets.append(_onsets(rec, cache))
            rows[rec.id] = av_align_score(onsets[-1], peaks[-1], tols[-1])
        scores = np.array([r["score"] for r in rows.values()])
        value, lo, hi = mean_with_ci(scores, opts)
        n_ok = int(np.isfinite(scores).sum())
        if n_ok == 0:
            raise NotApplicable("no clip has audio onsets or motion peaks")
        # The floor: clip i's motion peaks against clip j's audio onsets (at clip i's tolerance).
        m = np.full((len(peaks), len(peaks)), np.nan)
        np.fill_diagonal(m, scores)
        for i, partners in enumerate(floor_partners(len(peaks), opts.floor_partners, opts.seed)):
            for j in partners:
                m[i, j] = av_align_score(onsets[j], peaks[i], tols[i])["score"]
        floor = pair_floor(m, higher_is_better=True, n_boot=opts.n_boot, ci_level=opts.ci_level, seed=opts.seed)

        def avg(key: str) -> float:
            vals = np.array([r[key] for r in rows.values()], float)
            return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")

        return MetricResult(
            metric=self.name, system=system.name, value=value, ci_low=lo, ci_high=hi,
            higher_is_better=True, n_generated=n_ok,
            preprocessing={"video": "native fps and size, Farneback (0.5, 3, 15, 3, 5, 1.2, 0)",
                           "audio": "native rate, mono mix, eval.onsets",
                           "tolerance": f"{opts.av_align_tolerance} s" if opts.av_align_tolerance else "1 frame"},
            extra={"audio_hit_rate": avg("audio_hit_rate"), "video_hit_rate": avg("video_hit_rate"),
                   "audio_peaks_per_clip": avg("n_audio"), "video_peaks_per_clip": avg("n_video"),
                   "clips_without_peaks": len(rows) - n_ok, **floor.extra()},
            per_clip={k: r["score"] for k, r in rows.items()},
        )


# Tolerances at which every event result also reports matched and mismatched F1. At 100 ms, onsets
# placed at random with the right count already score F1 ~0.4 on the synthetic clips; 50 ms is tighter.
FLOOR_TOLERANCES = (0.05, 0.1)


@dataclass(frozen=True)
class EventFloor:
    """Matched event F1 beside the mismatched-pair floor, at one tolerance.

    Attributes:
        tolerance: matching tolerance in seconds.
        f1, ci: pooled F1 of each clip's onsets against its own events, and its bootstrap interval.
        mismatched_f1, mismatched_ci: pooled F1 of each clip's onsets against every other clip's
            events (the expectation over all shuffles), and its bootstrap interval.
        gap_ci: interval of f1 - mismatched_f1 over the same resamples (paired).
        precision, recall, n_pred, n_ref, n_matched: of the matched pairs.
    """

    tolerance: float
    f1: float
    ci: tuple[float, float]
    mismatched_f1: float
    mismatched_ci: tuple[float, float]
    gap_ci: tuple[float, float]
    precision: float
    recall: float
    n_pred: int
    n_ref: int
    n_matched: int

    @property
    def cleared(self) -> bool:
        """Whether the matched interval lies wholly above the floor's interval."""
        return bool(self.ci[0] > self.mismatched_ci[1])

    @property
    def ratio(self) -> float:
        return self.f1 / self.mismatched_f1 if self.mismatched_f1 > 0 else float("inf") if self.f1 > 0 else float("nan")

    def flat(self, tag: str) -> dict[str, Any]:
        """Scalar fields named `<field>_<tag>` (for CSV columns), e.g. `mismatched_f1_50ms`."""
        return {
            f"f1_{tag}": self.f1, f"f1_{tag}_ci_low": self.ci[0], f"f1_{tag}_ci_high": self.ci[1],
            f"mismatched_f1_{tag}": self.mismatched_f1, f"mismatched_f1_{tag}_ci_low": self.mismatched_ci[0],
            f"mismatched_f1_{tag}_ci_high": self.mismatched_ci[1],
            f"gap_{tag}_ci_low": self.gap_ci[0], f"gap_{tag}_ci_high": self.gap_ci[1],
            f"ratio_{tag}": self.ratio, f"floor_cleared_{tag}": self.cleared,
        }


def _pooled_f1(matched: float, n_pred: float, n_ref: float) -> float:
    return float(2 * matched / (n_pred + n_ref)) if n_pred + n_ref else float("nan")


def event_floor(onsets: list[np.ndarray], events: list[np.ndarray], tolerance: float, n_boot: int,
                ci_level: float, rng: np.random.Generator) -> EventFloor:
    """Matched F1 and the mismatched-pair floor of N clips, with paired bootstrap intervals.

    The floor pairs clip i's onsets with clip j's events for every j != i: the F1 that audio ignoring
    its own clip gets from the event statistics alone (counts, rhythm, where events fall in a clip).
    Both figures and their difference are bootstrapped over the same resamples of clips; a pair of
    resampled copies of one clip is never counted as mismatched.

    Args:
        onsets: per clip, (N_i,) detected onset times in seconds.
        events: per clip, (M_i,) event times in seconds.
        tolerance: matching tolerance in seconds.
        n_boot: bootstrap resamples (0: no intervals).
        ci_level: interval level, e.g. 0.95.
        rng: random generator (seeded by the caller).
    """
    n = len(onsets)
    # counts[i, j] = (matched, n_pred, n_ref) of clip i's onsets against clip j's events: N^2 small
    # assignments, cheap for the tens to hundreds of clips an evaluation holds.
    counts = np.zeros((n, n, 3))
    for i in range(n):
        for j in range(n):
            m = match_events(onsets[i], events[j], tolerance)
            counts[i, j] = (m.n_matched, m.n_pred, m.n_ref)

    def figures(idx: np.ndarray) -> tuple[float, float]:
        sub = counts[idx][:, idx]  # (k, k, 3)
        own = sub[np.arange(len(idx)), np.arange(len(idx))].sum(axis=0)
        other_mask = idx[:, None] != idx[None, :]
        other = sub[other_mask].sum(axis=0)
        return _pooled_f1(*own), _pooled_f1(*other)

    f1, mis = figures(np.arange(n))
    alpha = (1 - ci_level) / 2
    ci = mis_ci = gap_ci = (float("nan"), float("nan"))
    if n_boot and n > 1:
        boots = np.array([figures(rng.integers(0, n, n)) for _ in range(n_boot)])  # (n_boot, 2)
        ok = np.isfinite(boots).all(axis=1)
        if ok.any():
            b = boots[ok]
            q = (alpha, 1 - alpha)
            ci = tuple(float(v) for v in np.quantile(b[:, 0], q))  # type: ignore[assignment]
            mis_ci = tuple(float(v) for v in np.quantile(b[:, 1], q))  # type: ignore[assignment]
            gap_ci = tuple(float(v) for v in np.quantile(b[:, 0] - b[:, 1], q))  # type: ignore[assignment]
    own = counts[np.arange(n), np.arange(n)].sum(axis=0)
    tp, npred, nref = own
    return EventFloor(
        tolerance=tolerance, f1=f1, ci=ci, mismatched_f1=mis if n > 1 else float("nan"), mismatched_ci=mis_ci,
        gap_ci=gap_ci, precision=float(tp / npred) if npred else float("nan"),
        recall=float(tp / nref) if nref else float("nan"), n_pred=int(npred), n_ref=int(nref), n_matched=int(tp),
    )


class EventSync(Metric):
    """Precision/recall/F1 of audio onsets against event times, and the audio lag in ms."""

    name = "events"
    title = "Event sync F1"
    higher_is_better = True

    @staticmethod
    def _event_source(system: ClipSet, reference: ClipSet | None, opts: MetricOptions) -> str:
        """Where the true event times come from: the set's own ground truth ("own"), its paired
        reference clips' ("paired", v2a and a2v), or the events seen in its own video ("video")."""
        if (reference is not None and system is reference) or (system.has_events and opts.task not in ("v2a", "a2v")):
            return "own"
        return "paired" if opts.task in ("v2a", "a2v") else "video"

    def _event_times(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                     cache: dict[str, Any]) -> tuple[list[tuple[ClipRecord, np.ndarray]], str]:
        source = self._event_source(system, reference, opts)
        if source == "own":
            if not system.has_events:
                raise NotApplicable("the reference set has no ground-truth events (a manifest with 'events' has them)")
            return [(r, np.array([e.time for e in r.events or ()])) for r in system], "ground truth"
        if source == "paired":
            if reference is None or not reference.has_events:
                raise NotApplicable(f"{opts.task} compares with the reference's ground-truth events; pass --reference "
                                    "with a manifest that lists 'events' (or use --task t2av)")
            pairs = pair_sets(system, reference, by=opts.pair_by)
            return [(g, np.array([e.time for e in r.events or ()])) for g, r in pairs], "reference ground truth"
        return [(rec, _visual_events(rec, cache)) for rec in system], "detected in the video"

    def clip_tasks(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                   cache: dict[str, Any]) -> list[ClipTask]:
        tasks = [_task("visual_events" if opts.task == "a2v" else "onsets", rec) for rec in system.records]
        if self._event_source(system, reference, opts) == "video":  # t2av: the events seen in the video
            tasks += [_task("visual_events", rec) for rec in system.records]
        return tasks

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        targets, source = self._event_times(system, reference, opts, cache)
        # a2v: the generated video's events (what the picture shows) against the sound's true events.
        predict = _visual_events if opts.task == "a2v" else _onsets
        onsets = [predict(rec, cache) for rec, _ in tqdm(targets, desc=f"{system.name}: events", leave=False,
                                                         disable=not cache.get("progress", True))]
        events = [ev for _, ev in targets]
        if sum(len(e) for e in events) == 0:
            raise NotApplicable(f"no events found ({source}) in any clip")
        offsets: list[float] = []
        clip_offsets: list[list[float]] = []
        per_clip: dict[str, float] = {}
        for (rec, ev), ons in zip(targets, onsets):
            m = match_events(ons, ev, opts.event_tolerance)
            wide = match_events(ons, ev, opts.event_window)
            offsets += wide.offsets_ms
            clip_offsets.append(wide.offsets_ms)
            per_clip[rec.id] = m.f1
        rng = np.random.default_rng(opts.seed)
        floors = {tol: event_floor(onsets, events, tol, opts.n_boot, opts.ci_level, rng)
                  for tol in sorted({opts.event_tolerance, *FLOOR_TOLERANCES})}
        main = floors[opts.event_tolerance]
        boot_off = []
        for _ in range(opts.n_boot if offsets else 0):
            pick = [o for j in rng.integers(0, len(clip_offsets), len(clip_offsets)) for o in clip_offsets[j]]
            if pick:
                boot_off.append(float(np.median(pick)))
        alpha = (1 - opts.ci_level) / 2
        off = np.asarray(offsets)
        extra: dict[str, Any] = {
            "precision": main.precision, "recall": main.recall,
            "offset_ms": float(np.median(off)) if off.size else float("nan"),
            "offset_ms_ci": [float(v) for v in np.quantile(boot_off, [alpha, 1 - alpha])] if boot_off else None,
            "abs_offset_ms": float(np.abs(off).mean()) if off.size else float("nan"),
            "n_onsets": main.n_pred, "n_events": main.n_ref, "n_matched": main.n_matched,
            "offsets_ms": [round(float(o), 2) for o in off],
        }
        for tol, fl in floors.items():
            extra.update(fl.flat(f"{round(tol * 1000)}ms"))
        # The fields every sync result carries (the report's floor table), at the main tolerance.
        extra.update({"floor": main.mismatched_f1, "floor_ci_low": main.mismatched_ci[0],
                      "floor_ci_high": main.mismatched_ci[1], "gap_ci_low": main.gap_ci[0], "gap_ci_high": main.gap_ci[1],
                      "floor_cleared": main.cleared, "floor_pairs": len(targets) * (len(targets) - 1),
                      "floor_definition": "the same predictions against every other clip's events"})
        return MetricResult(
            metric=self.name, system=system.name, value=main.f1, ci_low=main.ci[0], ci_high=main.ci[1],
            higher_is_better=True, n_generated=len(targets),
            n_reference=len(targets) if source == "reference ground truth" else None,
            preprocessing={"predicted": "events seen in the video (eval.metrics.visual_events)" if opts.task == "a2v"
                           else "audio onsets (native rate, mono mix, eval.onsets)", "events": source,
                           "tolerance": f"{opts.event_tolerance} s", "offset_window": f"{opts.event_window} s",
                           "floor": "the same audio against every other clip's events (all mismatched pairs)"},
            extra=extra,
            per_clip=per_clip,
        )
