"""Quality claims that can fail: each figure beside the floor a model ignoring its condition gets.

A claim ("the moe system's video-to-audio sound follows its video at 50 ms") is shown only where
the matched figure's interval lies wholly above its floor's interval:

- event sync: F1 of each clip's audio against its own events, beside the same audio against every
  other clip's events (`eval.metrics.sync.event_floor`), at 50 and 100 ms;
- prompt following: attribute accuracy against the clip's own caption, beside the accuracy of the
  same predictions against other clips' captions (the `attributes` metric);
- conditioning: the denoising loss given another clip's condition minus the loss given its own
  (`avgen diagnose`), beside zero.

The data's own figure (the reference row of the same report) is the ceiling shown with each claim.
Claims are read from report.json files, so they can be drawn for any finished evaluation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AUTOENCODER", "Claim", "attribute_claims", "conditioning_claims", "event_claims", "load_report"]

# A set of the reference clips passed through the video autoencoder (`avgen vae reconstruct`; the demo
# also passes their sound through the audio codec): not a claim but a second ceiling, the most a
# generator that decodes with them can score.
AUTOENCODER = "autoencoder"

Interval = tuple[float, float]
_NAN_CI: Interval = (float("nan"), float("nan"))


@dataclass(frozen=True)
class Claim:
    """One figure against its floor.

    Attributes:
        task: "t2av", "v2a", "a2v" or "text".
        system: the system's name.
        claim: what is claimed, in words.
        figure, ci: the matched figure and its interval.
        floor, floor_ci: what a model ignoring the condition gets, and its interval.
        ceiling: the data's own figure (None where there is none).
        autoencoder: the figure of the data through the video autoencoder (None where not measured).
    """

    task: str
    system: str
    claim: str
    figure: float
    ci: Interval
    floor: float
    floor_ci: Interval
    ceiling: float | None = None
    autoencoder: float | None = None

    @property
    def shown(self) -> bool:
        """True when the figure's interval lies wholly above the floor's (intervals must exist)."""
        lo, floor_hi = self.ci[0], self.floor_ci[1]
        return math.isfinite(lo) and math.isfinite(floor_hi) and lo > floor_hi

    @property
    def verdict(self) -> str:
        if self.shown:
            return "learned"
        if not (math.isfinite(self.ci[0]) and math.isfinite(self.floor_ci[1])):
            return "not shown (no interval: too few clips)"
        return "not shown: overlaps its floor"


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json written by `avgen eval` (`EvalReport.to_dict`)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{p}: not a readable report.json ({err}); run `avgen eval --out DIR` to write one.") from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{p}: not a report.json of `avgen eval` (no 'results' list).")
    return data


def _ok_results(report: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    return [r for r in report["results"] if r.get("metric") == metric and r.get("status") == "ok"]


def event_claims(report: dict[str, Any], task: str, tags: tuple[str, ...] = ("50ms", "100ms")) -> list[Claim]:
    """Sync claims of every generated system of a report: matched event F1 against the mismatched floor."""
    reference = report.get("reference")
    rows = _ok_results(report, "events")
    ceiling = {tag: _num(r["extra"].get(f"f1_{tag}")) for r in rows if r["system"] == reference for tag in tags}
    through = {tag: _num(r["extra"].get(f"f1_{tag}")) for r in rows if r["system"] == AUTOENCODER for tag in tags}
    claims = []
    for r in rows:
        if r["system"] in (reference, AUTOENCODER):
            continue
        x = r.get("extra") or {}
        for tag in tags:
            if f"f1_{tag}" not in x:
                continue
            claims.append(Claim(
                task=task, system=r["system"], claim=f"sync: event F1 @{tag.replace('ms', ' ms')}",
                figure=_num(x[f"f1_{tag}"]), ci=(_num(x.get(f"f1_{tag}_ci_low")), _num(x.get(f"f1_{tag}_ci_high"))),
                floor=_num(x.get(f"mismatched_f1_{tag}")),
                floor_ci=(_num(x.get(f"mismatched_f1_{tag}_ci_low")), _num(x.get(f"mismatched_f1_{tag}_ci_high"))),
                ceiling=ceiling.get(tag), autoencoder=through.get(tag),
            ))
    return claims


def attribute_claims(report: dict[str, Any], task: str, attributes: tuple[str, ...] | None = None) -> list[Claim]:
    """Prompt-following claims: per-attribute accuracy against the shuffled-caption floor.

    Reads the `attributes` metric's `extra["per_attribute"]`: attribute -> {"accuracy", "ci_low",
    "ci_high", "floor", "floor_ci_low", "floor_ci_high", ...}; the reference row gives the ceiling.
    """
    reference = report.get("reference")
    rows = _ok_results(report, "attributes")
    def accuracies(system: str | None) -> dict[str, float]:
        return {name: _num(a.get("accuracy")) for r in rows if r["system"] == system
                for name, a in ((r.get("extra") or {}).get("per_attribute") or {}).items()}

    ceiling, through = accuracies(reference), accuracies(AUTOENCODER)
    claims = []
    for r in rows:
        if r["system"] in (reference, AUTOENCODER):
            continue
        for name, a in ((r.get("extra") or {}).get("per_attribute") or {}).items():
            if attributes is not None and name not in attributes:
                continue
            claims.append(Claim(
                task=task, system=r["system"], claim=f"prompt: {name} accuracy",
                figure=_num(a.get("accuracy")), ci=(_num(a.get("ci_low")), _num(a.get("ci_high"))),
                floor=_num(a.get("floor")), floor_ci=(_num(a.get("floor_ci_low")), _num(a.get("floor_ci_high"))),
                ceiling=ceiling.get(name), autoencoder=through.get(name),
            ))
    return claims


def conditioning_claims(rows: list[dict[str, Any]], t: float | None = None) -> list[Claim]:
    """Conditioning claims from `avgen diagnose` rows: the loss gap (wrong - own condition) against 0.

    Args:
        rows: dicts with "system", "task", "modality", "t", "gap", "gap_ci_low", "gap_ci_high".
        t: keep only this noise level (None: every level).
    """
    claims = []
    for r in rows:
        if t is not None and not math.isclose(_num(r.get("t")), t):
            continue
        cond = {"v2a": "the video", "a2v": "the audio", "text": "the caption"}.get(str(r.get("task")), str(r.get("task")))
        at = "mean over t" if r.get("t") == "all" else f"t={_num(r.get('t')):g}"
        claims.append(Claim(
            task=str(r.get("task")), system=str(r.get("system")),
            claim=f"uses {cond}: {r.get('modality')} loss gap, {at}",
            figure=_num(r.get("gap")), ci=(_num(r.get("gap_ci_low")), _num(r.get("gap_ci_high"))),
            floor=0.0, floor_ci=(0.0, 0.0),
        ))
    return claims
