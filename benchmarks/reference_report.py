"""Summarise a finished `avgen demo` run (either profile) into one JSON and a loss-curve plot.

    python benchmarks/reference_report.py runs/demo_gpu --out docs/perf/reference_h100 \
        [--demo-log demo.log ...]

Reads what the demo wrote (summary.json, eval/<task>/report.json, diagnostics/conditioning.json,
dit_<system>/logs/*/metrics.csv) and writes `<out>.json` (per system: event F1 matched and
mismatched at 50 and 100 ms, attribute accuracies with their floors, conditioning gaps, each
verdict; validation losses; routing load per modality and noise level for mixture-of-experts systems; stage
times, parsed from the demo's log when the run was resumed) and `<out>_loss.png` (training and
validation loss per system). Prints a compact table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

_STAGE_LINE = re.compile(r"✓ (\d\. [^\n]*?) in ([0-9.]+) s")


def _metrics(run: Path) -> dict[str, pd.DataFrame]:
    """Each generator's logged metrics; a resumed run's versions (version_0, version_1, ...) joined in order."""
    parts: dict[str, list[pd.DataFrame]] = {}
    for csv in sorted(run.glob("dit_*/logs/version_*/metrics.csv"), key=lambda p: (p.parts[-4], _version(p))):
        parts.setdefault(csv.parts[-4][len("dit_"):], []).append(pd.read_csv(csv))
    return {name: pd.concat(dfs, ignore_index=True) for name, dfs in parts.items()}


def _version(csv: Path) -> int:
    tail = csv.parent.name.rpartition("_")[2]
    return int(tail) if tail.isdigit() else -1


def _last(df: pd.DataFrame, col: str) -> float | None:
    if col not in df:
        return None
    s = df[col].dropna()
    return None if s.empty else round(float(s.iloc[-1]), 4)


def _routing(df: pd.DataFrame) -> dict[str, list[float]] | None:
    """Final share of tokens per expert (the last logged row), for MoE systems: per modality and,
    where logged, per noise-level bucket (t0 = least noise)."""
    groups = sorted({c[len("moe_load_"):].split("/")[0] for c in df.columns if c.startswith("moe_load_")})
    if not {"audio", "video"} <= set(groups):
        return None
    out = {}
    for modality in groups:
        cols = sorted(c for c in df.columns if c.startswith(f"moe_load_{modality}/"))
        row = df[cols].dropna()
        if not row.empty:  # a noise bucket may never have been logged
            out[modality] = [round(float(v), 3) for v in row.iloc[-1]]
    return out


def _stage_times(logs: list[Path]) -> dict[str, float]:
    """Seconds per stage from demo logs (a resumed run prints each stage once, in the call that ran it)."""
    times: dict[str, float] = {}
    for log in logs:
        for name, sec in _STAGE_LINE.findall(log.read_text(errors="replace")):
            times[name.strip()] = float(sec)
    return times


def _event_details(run: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in ("t2av", "v2a", "a2v"):
        path = run / "eval" / task / "report.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        for r in report["results"]:
            if r["metric"] == "events" and r["status"] == "ok":
                x = r["extra"]
                out.setdefault(r["system"], {}).setdefault(task, {}).update({
                    k: (round(v, 4) if isinstance(v, float) else v) for k, v in x.items()
                    if k.startswith(("f1_", "mismatched_f1_", "floor_cleared_", "ratio_")) or k in ("precision", "recall")})
            if r["metric"] == "fad_codec" and r["status"] == "ok":
                out.setdefault(r["system"], {}).setdefault(task, {})["fad_codec"] = {
                    "value": r["value"], "ci": [r["ci_low"], r["ci_high"]]}
            if r["metric"] == "attributes" and r["status"] == "ok" and task == "t2av":
                out.setdefault(r["system"], {})["attributes"] = {
                    name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in a.items()}
                    for name, a in (r["extra"].get("per_attribute") or {}).items()}
        out.setdefault("_environment", report.get("environment"))
    return out


def plot_losses(metrics: dict[str, pd.DataFrame], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, df in metrics.items():
        for ax, col in zip(axes, ("train/loss", "val/loss")):
            if col in df:
                s = df[["step", col]].dropna()
                if not s.empty:
                    ax.plot(s["step"], s[col], marker="o" if col.startswith("val") else None, ms=3, label=name)
    for ax, title in zip(axes, ("training loss (flow matching + aux)", "validation loss")):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the demo's run directory")
    ap.add_argument("--out", type=Path, required=True, help="output prefix: writes <out>.json and <out>_loss.png")
    ap.add_argument("--demo-log", type=Path, action="append", default=[],
                    help="the demo's printed output (repeat for a resumed run) to read stage times from")
    ap.add_argument("--hardware", default="", help="what the run ran on, recorded with the numbers")
    args = ap.parse_args(argv)
    summary_path = args.run / "summary.json"
    if not summary_path.exists():
        print(f"{summary_path} not found: is {args.run} a finished `avgen demo` run directory?", file=sys.stderr)
        return 2
    summary = json.loads(summary_path.read_text())
    metrics = _metrics(args.run)
    details = _event_details(args.run)
    env = details.pop("_environment", None)
    systems = {}
    for name, df in metrics.items():
        systems[name] = {
            "steps": int(df["step"].max()) if "step" in df and df["step"].notna().any() else 0,
            "val_loss": _last(df, "val/loss"), "val_loss_audio": _last(df, "val/loss_audio"),
            "val_loss_video": _last(df, "val/loss_video"), "routing_load": _routing(df),
            **details.get(name, {}),
        }
    stages = _stage_times(args.demo_log) or {s["stage"]: s["seconds"] for s in summary["stages"] if not s["kept"]}
    out = {"profile": summary.get("profile"), "hardware": args.hardware, "environment": env,
           "stage_seconds": stages, "total_seconds": round(sum(v for k, v in stages.items() if k != "total"), 1),
           "systems": systems, "claims": summary["claims"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(out, indent=1) + "\n")
    png = plot_losses(metrics, args.out.parent / f"{args.out.name}_loss.png")
    print(f"{'system':<10} {'steps':>5} {'val loss':>8}  verdicts learned / claims")
    for name, s in systems.items():
        mine = [c for c in summary["claims"] if c["system"] == name]
        print(f"{name:<10} {s['steps']:>5} {s['val_loss'] if s['val_loss'] is not None else '-':>8}  "
              f"{sum(c['verdict'] == 'learned' for c in mine)} / {len(mine)}")
    print(f"stages: {stages}")
    print(f"wrote {json_path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
