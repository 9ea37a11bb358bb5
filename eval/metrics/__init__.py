"""Automatic metrics: distribution distances, text alignment, audio-video synchrony, temporal,
prompt following on the synthetic benchmark.

`METRICS` maps each command-line name to its class; `DEFAULT_METRICS` are computed when none are
named (those needing absent weights are then reported as not computed).
"""

from eval.metrics.attributes import Attributes
from eval.metrics.base import Metric, MetricOptions, MetricResult, NotApplicable, not_computed
from eval.metrics.desync import DeSync
from eval.metrics.distribution import FADCLAP, FVD, ClapScore, ClipScore, FADCodec, FADPANNs, FADVGGish
from eval.metrics.imagebind import ImageBindScore
from eval.metrics.lse import LSEC, LSED
from eval.metrics.sync import AVAlign, EventSync
from eval.metrics.temporal import Flicker, Motion
from eval.metrics.visual_events import VisualEvent, VisualEventConfig, detect_visual_events

METRICS: dict[str, type[Metric]] = {
    cls.name: cls
    for cls in (FVD, FADVGGish, FADPANNs, FADCLAP, FADCodec, ClipScore, ClapScore, AVAlign, EventSync, Flicker, Motion,
                Attributes, LSEC, LSED, DeSync, ImageBindScore)
}
DEFAULT_METRICS: tuple[str, ...] = tuple(METRICS)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "Metric",
    "MetricOptions",
    "MetricResult",
    "NotApplicable",
    "VisualEvent",
    "VisualEventConfig",
    "detect_visual_events",
    "not_computed",
]
