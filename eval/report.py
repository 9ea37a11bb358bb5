"""Reports of an evaluation: a terminal table (rich), CSV, JSON and a self-contained HTML page.

The table has a row per system and a column per metric ("value [low, high]"); metrics that were
not computed show "not computed" with their reasons listed under the table. The HTML page embeds
its plots as base64 PNGs (matplotlib), so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from eval.attribute_panel import attribute_section  # noqa: E402
from eval.conditioning import conditioning_section  # noqa: E402
from eval.metrics import METRICS  # noqa: E402
from eval.metrics.base import MetricResult  # noqa: E402
from eval.runner import EvalReport  # noqa: E402

__all__ = ["format_value", "print_table", "to_frame", "write_csv", "write_json", "write_html", "write_report"]

_SCALAR = (int, float, str, bool, type(None))


def format_value(v: float | None) -> str:
    """A number with a sensible number of digits."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    a = abs(v)
    if 0 < a < 1e-3:
        return f"{v:.2e}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _cell(r: MetricResult | None, sep: str = " ") -> str:
    if r is None:
        return ""
    if not r.ok:
        return "not computed"
    ci = f"{sep}[{format_value(r.ci_low)}, {format_value(r.ci_high)}]" if r.ci_low is not None \
        and r.ci_high is not None and math.isfinite(r.ci_low) and math.isfinite(r.ci_high) else ""
    return f"{format_value(r.value)}{ci}"


def _note(r: MetricResult | None) -> str:
    """A third line for metrics whose secondary number matters as much (the audio lag)."""
    out = ""
    if r is not None and r.ok and r.metric == "events":
        lag = r.extra.get("offset_ms")
        if isinstance(lag, float) and math.isfinite(lag):
            out += f"\nlag {lag:+.0f} ms"
    floor = r.extra.get("floor") if r is not None and r.ok else None
    if isinstance(floor, float) and math.isfinite(floor):
        out += f"\nfloor {format_value(floor)}"
    return out


def _header(metric: str) -> str:
    cls = METRICS.get(metric)
    arrow = {True: " ↑", False: " ↓", None: ""}[cls.higher_is_better] if cls else ""
    return f"{metric}{arrow}"


def _reasons(report: EvalReport) -> list[str]:
    seen: dict[tuple[str, str], list[str]] = {}
    for r in report.results:
        if not r.ok:
            seen.setdefault((r.metric, r.reason or ""), []).append(r.system)
    return [f"{m} ({', '.join(systems)}): not computed: {reason}" for (m, reason), systems in seen.items()]


def print_table(report: EvalReport, console: Console | None = None) -> None:
    """Print the results table and the reasons of metrics not computed."""
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    # Columns with no number for any system are left out of the table; their reasons follow it.
    shown = [m for m in report.metrics if any((r := report.get(s, m)) is not None and r.ok for s in report.systems)]
    table = Table(title="Automatic metrics (value, 95% bootstrap interval)" if shown else "No metric was computed")
    table.add_column("system", style="bold")
    for m in shown:
        table.add_column(_header(m), justify="right")
    for s in report.systems:
        label = f"{s} (reference)" if s == report.reference and "(reference)" not in s else s
        table.add_row(label, *[_cell(report.get(s, m), sep="\n") + _note(report.get(s, m)) for m in shown])
    if shown:
        console.print(table)
    else:
        console.print(f"[bold]{table.title}[/bold]")
    for line in _reasons(report):
        console.print(f"[yellow]{line}[/yellow]")
    for line in _protocol_lines(report):
        console.print(f"[cyan]{line}[/cyan]")


def to_frame(report: EvalReport) -> pd.DataFrame:
    """One row per (system, metric) with every scalar field and scalar extra (`extra.<name>`)."""
    rows = []
    for r in report.results:
        row: dict[str, Any] = {
            "system": r.system, "metric": r.metric, "status": r.status, "value": r.value,
            "ci_low": r.ci_low, "ci_high": r.ci_high, "higher_is_better": r.higher_is_better,
            "n_generated": r.n_generated, "n_reference": r.n_reference,
            "weights": json.dumps(r.weights, sort_keys=True), "preprocessing": json.dumps(r.preprocessing, sort_keys=True),
            "reason": r.reason,
        }
        row.update({f"extra.{k}": v for k, v in r.extra.items() if isinstance(v, _SCALAR)})
        rows.append(row)
    return pd.DataFrame(rows)


