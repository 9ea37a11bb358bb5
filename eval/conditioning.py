"""Conditioning-sensitivity results (`conditioning.json`): schema, reader, writer, table and plot.

`avgen diagnose` (in `av_model`) measures, per generator and noise level t, the flow-matching loss
of each clip given its own condition and given another clip's, and writes this file; `avgen eval
--conditioning FILE` reads it into its report. The schema lives here, below both, so the writer
and the reader cannot drift apart.

Schema (format "avgen-conditioning", version 1):

    {"format": "avgen-conditioning", "version": 1, "created": ISO time,
     "cache": cache dir, "split": split, "t_grid": [0.1, ...], "seed": int, "n_boot": int, "level": 0.95,
     "systems": [{"name": str, "checkpoint": path, "sha256": str, "clips": int, "left_out": [clip ids],
                  "rows": [ROW, ...]}]}

    ROW: {"task": "v2a" | "a2v" | "text", "modality": "audio" | "video", "t": float or "all" (the
          per-clip mean over the grid), "n": clips, "own", "own_ci_low", "own_ci_high", "wrong",
          "wrong_ci_low", "wrong_ci_high", "gap", "gap_ci_low", "gap_ci_high"}

`to_frame` (and conditioning.csv) adds a "system" column: the rows `eval.claims.conditioning_claims` takes.

`own`/`wrong` are mean squared velocity errors (lower is better), `gap` = wrong - own, each with a
percentile bootstrap interval over clips (null when not finite). A positive gap whose interval
excludes 0 says the model uses that condition.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from eval.reader import EvalInputError

__all__ = ["FORMAT", "ConditioningFile", "ConditioningSystem", "conditioning_section", "gap_name", "plot_gaps",
           "read_conditioning", "to_frame", "to_metric_results", "write_conditioning"]

FORMAT, VERSION = "avgen-conditioning", 1
TASK_MODALITIES = (("v2a", "audio"), ("a2v", "video"), ("text", "audio"), ("text", "video"))
ROW_NUMBERS = ("own", "own_ci_low", "own_ci_high", "wrong", "wrong_ci_low", "wrong_ci_high", "gap", "gap_ci_low",
               "gap_ci_high")
COLUMNS = ("system", "task", "modality", "t", "n", *ROW_NUMBERS)


def gap_name(task: str, modality: str, t: float | str | None) -> str:
    """Metric name of a gap: v2a_gap@t0.9, a2v_gap@t0.6, text_gap_audio@t0.6; without "@t" for the grid mean."""
    base = f"text_gap_{modality}" if task == "text" else f"{task}_gap"
    return base if t is None or t == "all" else f"{base}@t{float(t):g}"


@dataclass
class ConditioningSystem:
    """One generator's rows (see the schema)."""

    name: str
    checkpoint: str
    sha256: str
    clips: int
    rows: list[dict[str, Any]]
    left_out: list[str] = field(default_factory=list)


@dataclass
class ConditioningFile:
    """A whole `conditioning.json`."""

    systems: list[ConditioningSystem]
    t_grid: list[float]
    cache: str = ""
    split: str = ""
    seed: int = 0
    n_boot: int = 0
    level: float = 0.95
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "created": self.created, "cache": self.cache,
                "split": self.split, "t_grid": self.t_grid, "seed": self.seed, "n_boot": self.n_boot,
                "level": self.level,
                "systems": [{"name": s.name, "checkpoint": s.checkpoint, "sha256": s.sha256, "clips": s.clips,
                             "left_out": s.left_out, "rows": s.rows} for s in self.systems]}


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_conditioning(data: ConditioningFile, out_dir: str | Path) -> dict[str, Path]:
    """Write conditioning.json and conditioning.csv (one row per system/task/modality/t) into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not data.created:
        data.created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    for s in data.systems:
        s.rows = [{k: _finite_or_none(v) for k, v in r.items()} for r in s.rows]
    paths = {"json": out / "conditioning.json", "csv": out / "conditioning.csv"}
    paths["json"].write_text(json.dumps(data.to_dict(), indent=2), encoding="utf-8")
    to_frame(data).to_csv(paths["csv"], index=False)
    return paths


def read_conditioning(path: str | Path) -> ConditioningFile:
    """Read and check a `conditioning.json`.

    Raises:
        EvalInputError: a missing or unreadable file, another format, or rows missing fields.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise EvalInputError(f"{p}: no such conditioning file; write one with `avgen diagnose --out DIR`.") from err
    except (OSError, ValueError) as err:
        raise EvalInputError(f"{p}: cannot read it as JSON ({err}).") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise EvalInputError(f"{p}: not a conditioning file (format {raw.get('format') if isinstance(raw, dict) else None!r}, "
                             f"expected {FORMAT!r}); `avgen diagnose` writes them.")
    if raw.get("version") != VERSION:
        raise EvalInputError(f"{p}: conditioning format version {raw.get('version')!r}; this reader knows {VERSION}.")
    systems = raw.get("systems")
    if not isinstance(systems, list) or not systems:
        raise EvalInputError(f"{p}: the file lists no systems.")
    for i, s in enumerate(systems):
        rows = s.get("rows") if isinstance(s, dict) else None
        if not isinstance(rows, list) or "name" not in s:
            raise EvalInputError(f"{p}: systems[{i}] needs a name and a list of rows.")
        for j, r in enumerate(rows):
            missing = [k for k in ("task", "modality", "t", "n", *ROW_NUMBERS) if k not in r]
            if missing:
                raise EvalInputError(f"{p}: systems[{i}].rows[{j}] lacks {missing}.")
    return _from_dict(raw)


