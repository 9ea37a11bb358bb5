"""Run metrics over one or more generated sets against a reference set.

`evaluate(EvalConfig) -> EvalReport`: loads the sets, runs every requested metric on every system
(and the reference-free metrics on the reference set too, as a row to compare with), and turns
missing weights or inapplicable metrics into "not computed" rows with their reason.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from eval.features.weights import WeightPaths, WeightsMissing
from eval.metrics import DEFAULT_METRICS, METRICS
from eval.metrics.base import MetricOptions, MetricResult, NotApplicable, not_computed
from eval.reader import EvalInputError
from eval.sets import ClipSet, load_set

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
        options: metric options.
    """

    generated: list[str] = field(default_factory=list)
    reference: str | None = None
    reference_split: str | None = None
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    out: str | None = None
    max_clips: int | None = None
    progress: bool = True
    options: MetricOptions = field(default_factory=MetricOptions)

    def __post_init__(self) -> None:
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
    """

    systems: list[str]
    reference: str | None
    metrics: list[str]
    results: list[MetricResult]
    config: dict[str, Any]
    environment: dict[str, Any]

    def get(self, system: str, metric: str) -> MetricResult | None:
        for r in self.results:
            if r.system == system and r.metric == metric:
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"systems": self.systems, "reference": self.reference, "metrics": self.metrics,
                "results": [r.to_dict() for r in self.results], "config": self.config,
                "environment": self.environment}


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
        systems.append(load_set(path, name=name).limit(cfg.max_clips))
    names = [s.name for s in systems]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise EvalInputError(f"several systems are named {sorted(dup)}; name them with --generated NAME=DIR.")
    reference = None
    if cfg.reference:
        reference = load_set(cfg.reference, split=cfg.reference_split).limit(cfg.max_clips)
        if reference.name in names:
            reference.name = f"{reference.name} (reference)"
    elif cfg.reference_split:
        raise EvalInputError("--reference-split needs --reference.")
    return systems, reference


def evaluate(cfg: EvalConfig) -> EvalReport:
    """Run the configured metrics.

    Raises:
        EvalInputError: sets or files that cannot be used (the message says what to do).
    """
    systems, reference = _load_sets(cfg)
    opts = cfg.options
    cache: dict[str, Any] = {"progress": cfg.progress}
    results: list[MetricResult] = []
    for name in cfg.metrics:
        metric = METRICS[name]()
        targets = list(systems)
        if reference is not None and not metric.needs_reference:
            targets.append(reference)  # reference-free metrics also describe the reference
        missing_weights: str | None = None
        for clips in targets:
            if missing_weights is not None:
                results.append(not_computed(name, clips.name, missing_weights, higher_is_better=metric.higher_is_better))
                continue
            try:
                results.append(metric.evaluate(clips, reference, opts, cache))
            except WeightsMissing as err:
                missing_weights = str(err)
                results.append(not_computed(name, clips.name, missing_weights, higher_is_better=metric.higher_is_better))
            except NotApplicable as err:
                results.append(not_computed(name, clips.name, str(err), higher_is_better=metric.higher_is_better))
    rows = [s.name for s in systems] + ([reference.name] if reference is not None else [])
    return EvalReport(systems=rows, reference=reference.name if reference else None, metrics=list(cfg.metrics),
                      results=results, config=cfg.to_dict(), environment=_environment(opts.torch_device()))
