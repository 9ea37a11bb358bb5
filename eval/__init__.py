"""Automatic evaluation of generated audio-video clips: metrics, feature extractors and reports.

`eval` depends on no other package of the project, only on file formats (mp4 files, JSON sidecars,
manifests); the optional codec-latent FAD imports `audio_codec` when asked for.

Public API:
    detect_onsets, match_events, EventMatch, OnsetConfig: weights-free audio onsets and matching.
    detect_visual_events: weights-free visible events (impacts, turns, flashes) in frames.
    load_set, pair_sets, ClipSet, ClipRecord: sets of clips (folders or manifests).
    read_video, read_audio, EvalInputError: the media reader of the metrics.
    frechet_distance, frechet_from_features, fd_infinity, kid, bootstrap_ci: statistics.
    METRICS, MetricOptions, MetricResult: the metrics and their options.
    EvalConfig, evaluate, EvalReport, write_report: run metrics and write reports.
    PROTOCOLS: the named protocols of the field's tables (av-benchmark, verse-bench, javisbench).
"""

from eval.onsets import EventMatch, OnsetConfig, detect_onsets, match_events

__all__ = [
    "METRICS",
    "ClipRecord",
    "ClipSet",
    "EvalConfig",
    "EvalInputError",
    "EvalReport",
    "EventMatch",
    "MetricOptions",
    "MetricResult",
    "OnsetConfig",
    "PROTOCOLS",
    "bootstrap_ci",
    "detect_onsets",
    "detect_visual_events",
    "evaluate",
    "fd_infinity",
    "frechet_distance",
    "frechet_from_features",
    "kid",
    "load_set",
    "match_events",
    "pair_sets",
    "read_audio",
    "read_video",
    "write_report",
]

# Everything but the onset detector is imported on first use: the codec benchmark imports
# `eval.onsets` alone and should not pay for OpenCV, matplotlib and the metric registry.
_LAZY = {
    "METRICS": "eval.metrics", "MetricOptions": "eval.metrics.base", "MetricResult": "eval.metrics.base",
    "detect_visual_events": "eval.metrics.visual_events",
    "ClipRecord": "eval.sets", "ClipSet": "eval.sets", "load_set": "eval.sets", "pair_sets": "eval.sets",
    "EvalInputError": "eval.reader", "read_audio": "eval.reader", "read_video": "eval.reader",
    "bootstrap_ci": "eval.frechet", "fd_infinity": "eval.frechet", "frechet_distance": "eval.frechet",
    "frechet_from_features": "eval.frechet", "kid": "eval.frechet",
    "EvalConfig": "eval.runner", "EvalReport": "eval.runner", "evaluate": "eval.runner",
    "write_report": "eval.report", "PROTOCOLS": "eval.protocols",
}


def __getattr__(name: str):  # PEP 562 lazy attributes
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eval' has no attribute {name!r}")
