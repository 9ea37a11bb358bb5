"""Run metrics over one or more generated sets against a reference set.

`evaluate(EvalConfig) -> EvalReport`: loads the sets, runs every requested metric on every system
(and the reference-free metrics on the reference set too, as a row to compare with), and turns
missing weights or inapplicable metrics into "not computed" rows with their reason.

A bad clip (missing, unreadable, without the stream a metric reads) does not stop the run: the sets
are screened first (`eval.screen`) and bad clips are left out, each listed with its reason in
`EvalReport.skipped`; a clip that fails later inside a metric is left out the same way and the
metrics are run again without it, so every number of a report is computed on the same clips. The
run fails only when no clip of any system (or of the reference) is usable, or with `strict`, at the
first bad clip.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from eval.clip_cache import ClipCache
from eval.conditioning import read_conditioning, to_metric_results
from eval.features.weights import WeightPaths, WeightsMissing
from eval.metrics import DEFAULT_METRICS, METRICS
from eval.metrics.base import Metric, MetricOptions, MetricResult, NotApplicable, not_computed
from eval.parallel import ClipTask, run_clip_tasks
from eval.protocols import get_protocol, protocol_deviations
from eval.reader import EvalInputError
from eval.screen import SkippedClip, find, screen_set, streams_needed, without
from eval.sets import ClipSet, load_set, pair_sets

__all__ = ["EvalConfig", "EvalReport", "evaluate", "parse_system"]


def parse_system(spec: str) -> tuple[str | None, str]:
    """`NAME=PATH` -> (NAME, PATH); a bare `PATH` -> (None, PATH)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name or not path:
            raise EvalInputError(f"--generated {spec!r}: use NAME=PATH or just PATH.")
        return name, path
    return None, spec


