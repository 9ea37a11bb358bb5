"""AV-Align and the event measure on clips whose audio is shifted by known offsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval.metrics.base import MetricOptions
from eval.metrics.sync import AVAlign, EventSync, av_align_score, video_peaks
from eval.sets import load_set

SHIFTS_MS = (0, 40, 80, 160, 320)  # the audio delays of the `shift_sets` fixture


def _run(metric, shift_sets: dict[str, Path], opts: MetricOptions) -> dict[int, object]:
    reference = load_set(shift_sets["manifest"])
    cache: dict = {"progress": False}
    return {ms: metric.evaluate(load_set(shift_sets[str(ms)], name=f"shift{ms}"), reference, opts, cache)
            for ms in SHIFTS_MS}


def test_event_measure_reports_the_offset_and_degrades(shift_sets: dict[str, Path]) -> None:
    res = _run(EventSync(), shift_sets, MetricOptions(task="v2a", n_boot=50, event_tolerance=0.1, event_window=0.5))
    f1 = [res[ms].value for ms in SHIFTS_MS]
    for ms in SHIFTS_MS:
        assert res[ms].extra["offset_ms"] == pytest.approx(ms, abs=10.0), (ms, res[ms].extra)
        assert res[ms].n_generated == len(load_set(shift_sets["manifest"]))
    # The lag grows strictly with the shift; F1 at a 100 ms tolerance stays up while the shift is
    # inside the tolerance (up to a clip-edge onset) and collapses beyond it.
    lags = [res[ms].extra["abs_offset_ms"] for ms in SHIFTS_MS]
    assert all(b > a + 20 for a, b in zip(lags, lags[1:])), lags
    assert all(b <= a + 0.05 for a, b in zip(f1, f1[1:])), f1
    assert f1[0] > 0.95 and f1[-1] < 0.2, f1


def test_av_align_degrades_with_the_shift(shift_sets: dict[str, Path]) -> None:
    res = _run(AVAlign(), shift_sets, MetricOptions(n_boot=50))
    scores = [res[ms].value for ms in SHIFTS_MS]
    assert all(b < a or a == b == 0.0 for a, b in zip(scores, scores[1:])), scores
    assert scores[0] > 0.9 and scores[-1] < 0.1, scores
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_t2av_events_use_the_video_and_catch_a_late_track(small_sets: dict[str, Path]) -> None:
    opts = MetricOptions(task="t2av", n_boot=50)
    cache: dict = {"progress": False}
    sync = EventSync().evaluate(load_set(small_sets["sync"]), None, opts, cache)
    late = EventSync().evaluate(load_set(small_sets["late"]), None, opts, cache)
    assert sync.preprocessing["events"] == "detected in the video"
    assert sync.value > 0.75
    assert late.value < sync.value - 0.4
    assert abs(sync.extra["offset_ms"]) < 25.0
    assert late.extra["offset_ms"] == pytest.approx(160, abs=25.0)


def test_av_align_edge_cases() -> None:
    none = av_align_score(np.array([]), np.array([]), 0.0625)
    assert np.isnan(none["score"]) and none["n_audio"] == 0
    assert av_align_score(np.array([0.5]), np.array([]), 0.0625)["score"] == 0.0
    # one video peak cannot be matched by two audio peaks (the published loop allowed it)
    two = av_align_score(np.array([1.0, 1.02]), np.array([1.01]), 0.0625)
    assert two["score"] == pytest.approx(1 / 2)
    assert two["audio_hit_rate"] == 1.0 and two["video_hit_rate"] == 1.0
    # a still picture (flat flow) has no peaks; a bump is placed mid-interval
    assert video_peaks(np.zeros(10), 16.0).size == 0
    assert video_peaks(np.array([0.0, 1.0, 0.0, 0.0]), 16.0) == pytest.approx([1.5 / 16])


def test_v2a_without_ground_truth_is_not_applicable(small_sets: dict[str, Path]) -> None:
    from eval.metrics.base import NotApplicable

    gen = load_set(small_sets["sync"])
    with pytest.raises(NotApplicable, match="ground-truth events"):
        EventSync().evaluate(gen, load_set(small_sets["late"]), MetricOptions(task="v2a"), {"progress": False})


def _clips(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(np.arange(0.1, 1.9, 0.1), size=int(rng.integers(2, 5)), replace=False))
            for _ in range(n)]


def test_event_floor_separates_own_events_from_other_clips() -> None:
    from eval.metrics.sync import event_floor

    events = _clips(24, seed=0)
    jitter = np.random.default_rng(1)
    own = [e + jitter.normal(0, 0.01, e.shape) for e in events]  # a system in sync with its clip
    other = own[1:] + own[:1]  # the same audio given to the wrong clips: ignores its condition
    rng = np.random.default_rng(0)
    good = event_floor(own, events, 0.05, 200, 0.95, rng)
    bad = event_floor(other, events, 0.05, 200, 0.95, rng)
    assert good.f1 > 0.9 and good.cleared and good.gap_ci[0] > 0.3, good
    # A system whose audio belongs to other clips scores about its own floor and never clears it.
    assert not bad.cleared and bad.gap_ci[0] < 0 < bad.gap_ci[1] + 0.05, bad
    assert abs(bad.f1 - bad.mismatched_f1) < 0.15, bad
    # The floor is the same population either way: each clip's onsets against every other clip's events.
    assert abs(good.mismatched_f1 - bad.mismatched_f1) < 0.1
    flat = good.flat("50ms")
    assert flat["floor_cleared_50ms"] is True and flat["mismatched_f1_50ms"] == good.mismatched_f1


def test_event_results_carry_floors_at_50_and_100_ms(shift_sets: dict[str, Path]) -> None:
    res = _run(EventSync(), shift_sets, MetricOptions(task="v2a", n_boot=50))
    in_sync, late = res[0].extra, res[320].extra
    for tag in ("50ms", "100ms"):
        assert in_sync[f"floor_cleared_{tag}"] and in_sync[f"f1_{tag}"] > in_sync[f"mismatched_f1_{tag}"] + 0.3
        assert not late[f"floor_cleared_{tag}"]
    # 80 ms late: inside the 100 ms tolerance, outside the 50 ms one.
    assert res[80].extra["floor_cleared_100ms"] and not res[80].extra["floor_cleared_50ms"]


def test_a2v_matches_the_video_events_with_the_given_sound(small_sets: dict[str, Path]) -> None:
    # a2v scores the picture: the events seen in the generated video against the reference's true
    # events, so a late sound track does not move it while v2a falls.
    reference = load_set(small_sets["manifest"])
    cache: dict = {"progress": False}
    a2v = MetricOptions(task="a2v", n_boot=50)
    v2a = MetricOptions(task="v2a", n_boot=50)
    sync, late = (EventSync().evaluate(load_set(small_sets[k], name=k), reference, a2v, cache) for k in ("sync", "late"))
    assert sync.preprocessing["predicted"].startswith("events seen in the video")
    assert sync.value > 0.75 and late.value == sync.value, (sync.value, late.value)
    late_v2a = EventSync().evaluate(load_set(small_sets["late"], name="late"), reference, v2a, cache)
    assert late_v2a.extra["f1_50ms"] < sync.extra["f1_50ms"] - 0.4