def to_frame(data: ConditioningFile) -> pd.DataFrame:
    """One row per system, task, modality and t (t "all": the grid mean)."""
    rows = [{"system": s.name, **{k: r.get(k) for k in COLUMNS if k != "system"}} for s in data.systems
            for r in s.rows]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def to_metric_results(data: ConditioningFile) -> list[Any]:
    """The gaps as `MetricResult`s named `cond/<gap_name>` (value gap, interval, n clips), for eval reports."""
    from eval.metrics.base import MetricResult

    out = []
    for s in data.systems:
        for r in s.rows:
            out.append(MetricResult(
                metric=f"cond/{gap_name(r['task'], r['modality'], r['t'])}", system=s.name, value=r["gap"],
                ci_low=r["gap_ci_low"], ci_high=r["gap_ci_high"], higher_is_better=True, n_generated=int(r["n"]),
                preprocessing={"source": "avgen diagnose", "split": data.split, "seed": data.seed},
                weights={"checkpoint": s.sha256},
                extra={"own": r["own"], "wrong": r["wrong"], "own_ci": [r["own_ci_low"], r["own_ci_high"]],
                       "wrong_ci": [r["wrong_ci_low"], r["wrong_ci_high"]]},
            ))
    return out


def plot_gaps(data: ConditioningFile, path: str | Path | None = None) -> Any:
    """Gap against t, one panel per task and modality, one line per system, interval error bars.

    Returns the matplotlib figure (saved as PNG at `path` when given, then closed).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASK_MODALITIES), figsize=(4 * len(TASK_MODALITIES), 3.2), squeeze=False)
    for ax, (task, mod) in zip(axes[0], TASK_MODALITIES):
        for k, s in enumerate(data.systems):
            rows = sorted((r for r in s.rows if r["task"] == task and r["modality"] == mod and r["t"] != "all"
                           and r["gap"] is not None), key=lambda r: float(r["t"]))
            if not rows:
                continue
            t = [float(r["t"]) + 0.006 * (k - (len(data.systems) - 1) / 2) for r in rows]  # dodge overlapping bars
            gap = [r["gap"] for r in rows]
            lo = [g - (r["gap_ci_low"] if r["gap_ci_low"] is not None else g) for g, r in zip(gap, rows)]
            hi = [(r["gap_ci_high"] if r["gap_ci_high"] is not None else g) - g for g, r in zip(gap, rows)]
            ax.errorbar(t, gap, yerr=[lo, hi], marker="o", ms=4, capsize=3, label=s.name)
        ax.axhline(0.0, color="#888", lw=0.8, ls="--")
        ax.set_title(f"{task}: {mod} loss")
        ax.set_xlabel("noise level t")
    axes[0, 0].set_ylabel("gap = loss(wrong) - loss(own)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig


def conditioning_section(raw: dict[str, Any] | None, png: Any) -> str:
    """The report.html section of a conditioning file: a table of gaps per system, task and t, and the plot.

    Args:
        raw: `ConditioningFile.to_dict()` as kept in the report (None: no section).
        png: figure -> base64 PNG (the report's encoder, which closes the figure).
    """
    if not raw:
        return ""
    import html

    data = _from_dict(raw)
    esc = html.escape

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}"

    def gap(r: dict[str, Any]) -> str:
        text = f"{num(r['gap'])} [{num(r['gap_ci_low'])}, {num(r['gap_ci_high'])}]"
        return f"<b>{text}</b>" if r["gap_ci_low"] is not None and r["gap_ci_low"] > 0 else text

    body = "".join(
        f"<tr><td>{esc(s.name)}</td><td>{esc(str(r['task']))}</td><td>{esc(str(r['modality']))}</td>"
        f"<td>{esc(str(r['t']))}</td><td>{r['n']}</td><td>{num(r['own'])}</td><td>{num(r['wrong'])}</td>"
        f"<td>{gap(r)}</td></tr>"
        for s in data.systems for r in s.rows)
    return (f"<h2>Conditioning gaps</h2><p>Denoising loss given another clip's condition minus the loss given the "
            f"clip's own (split {esc(data.split)}, seed {data.seed}); bold: the interval excludes 0, the model uses "
            f"that condition. See docs/metrics.md.</p>"
            f"<table><tr><th>system</th><th>task</th><th>loss</th><th>t</th><th>n</th><th>own</th><th>wrong</th>"
            f"<th>gap [95% CI]</th></tr>{body}</table>"
            f"<figure><img src='data:image/png;base64,{png(plot_gaps(data))}'/>"
            f"<figcaption>conditioning gap against noise level</figcaption></figure>")


def _from_dict(raw: dict[str, Any]) -> ConditioningFile:
    systems = [ConditioningSystem(name=s["name"], checkpoint=s.get("checkpoint", ""), sha256=s.get("sha256", ""),
                                  clips=int(s.get("clips", 0)), rows=list(s["rows"]), left_out=list(s.get("left_out") or []))
               for s in raw["systems"]]
    return ConditioningFile(systems=systems, t_grid=list(raw.get("t_grid") or []), cache=str(raw.get("cache", "")),
                            split=str(raw.get("split", "")), seed=int(raw.get("seed", 0)),
                            n_boot=int(raw.get("n_boot", 0)), level=float(raw.get("level", 0.95)),
                            created=str(raw.get("created", "")))