@dataclass
class EvalConfig:
    """One evaluation run (what `avgen eval` and `configs/eval/*.yaml` describe).

    Attributes:
        generated: the systems: folders or manifests, each optionally `NAME=PATH`.
        reference: the reference folder or manifest (None: only reference-free metrics).
        reference_split: keep only this split of a reference manifest (e.g. "heldout").
        metrics: metric names (see `eval.metrics.METRICS`).
        out: folder for report.csv, report.json and report.html (None: print only).
        max_clips: evaluate at most this many clips per set (the first ones), for quick looks.
        progress: show progress bars.
        strict: stop at the first bad clip (default: skip it and report it).
        jobs: processes for the metrics' per-clip work (decoding, onsets, visual events, optical flow,
            attribute features; eval.parallel); the figures do not depend on it. 0: one per core.
        options: metric options.
        conditioning: a `conditioning.json` of `avgen diagnose` whose gaps join the report (metrics
            `cond/<gap>`, rows of report.csv/json, a section of report.html).
        protocol: a named protocol (`eval.protocols`: av-benchmark, verse-bench, javisbench); when
            the config does not name metrics it supplies them, and it supplies the options it sets
            unless the config sets them; the report lists the run's deviations from it.
    """

    generated: list[str] = field(default_factory=list)
    reference: str | None = None
    reference_split: str | None = None
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    out: str | None = None
    max_clips: int | None = None
    progress: bool = True
    strict: bool = False
    jobs: int = 1
    options: MetricOptions = field(default_factory=MetricOptions)
    conditioning: str | None = None
    protocol: str | None = None

    def __post_init__(self) -> None:
        if self.protocol is not None:
            get_protocol(self.protocol)  # an unknown name is an error that lists the known ones
        if isinstance(self.options, dict):
            self.options = MetricOptions(**self.options)
        if isinstance(self.generated, str):
            self.generated = [self.generated]
        if isinstance(self.metrics, str):
            self.metrics = [m.strip() for m in self.metrics.split(",") if m.strip()]
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}.")
        if not self.metrics:
            raise ValueError(f"no metrics chosen; choose from {', '.join(METRICS)}.")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 0:
            raise ValueError(f"jobs must be a non-negative integer (0: one process per core), got {self.jobs!r}.")
        if self.max_clips is not None and (isinstance(self.max_clips, bool) or self.max_clips < 1):
            raise ValueError(f"max_clips must be a positive integer or None, got {self.max_clips!r}.")

    @classmethod
    def from_yaml(cls, path: str | Path) -> EvalConfig:
        """Read a config written by `to_yaml` (unknown keys are an error that lists the known ones)."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise EvalInputError(f"{p}: cannot read the config ({err}).") from err
        if not isinstance(data, dict):
            raise EvalInputError(f"{p}: a config must be a mapping of EvalConfig fields.")
        return cls.from_dict(data, where=str(p))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> EvalConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        opt_known = {f.name for f in dataclasses.fields(MetricOptions)}
        w_known = {f.name for f in dataclasses.fields(WeightPaths)}
        bad = set(data) - known
        opts = dict(data.get("options") or {})
        bad |= {f"options.{k}" for k in set(opts) - opt_known}
        bad |= {f"options.weights.{k}" for k in set(opts.get("weights") or {}) - w_known}
        if bad:
            raise EvalInputError(
                f"{where}: unknown keys {sorted(bad)}; EvalConfig has {sorted(known)}, options has {sorted(opt_known)}."
            )
        if data.get("protocol"):
            try:
                proto = get_protocol(data["protocol"])
            except ValueError as err:
                raise EvalInputError(f"{where}: {err}") from err
            data = dict(data)
            data.setdefault("metrics", list(proto.metrics))
            data["options"] = {**proto.options, **opts}
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise EvalInputError(f"{where}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


@dataclass
class EvalReport:
    """Results of a run: one `MetricResult` per (system, metric).

    Attributes:
        systems: row names in order (generated systems, then the reference).
        reference: the reference set's row name (None without a reference).
        metrics: metric names in order.
        results: all results.
        config: the run's config as a dict.
        environment: versions and hardware that produced the numbers.
        skipped: the clips left out, with their reasons.
        conditioning: the conditioning file's contents (`eval.conditioning`), when one was given.
        protocol: the named protocol followed (name, table, dataset, metrics, deviations), or None.
    """

    systems: list[str]
    reference: str | None
    metrics: list[str]
    results: list[MetricResult]
    config: dict[str, Any]
    environment: dict[str, Any]
    skipped: list[SkippedClip] = field(default_factory=list)
    conditioning: dict[str, Any] | None = None
    protocol: dict[str, Any] | None = None

    def get(self, system: str, metric: str) -> MetricResult | None:
        for r in self.results:
            if r.system == system and r.metric == metric:
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"systems": self.systems, "reference": self.reference, "metrics": self.metrics,
                "results": [r.to_dict() for r in self.results], "config": self.config,
                "environment": self.environment, "skipped": [c.to_dict() for c in self.skipped],
                "conditioning": self.conditioning, "protocol": self.protocol}


def _environment(device: str) -> dict[str, Any]:
    env = {"created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
           "torch": torch.__version__, "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
           "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _load_sets(cfg: EvalConfig) -> tuple[list[ClipSet], ClipSet | None]:
    if not cfg.generated:
        raise EvalInputError("no generated set; pass --generated DIR (or NAME=DIR), once per system.")
    systems = []
    for spec in cfg.generated:
        name, path = parse_system(spec)
        systems.append(load_set(path, name=name, check_files=False, lenient=not cfg.strict).limit(cfg.max_clips))
    names = [s.name for s in systems]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise EvalInputError(f"several systems are named {sorted(dup)}; name them with --generated NAME=DIR.")
    reference = None
    if cfg.reference:
        reference = load_set(cfg.reference, split=cfg.reference_split, check_files=False).limit(cfg.max_clips)
        if reference.name in names:
            reference.name = f"{reference.name} (reference)"
    elif cfg.reference_split:
        raise EvalInputError("--reference-split needs --reference.")
    return systems, reference


class _ClipFailed(Exception):
    """A metric could not read one clip of a set (internal: the clip is skipped and the metrics rerun)."""

    def __init__(self, clips: ClipSet, record_id: str, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.clips, self.record_id, self.path, self.reason = clips, record_id, path, reason


def _screen(cfg: EvalConfig, systems: list[ClipSet],
            reference: ClipSet | None) -> tuple[list[ClipSet], ClipSet | None, list[SkippedClip]]:
    """Leave out every clip the metrics cannot read, and (v2a) generated clips whose reference was left out."""
    streams = streams_needed(cfg.metrics)
    # clips left out while reading the sets (an unreadable sidecar)
    skipped = [SkippedClip(c.name, cid, str(path), reason) for c in systems for cid, path, reason in c.rejected]
    full_reference = reference
    if reference is not None:
        reference, bad = screen_set(reference, streams, strict=cfg.strict)
        skipped += bad
        if not len(reference):
            raise EvalInputError(f"{cfg.reference}: none of its clips can be evaluated:\n" + _listing(skipped))
    kept = []
    for clips in systems:
        clips, bad = screen_set(clips, streams, strict=cfg.strict)
        skipped += bad
        kept.append(clips)
    kept, orphans = _drop_orphans(cfg, kept, full_reference, reference)
    skipped += orphans
    if not any(len(c) for c in kept):
        raise EvalInputError("no generated clip can be evaluated:\n" + _listing(skipped))
    return kept, reference, skipped


def _drop_orphans(cfg: EvalConfig, systems: list[ClipSet], full_reference: ClipSet | None,
                  reference: ClipSet | None) -> tuple[list[ClipSet], list[SkippedClip]]:
    """With v2a or a2v (generated clips paired with reference clips), the generated clips whose
    reference partner was left out, as skipped clips; the systems without them."""
    if cfg.options.task not in ("v2a", "a2v") or full_reference is None or reference is None:
        return systems, []
    gone = {r.id for r in full_reference} - {r.id for r in reference}
    if not gone:
        return systems, []
    kept, orphans = [], []
    for clips in systems:
        try:
            pairs = pair_sets(clips, full_reference, by=cfg.options.pair_by)
        except EvalInputError:
            kept.append(clips)  # clips without any partner are the metric's to report
            continue
        mine = [SkippedClip(clips.name, g.id, str(g.path), f"its reference clip {r.id!r} was skipped")
                for g, r in pairs if r.id in gone]
        orphans += mine
        kept.append(without(clips, {o.id for o in mine}))
    return kept, orphans


def _listing(skipped: list[SkippedClip], limit: int = 20) -> str:
    lines = [f"  {s.system} / {s.id}: {s.reason}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)


def _jobs(jobs: int) -> int:
    return jobs or os.cpu_count() or 1


def _targets(metric: Metric, systems: list[ClipSet], reference: ClipSet | None) -> list[ClipSet]:
    """The sets a metric describes: the systems, and the reference for reference-free metrics."""
    return [*systems, reference] if reference is not None and not metric.needs_reference else list(systems)


def _prefetch(cfg: EvalConfig, systems: list[ClipSet], reference: ClipSet | None, cache: dict[str, Any]) -> None:
    """The metrics' per-clip work computed in `cfg.jobs` processes before they run (eval.parallel)."""
    tasks: list[ClipTask] = []
    for name in cfg.metrics:
        metric = METRICS[name]()
        for clips in _targets(metric, systems, reference):
            if len(clips):
                try:
                    tasks += metric.clip_tasks(clips, reference, cfg.options, cache)
                except (NotApplicable, EvalInputError):
                    continue  # the metric gives its reason when it runs
    start = time.perf_counter()
    done = run_clip_tasks(tasks, cache, _jobs(cfg.jobs), cfg.progress)
    if done:
        print(f"per-clip work: {done} results in {time.perf_counter() - start:.1f} s with {_jobs(cfg.jobs)} processes",
              file=sys.stderr)


