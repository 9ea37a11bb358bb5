"""Time of the full preference report (`full_report`) on a simulated study of about 100k judgments.

Prints a table of the time per stage and writes benchmarks/results/prefs_bench.json.

    python benchmarks/prefs_bench.py            # 100k judgments, 1000 bootstrap replicates
    python benchmarks/prefs_bench.py --quick    # 10k judgments, 200 replicates (seconds, for CI)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from eval.preference import (
    SimulationConfig,
    agreement,
    full_report,
    leaderboard,
    net_win_rates,
    position_bias,
    rater_quality,
    simulate_judgments,
    validate_judgments,
)

RESULTS = Path(__file__).resolve().parent / "results" / "prefs_bench.json"


def _timed(fn, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k judgments and 200 replicates")
    parser.add_argument("--prompts", type=int, default=None, help="prompts (default 1000, quick 100)")
    parser.add_argument("--bootstrap", type=int, default=None, help="replicates (default 1000, quick 200)")
    parser.add_argument("--raters-per-item", type=int, default=3, help="majority of N raters per unit")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    n_prompts = args.prompts or (100 if args.quick else 1000)
    n_boot = args.bootstrap or (200 if args.quick else 1000)

    # 1000 prompts x 3 baselines x 3 raters x 4 rounds (Movie Gen's re-annotation) x 3 questions = 108k.
    config = SimulationConfig(
        systems={"model": 1080.0, "base_a": 1000.0, "base_b": 1040.0, "base_c": 1100.0},
        n_prompts=n_prompts, n_raters=200, raters_per_item=3, repeats=4, careless_raters=10, gold_per_rater=5,
    )  # fmt: skip
    raw, t_sim = _timed(simulate_judgments, config, seed=0)
    valid, t_validate = _timed(validate_judgments, raw)
    timings = {"simulate": t_sim, "validate": t_validate}
    kw = {"n_boot": n_boot, "seed": 0}
    _, timings["net_win_rates"] = _timed(net_win_rates, valid, raters_per_item=args.raters_per_item, **kw)
    _, timings["leaderboard"] = _timed(leaderboard, valid, **kw)
    _, timings["agreement"] = _timed(agreement, valid)
    _, timings["rater_quality"] = _timed(rater_quality, valid)
    _, timings["position_bias"] = _timed(position_bias, valid)
    with tempfile.TemporaryDirectory() as tmp:
        _, timings["full_report (from raw table, with files)"] = _timed(
            full_report, raw, tmp, raters_per_item=args.raters_per_item, **kw
        )

    table = Table(title=f"Preference report on {len(raw):,} judgments, {n_boot} bootstrap replicates")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for stage, seconds in timings.items():
        table.add_row(stage, f"{seconds:.2f}")
    Console().print(table)

    result = {
        "benchmark": "prefs_bench",
        "quick": args.quick,
        "judgments": len(raw),
        "prompts": n_prompts,
        "raters": config.n_raters,
        "systems": len(config.systems),
        "questions": len(config.questions),
        "bootstrap": n_boot,
        "raters_per_item": args.raters_per_item,
        "seconds": timings,
        "hardware": {
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pandas": pd.__version__,
        },  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
