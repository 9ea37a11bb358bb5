"""The demo's summary: every claim beside the floor a model ignoring its condition gets.

Reads what the demo's stages wrote (eval/<task>/report.json, the conditioning diagnostics) and
prints, per system and task, the matched figure and its floor with intervals, the data's own
ceiling, and a verdict that says "learned" only where the intervals do not overlap
(`eval.claims`). It also writes `summary.json` under the run directory, so a run's figures can be
compared with other runs and committed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from eval.claims import Claim, attribute_claims, conditioning_claims, event_claims, load_report

__all__ = ["claims_of_run", "print_claims", "write_summary"]

TASKS = ("t2av", "v2a", "a2v")


def _conditioning_rows(run: Path) -> list[dict[str, Any]]:
    """Rows of `avgen diagnose` averaged over the noise grid (one claim per system, task and modality)."""
    from eval.conditioning import read_conditioning, to_frame

    path = run / "diagnostics" / "conditioning.json"
    if not path.exists():
        return []
    frame = to_frame(read_conditioning(path))
    return [r for r in frame.to_dict("records") if r.get("t") == "all"]


def claims_of_run(run: Path, problems: list[str] | None = None) -> list[Claim]:
    """Every claim the run's reports support: sync per task, attributes, conditioning gaps.

    Args:
        run: the demo's run directory.
        problems: receives one line per report that could not be read; it is left out, so one
            damaged file does not hide the other claims at the end of a long run.
    """
    claims: list[Claim] = []
    for task in TASKS:
        path = run / "eval" / task / "report.json"
        if not path.exists():
            continue
        try:
            report = load_report(path)
        except ValueError as err:
            if problems is not None:
                problems.append(str(err))
            continue
        claims += event_claims(report, task)
        if task == "t2av":
            claims += attribute_claims(report, task)
    try:
        claims += conditioning_claims(_conditioning_rows(run))
    except ValueError as err:  # EvalInputError: a damaged conditioning.json
        if problems is not None:
            problems.append(str(err))
    return claims


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _interval(ci: tuple[float, float]) -> str:
    return "" if not all(math.isfinite(v) for v in ci) else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def print_claims(claims: list[Claim], console: Console) -> None:
    """One table: task, system, claim, figure [CI], floor [CI], data ceiling, verdict."""
    if not claims:
        console.print("[yellow]No evaluation report to judge (stage 8 wrote none).[/yellow]")
        return
    table = Table(title="Did the models learn? Each figure against the floor a model ignoring its condition gets")
    with_ae = any(c.autoencoder is not None for c in claims)
    for col in ("task", "system", "claim", "figure [95% CI]", "floor [95% CI]", "data",
                *(("data via AE",) if with_ae else ()), "verdict"):
        table.add_column(col)
    for c in claims:
        style = "green" if c.shown else "yellow"
        table.add_row(c.task, c.system, c.claim, _fmt(c.figure) + _interval(c.ci),
                      _fmt(c.floor) + _interval(c.floor_ci), _fmt(c.ceiling),
                      *((_fmt(c.autoencoder),) if with_ae else ()), f"[{style}]{c.verdict}[/{style}]")
    console.print(table)
    console.print("sync: audio onsets against the events (v2a: the reference's true events; t2av: the events "
                  "seen in the generated video; a2v: the generated video's events against the given sound's), "
                  "floor: the same clip against every other clip's events. "
                  "prompt: attributes recognised in the generated clip against its caption, floor: against other "
                  "clips' captions. uses ...: denoising loss with another clip's condition minus with its own, "
                  "floor 0 (avgen diagnose). data: the real clips' own figure; data via AE: the real clips "
                  "through the video autoencoder and the audio codec, the most a generator decoding with them "
                  "can score. 'learned' "
                  "needs the figure's interval wholly above the floor's.")


def codec_check_of_run(run: Path, problems: list[str] | None = None) -> dict[str, Any] | None:
    """The codec's onset check (`avgen codec-check`, eval/codec.json), or None where there is none."""
    path = run / "eval" / "codec.json"
    if not path.exists():
        return None
    try:
        check = json.loads(path.read_text())
        keys = ("onset_recall", "onsets_original", "onset_precision", "tolerance_ms", "criterion",
                "passes_onset_criterion", "mel_distance")
        missing = [k for k in keys if k not in check]
        if missing:
            raise ValueError(f"has no {', '.join(missing)}")
    except (ValueError, OSError) as err:
        if problems is not None:
            problems.append(f"{path}: {err}; delete it and run the demo again to redo the codec check.")
        return None
    return {k: check[k] for k in keys}


def print_codec_check(check: dict[str, Any] | None, console: Console) -> None:
    """One line: the share of held-out onsets the codec keeps, against its criterion."""
    if check is None:
        return
    verdict = "pass" if check["passes_onset_criterion"] else "FAIL"
    style = "green" if check["passes_onset_criterion"] else "yellow"
    console.print(f"audio codec: keeps {100 * check['onset_recall']:.1f}% of {check['onsets_original']} held-out "
                  f"onsets within {check['tolerance_ms']:g} ms (precision {check['onset_precision']:.3f}; "
                  f"criterion >= {100 * check['criterion']:.0f}%: [{style}]{verdict}[/{style}])")


def write_summary(run: Path, claims: list[Claim], timings: list[tuple[str, float, bool]],
                  profile: str, codec: dict[str, Any] | None = None) -> Path:
    """summary.json: the profile, stage times, the codec's onset check and every claim with its verdict."""
    def num(v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else round(float(v), 4)

    out = {
        "profile": profile,
        "stages": [{"stage": n, "seconds": round(s, 1), "kept": k} for n, s, k in timings],
        "claims": [{"task": c.task, "system": c.system, "claim": c.claim, "figure": num(c.figure),
                    "ci": [num(v) for v in c.ci], "floor": num(c.floor), "floor_ci": [num(v) for v in c.floor_ci],
                    "ceiling": num(c.ceiling), "autoencoder": num(c.autoencoder), "verdict": c.verdict}
                   for c in claims],
        "codec": codec,
    }
    path = run / "summary.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path