def _run_metrics(cfg: EvalConfig, systems: list[ClipSet], reference: ClipSet | None,
                 cache: dict[str, Any], kept: ClipCache) -> list[MetricResult]:
    """Every metric on every usable set; raises `_ClipFailed` when a metric cannot read a clip.

    The per-clip work is written to `kept` after every set, so a rerun resumes where this one stopped.
    """
    opts = cfg.options
    if _jobs(cfg.jobs) > 1:
        _prefetch(cfg, systems, reference, cache)
        kept.save(cache)
    results: list[MetricResult] = []
    for name in cfg.metrics:
        metric = METRICS[name]()
        targets = _targets(metric, systems, reference)
        missing_weights: str | None = None
        for clips in targets:
            if not len(clips):
                results.append(not_computed(name, clips.name, "every clip of this set was skipped (see skipped)",
                                            higher_is_better=metric.higher_is_better))
                continue
            if missing_weights is not None:
                results.append(not_computed(name, clips.name, missing_weights, higher_is_better=metric.higher_is_better))
                continue
            try:
                results.append(metric.evaluate(clips, reference, opts, cache))
                kept.save(cache)
            except WeightsMissing as err:
                missing_weights = str(err)
                results.append(not_computed(name, clips.name, missing_weights, higher_is_better=metric.higher_is_better))
            except NotApplicable as err:
                results.append(not_computed(name, clips.name, str(err), higher_is_better=metric.higher_is_better))
            except EvalInputError as err:
                path = getattr(err, "path", None)
                for owner in (clips, reference):
                    record = find(owner, path) if owner is not None and path is not None else None
                    if owner is not None and record is not None:
                        raise _ClipFailed(owner, record.id, record.path, str(err)) from err
                raise
    return results