def write_csv(report: EvalReport, path: str | Path) -> Path:
    p = Path(path)
    to_frame(report).to_csv(p, index=False)
    return p


def write_json(report: EvalReport, path: str | Path) -> Path:
    p = Path(path)
    p.write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    return p


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(report: EvalReport) -> list[tuple[str, str]]:
    """(caption, base64 png) for each plot."""
    plots: list[tuple[str, str]] = []
    for m in report.metrics:
        res = [report.get(s, m) for s in report.systems]
        ok = [r for r in res if r is not None and r.ok and r.value is not None and math.isfinite(r.value)]
        if not ok:
            continue
        fig, axes = plt.subplots(1, 2 if any(r.per_clip for r in ok) else 1, figsize=(9, 3.2), squeeze=False)
        ax = axes[0, 0]
        vals = np.array([r.value for r in ok], float)
        lo = np.array([r.ci_low if r.ci_low is not None and math.isfinite(r.ci_low) else r.value for r in ok], float)
        hi = np.array([r.ci_high if r.ci_high is not None and math.isfinite(r.ci_high) else r.value for r in ok], float)
        ax.bar(range(len(ok)), vals, yerr=np.abs(np.stack([vals - lo, hi - vals])), capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(ok)), [r.system for r in ok], rotation=20, ha="right")
        ax.set_title(f"{_header(m)} (bars: 95% CI)")
        if axes.shape[1] > 1:
            ax2 = axes[0, 1]
            data = [np.array([v for v in r.per_clip.values() if v is not None and math.isfinite(v)]) for r in ok]
            ax2.boxplot(data, tick_labels=[r.system for r in ok])
            ax2.set_title(f"{m}: per clip")
            ax2.tick_params(axis="x", rotation=20)
        plots.append((f"{m}", _png(fig)))
        if m == "events":
            fig, ax = plt.subplots(figsize=(6, 3))
            for r in ok:
                offs = r.extra.get("offsets_ms") or []
                if offs:
                    ax.hist(offs, bins=30, alpha=0.5, label=f"{r.system} (median {format_value(r.extra.get('offset_ms'))} ms)")
            ax.set_xlabel("audio onset - event (ms); positive: audio late")
            ax.legend(fontsize=8)
            plots.append(("events: onset offsets", _png(fig)))
        if any("fd_inf_ns" in r.extra for r in ok):
            fig, ax = plt.subplots(figsize=(6, 3))
            for r in ok:
                if "fd_inf_ns" in r.extra:
                    x = 1.0 / np.asarray(r.extra["fd_inf_ns"], float)
                    ax.plot(x, r.extra["fd_inf_fds"], "o", ms=3, label=f"{r.system}: FD-inf {format_value(r.extra['fd_inf'])}")
            ax.set_xlabel("1 / n clips")
            ax.set_ylabel(m)
            ax.legend(fontsize=8)
            plots.append((f"{m}: FD at subset sizes (intercept = FD-infinity)", _png(fig)))
    return plots


def _fmt_ci(lo: Any, hi: Any) -> str:
    ok = all(isinstance(v, int | float) and math.isfinite(v) for v in (lo, hi))
    return f" [{format_value(lo)}, {format_value(hi)}]" if ok else ""


def _floors_html(report: EvalReport) -> str:
    """Every sync score beside the same system's mismatched-pair floor, with intervals."""
    esc = html.escape
    rows = []
    for r in report.results:
        if not r.ok or "floor" not in r.extra:
            continue
        e = r.extra
        arrow = {True: "↑", False: "↓", None: ""}[r.higher_is_better]
        cleared = "yes" if e.get("floor_cleared") else "no"
        rows.append(
            f"<tr><td>{esc(r.system)}</td><td>{esc(r.metric)} {arrow}</td>"
            f"<td>{esc(format_value(r.value) + _fmt_ci(r.ci_low, r.ci_high))}</td>"
            f"<td>{esc(format_value(e.get('floor')) + _fmt_ci(e.get('floor_ci_low'), e.get('floor_ci_high')))}</td>"
            f"<td>{esc(_fmt_ci(e.get('gap_ci_low'), e.get('gap_ci_high')).strip() or '-')}</td>"
            f"<td>{cleared}</td><td>{e.get('floor_pairs', '')}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Synchrony beside the mismatched-pair floor</h2><p>The floor is the same score on the same "
            "system's mismatched pairs (clip i's video with clip j's audio). A score is above its floor only where "
            "its interval lies wholly on the better side of the floor's interval (column 'cleared'); the gap "
            "interval comes from the same bootstrap resamples of clips.</p><table><tr><th>system</th><th>metric</th>"
            "<th>matched [95% CI]</th><th>floor [95% CI]</th><th>gap CI</th><th>cleared</th><th>pairs</th></tr>"
            + "".join(rows) + "</table>")


