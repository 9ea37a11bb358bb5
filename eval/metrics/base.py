"""What a metric is, what it returns, and the options every metric reads.

Every number a metric reports carries the sample counts, the preprocessing, the hashes of the
weights used and a bootstrap interval. A metric that cannot be computed (its weights are missing,
the set has no captions, the reference has no ground-truth events, ...) returns a result with
status "not computed" and the reason, and never a number.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from eval.features.weights import WeightPaths, resolve_weights
from eval.metrics.floors import pair_floor
from eval.parallel import ClipTask
from eval.sets import ClipSet

__all__ = ["MetricOptions", "MetricResult", "Metric", "NotApplicable", "not_computed", "mean_with_ci",
           "windowed_extractor", "clip_embeddings", "pair_floor_result"]

_E = TypeVar("_E")


class NotApplicable(Exception):
    """The metric cannot be computed for this set; the message is the reason shown in the report."""


@dataclass
class MetricOptions:
    """Options of the metrics (one place, serialized into the report and the YAML configs).

    Attributes:
        weights: where the extractors' weights are.
        device: torch device of the extractors ("auto": the GPU if there is one, else "cpu";
            "cpu", "cuda", "cuda:1").
        batch_size: units per forward pass of an extractor.
        num_workers: DataLoader processes decoding clips for feature extraction.
        n_boot: bootstrap resamples for the intervals of per-clip metrics.
        n_boot_fd: bootstrap resamples for Fréchet distances (each needs a matrix square root).
        ci_level: coverage of the intervals.
        seed: random seed of bootstraps and subsets.
        fvd_frames: frames per I3D window (16: StyleGAN-V protocol).
        fvd_size: I3D frame side (224).
        fvd_fps: resample video to this rate for FVD (None: the file's rate).
        fd_inf_min_n: smallest subset of the FD-infinity fit (fadtk: 500; lowered for small sets).
        fd_inf_steps: number of subset sizes of the FD-infinity fit.
        panns_window: seconds of audio per PANNs embedding.
        clip_frames: frames per clip for the CLIP score.
        task: "t2av" (events: audio onsets vs events seen in the generated video), "v2a"
            (events: audio onsets vs the paired reference clip's ground-truth events) or "a2v"
            (events seen in the generated video vs the paired reference clip's ground-truth events).
        pair_by: "id" or "prompt": how generated clips find their reference clip (v2a, a2v).
        event_tolerance: seconds within which an onset matches an event (precision/recall/F1).
        event_window: seconds within which onsets are paired with events to measure the offset
            (wider than the tolerance, so an out-of-sync system still gets its lag measured).
        av_align_tolerance: AV-Align match window in seconds (None: one video frame, as published).
        attr_calibration: reference clips the attribute recognisers are fitted on: comma-separated
            splits of the reference manifest ("train,val"; clips being evaluated are always left
            out), or the path of another manifest with the same `params`.
        attr_max_calibration: at most this many calibration clips (the first ones).
        attr_panel_rows: prompts shown in the attribute metric's frame panel.
        floor_partners: mismatched partners per clip for the floors of network sync scores (LSE,
            DeSync, ImageBind): all other clips when the set is smaller, else this many drawn (seeded).
        desync_duration: seconds of each clip read for DeSync (av-benchmark: 8); Synchformer scores
            the first and the last 4.8 s of it.
    """

    weights: WeightPaths = field(default_factory=WeightPaths)
    device: str = "auto"
    batch_size: int = 8
    num_workers: int = 0
    n_boot: int = 1000
    n_boot_fd: int = 50
    ci_level: float = 0.95
    seed: int = 0
    fvd_frames: int = 16
    fvd_size: int = 224
    fvd_fps: float | None = None
    fd_inf_min_n: int = 500
    fd_inf_steps: int = 25
    panns_window: float = 1.0
    clip_frames: int = 8
    task: str = "t2av"
    pair_by: str = "id"
    event_tolerance: float = 0.1
    event_window: float = 0.5
    av_align_tolerance: float | None = None
    attr_calibration: str = "train,val"
    attr_max_calibration: int = 400
    attr_panel_rows: int = 8
    floor_partners: int = 20
    desync_duration: float = 8.0

    def __post_init__(self) -> None:
        if self.device != "auto":
            import torch

            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as err:
                raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}.") from err
        if isinstance(self.weights, dict):
            self.weights = WeightPaths(**self.weights)
        positive_ints = ("batch_size", "fvd_frames", "fvd_size", "fd_inf_min_n", "fd_inf_steps", "clip_frames",
                         "attr_max_calibration", "attr_panel_rows", "floor_partners")
        for name in positive_ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        for name in ("num_workers", "n_boot", "n_boot_fd", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}.")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"ci_level must lie in (0, 1), e.g. 0.95; got {self.ci_level!r}.")
        if not (isinstance(self.desync_duration, int | float) and self.desync_duration >= 4.8):
            raise ValueError(f"desync_duration must be at least 4.8 s (Synchformer compares 4.8 s), "
                             f"got {self.desync_duration!r}.")
        for name in ("panns_window", "event_tolerance", "event_window"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {v!r}.")
        for name in ("fvd_fps", "av_align_tolerance"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}.")
        if self.event_window < self.event_tolerance:
            raise ValueError(
                f"event_window ({self.event_window}) must be at least event_tolerance ({self.event_tolerance})."
            )
        if not isinstance(self.attr_calibration, str) or not self.attr_calibration.strip():
            raise ValueError("attr_calibration must name splits of the reference manifest (e.g. 'train,val') "
                             f"or a manifest path, got {self.attr_calibration!r}.")
        if self.task not in ("t2av", "v2a", "a2v"):
            raise ValueError(f"task must be 't2av', 'v2a' or 'a2v', got {self.task!r}.")
        if self.pair_by not in ("id", "prompt"):
            raise ValueError(f"pair_by must be 'id' or 'prompt', got {self.pair_by!r}.")


    def torch_device(self) -> str:
        """The device to put extractors on ("auto" resolved)."""
        if self.device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


@dataclass
class MetricResult:
    """One metric of one system.

    Attributes:
        metric: metric name ("fvd", "fad_vggish", ...).
        system: the set's name.
        status: "ok" or "not computed".
        value: the number (None when not computed).
        ci_low, ci_high: bootstrap interval (None when not available).
        higher_is_better: direction of `value` (None: no better direction; compare with the
            reference row).
        n_generated: clips of the evaluated set that entered the number.
        n_reference: clips of the reference set used (None for reference-free metrics).
        preprocessing: what the inputs went through.
        weights: weights name -> hash.
        reason: why it was not computed (or a note about skipped clips).
        extra: secondary numbers (FD-infinity, KID, precision, recall, offsets, ...).
        per_clip: clip id -> value, for plots (not written to the CSV).
    """

    metric: str
    system: str
    status: str = "ok"
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    higher_is_better: bool | None = False
    n_generated: int = 0
    n_reference: int | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    per_clip: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None)."""
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [clean(x) for x in v]
            if isinstance(v, np.generic):
                return clean(v.item())
            return v
        return clean(asdict(self))


def not_computed(metric: str, system: str, reason: str, *, higher_is_better: bool | None = False) -> MetricResult:
    """A result that says why there is no number."""
    return MetricResult(metric=metric, system=system, status="not computed", reason=reason,
                        higher_is_better=higher_is_better)


def mean_with_ci(values: np.ndarray, opts: MetricOptions) -> tuple[float, float, float]:
    """Mean of the finite values and its percentile bootstrap interval over clips."""
    from eval.frechet import bootstrap_ci

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_ci(v, n_boot=opts.n_boot, level=opts.ci_level, seed=opts.seed)
    return float(v.mean()), lo, hi


def windowed_extractor(build: Callable[..., _E], key: str, opts: MetricOptions, cache: dict[str, Any]) -> _E:
    """The run's extractor of weights `key` that reads the first `opts.desync_duration` seconds of
    each clip (av-benchmark's protocol: Synchformer, ImageBind), built once per run as
    `build(weights, device=, duration=, batch_size=)` and kept in `cache`."""
    ck = f"extractor:{key}:{opts.desync_duration}"
    if ck not in cache:
        cache[ck] = build(resolve_weights(key, opts.weights), device=opts.torch_device(),
                          duration=opts.desync_duration, batch_size=opts.batch_size)
    return cache[ck]


def clip_embeddings(ext: Any, system: ClipSet, cache: dict[str, Any], *tag: object) -> list[Any]:
    """`ext.clip(record)` of every clip of `system`, in order, each computed once per run: kept in
    `cache` under "<ext.name>:<ext.weight_hash>[:<tag>...]:<path>:<start>:<end>" (`tag`: whatever
    else changes the result, e.g. the seconds read)."""
    out = []
    for rec in tqdm(system.records, desc=f"{system.name}: {ext.name}", leave=False,
                    disable=not cache.get("progress", True)):
        key = ":".join(str(part) for part in (ext.name, ext.weight_hash, *tag, rec.path, rec.start, rec.end))
        if key not in cache:
            cache[key] = ext.clip(rec)
        out.append(cache[key])
    return out


def pair_floor_result(metric: Metric, system: ClipSet, m: np.ndarray, opts: MetricOptions, ext: Any,
                      extra: dict[str, Any]) -> MetricResult:
    """The result of an extractor's per-pair sync score: the matched mean of the (N, N) matrix `m`
    (clip i's video with clip j's audio, NaN where not scored) beside its mismatched-pair floor
    (`pair_floor`), each clip's own score, the extractor's preprocessing and weights, and `extra`
    after the floor's fields."""
    hib = bool(metric.higher_is_better)
    fl = pair_floor(m, higher_is_better=hib, n_boot=opts.n_boot, ci_level=opts.ci_level, seed=opts.seed)
    return MetricResult(
        metric=metric.name, system=system.name, value=fl.value, ci_low=fl.ci[0], ci_high=fl.ci[1],
        higher_is_better=hib, n_generated=len(system), preprocessing=ext.preprocessing(),
        weights={ext.name: ext.weight_hash}, extra={**fl.extra(), **extra},
        per_clip={rec.id: float(v) for rec, v in zip(system.records, np.diagonal(m))},
    )


class Metric(ABC):
    """A metric.

    Class attributes:
        name: identifier used on the command line and in reports.
        title: human-readable name with unit.
        higher_is_better: direction (None: none; compare with the reference row).
        needs_reference: compares against the reference set (Fréchet distances, paired v2a).
        weight_key: the key of `WEIGHTS` whose extractor it runs ("": weights-free).
    """

    name: str = ""
    title: str = ""
    higher_is_better: bool | None = False
    needs_reference: bool = False
    weight_key: str = ""

    @abstractmethod
    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        """Compute the metric for `system`.

        Args:
            system: the set evaluated (a generated set, or the reference itself for
                reference-free metrics).
            reference: the reference set (None if not given).
            opts: options.
            cache: shared across metrics and systems of one run (extractors, reference features,
                per-clip optical flow), keyed by the metric's own keys.

        Raises:
            NotApplicable: the metric cannot be computed here (the message is the reason).
            WeightsMissing: its weights are not found.
        """

    def clip_tasks(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                   cache: dict[str, Any]) -> list[ClipTask]:
        """The per-clip results `evaluate` will read from `cache` for these sets, as tasks another
        process can compute (`avgen eval --jobs`, eval.parallel); none by default (the metrics
        that run networks batch their clips themselves). May raise what `evaluate` raises."""
        return []