def evaluate(cfg: EvalConfig) -> EvalReport:
    """Run the configured metrics, leaving out clips that cannot be read (listed in the report).

    Raises:
        EvalInputError: sets or options that cannot be used, no usable clip, or (with
            `cfg.strict`) the first bad clip; the message says what to do.
    """
    systems, full_reference = _load_sets(cfg)
    conditioning = read_conditioning(cfg.conditioning) if cfg.conditioning else None  # fail before the metrics
    systems, reference, skipped = _screen(cfg, systems, full_reference)
    cache: dict[str, Any] = {"progress": cfg.progress}
    kept = ClipCache(cfg.out, [r.path for c in [*systems, reference] if c is not None for r in c])
    if kept.load_into(cache):
        print(f"reusing {kept.reused} per-clip results of an earlier run in {cfg.out} (their files are unchanged)",
              file=sys.stderr)
    while True:
        try:
            results = _run_metrics(cfg, systems, reference, cache, kept)
            break
        except _ClipFailed as bad:  # passed the screen, failed inside a metric: leave it out, run again
            if cfg.strict:
                raise EvalInputError(f"{bad.clips.name}: clip {bad.record_id!r}: {bad.reason} (stopped at the first "
                                     "bad clip: --strict)", path=bad.path) from None
            skipped.append(SkippedClip(bad.clips.name, bad.record_id, str(bad.path), bad.reason))
            if reference is not None and bad.clips is reference:
                reference = without(reference, {bad.record_id})
                if not len(reference):
                    raise EvalInputError(f"{cfg.reference}: none of its clips can be evaluated:\n"
                                         + _listing(skipped)) from None
                systems, orphans = _drop_orphans(cfg, systems, full_reference, reference)
                skipped += orphans
            systems = [without(c, {bad.record_id}) if c is bad.clips else c for c in systems]
            if not any(len(c) for c in systems):
                raise EvalInputError("no generated clip can be evaluated:\n" + _listing(skipped)) from None
    if conditioning is not None:
        results += to_metric_results(conditioning)
    rows = [s.name for s in systems] + ([reference.name] if reference is not None else [])
    protocol = None
    if cfg.protocol:
        proto = get_protocol(cfg.protocol)
        protocol = {"name": proto.name, "table": proto.table, "dataset": proto.dataset, "metrics": list(proto.metrics),
                    "deviations": protocol_deviations(proto, results, cfg.reference)}
    return EvalReport(systems=rows, reference=reference.name if reference else None, metrics=list(cfg.metrics),
                      results=results, config=cfg.to_dict(), environment=_environment(cfg.options.torch_device()),
                      skipped=skipped, conditioning=conditioning.to_dict() if conditioning else None,
                      protocol=protocol)