def _protocol_lines(report: EvalReport) -> list[str]:
    proto = getattr(report, "protocol", None)
    if not proto:
        return []
    return [f"protocol {proto['name']}: {proto['table']}"] + [f"deviation: {d}" for d in proto["deviations"]]


def _protocol_html(report: EvalReport) -> str:
    proto = getattr(report, "protocol", None)
    if not proto:
        return ""
    esc = html.escape
    items = "".join(f"<li>{esc(d)}</li>" for d in proto["deviations"])
    return (f"<h2>Protocol: {esc(proto['name'])}</h2><p>Meant to sit beside: {esc(proto['table'])}. Metrics: "
            f"{esc(', '.join(proto['metrics']))}.</p><p>Deviations from the published protocol (a number is "
            f"comparable with the table only where none of these touches it):</p><ul>{items}</ul>")


def _skipped_html(report: EvalReport) -> str:
    """The clips left out of every number (unreadable, without a needed stream), with reasons."""
    skipped = getattr(report, "skipped", [])
    if not skipped:
        return ""
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(c.system)}</td><td>{esc(c.id)}</td><td style='text-align:left'>{esc(c.reason)}</td></tr>"
                   for c in skipped)
    return (f"<h2>Skipped clips ({len(skipped)})</h2><p>Left out of every metric above.</p>"
            f"<table><tr><th>system</th><th>clip</th><th>reason</th></tr>{rows}</table>")


def write_html(report: EvalReport, path: str | Path) -> Path:
    """A self-contained page: the table, the reasons, per-metric details and the plots."""
    p = Path(path)
    esc = html.escape
    head = "".join(f"<th>{esc(_header(m))}</th>" for m in report.metrics)
    body = "".join(
        f"<tr><th>{esc(s)}</th>" + "".join(f"<td>{esc(_cell(report.get(s, m)))}</td>" for m in report.metrics) + "</tr>"
        for s in report.systems
    )
    reasons = "".join(f"<li>{esc(line)}</li>" for line in _reasons(report))
    details = []
    for r in report.results:
        if not r.ok:
            continue
        extra = {k: v for k, v in r.extra.items() if isinstance(v, _SCALAR)}
        details.append(
            f"<tr><td>{esc(r.system)}</td><td>{esc(r.metric)}</td><td>{r.n_generated}</td>"
            f"<td>{'' if r.n_reference is None else r.n_reference}</td><td>{esc(json.dumps(r.weights))}</td>"
            f"<td><code>{esc(json.dumps(r.preprocessing))}</code></td><td><code>{esc(json.dumps(extra, default=str))}</code></td></tr>"
        )
    imgs = "".join(f"<figure><img src='data:image/png;base64,{b64}'/><figcaption>{esc(cap)}</figcaption></figure>"
                   for cap, b64 in _plots(report))
    env = esc(json.dumps(report.environment))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;font-size:14px}} code{{font-size:11px;white-space:pre-wrap}}
figure{{display:inline-block;margin:0.5em}}</style></head><body>
<h1>Evaluation report</h1>
<p>Values with 95% bootstrap intervals; ↑ higher is better, ↓ lower is better.</p>
<table><tr><th>system</th>{head}</tr>{body}</table>
<ul>{reasons}</ul>
{_protocol_html(report)}
{_floors_html(report)}
{_skipped_html(report)}
<h2>Plots</h2>{imgs}
{conditioning_section(report.conditioning, _png)}
{attribute_section(report, p.parent, _png)}
<h2>Details: samples, preprocessing, weights</h2>
<table><tr><th>system</th><th>metric</th><th>n</th><th>n ref</th><th>weights</th><th>preprocessing</th><th>extra</th></tr>
{''.join(details)}</table>
<h2>Environment</h2><p><code>{env}</code></p>
<h2>Configuration</h2><pre>{esc(json.dumps(report.config, indent=2, default=str))}</pre>
</body></html>"""
    p.write_text(page, encoding="utf-8")
    return p


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Write report.csv, report.json and report.html into `out_dir` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"csv": write_csv(report, out / "report.csv"), "json": write_json(report, out / "report.json"),
            "html": write_html(report, out / "report.html")}
