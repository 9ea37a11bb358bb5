"""Time of the full preference report (`full_report`) on a simulated study of about 100k judgments,
and the coverage of the net win rate's 95% interval on simulated studies with known truth.

Prints two tables and writes benchmarks/results/prefs_bench.json.

    python benchmarks/prefs_bench.py            # 109k judgments, 1000 replicates; 200 studies per design
    python benchmarks/prefs_bench.py --quick    # 12k judgments, 200 replicates; 20 studies (seconds)
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
    true_net_win_rate,
    validate_judgments,
)

RESULTS = Path(__file__).resolve().parent / "results" / "prefs_bench.json"


def _timed(fn, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


# Designs for the coverage check: (prompts, raters); 2 raters per pair, strong prompt and rater effects.
DESIGNS = ((25, 6), (40, 10), (60, 25))


def coverage(n_studies: int, n_boot: int) -> list[dict[str, object]]:
    """Share of 95% intervals containing the population net win rate, clustered vs naive bootstrap.

    The naive bootstrap treats every judgment as independent (each its own prompt, one rater).
    """
    rows = []
    for n_prompts, n_raters in DESIGNS:
        config = SimulationConfig(
            systems={"model": 1060.0, "base": 1000.0}, questions=("q",), n_prompts=n_prompts,
            n_raters=n_raters, raters_per_item=2, prompt_sd=1.0, rater_sd=0.6,
        )  # fmt: skip
        truth = true_net_win_rate(config, "base")
        hits = {"clustered": 0, "naive": 0}
        for seed in range(n_studies):
            df = validate_judgments(simulate_judgments(config, seed=seed))
            ids = [f"j{i}" for i in range(len(df))]
            flat = df.assign(prompt_id=ids, pair_id=ids, rater_id="anyone")
            for name, table in (("clustered", df), ("naive", flat)):
                row = net_win_rates(table, n_boot=n_boot, seed=seed).iloc[0]
                hits[name] += bool(row["ci_low"] <= truth <= row["ci_high"])
        rows.append({
            "prompts": n_prompts, "raters": n_raters, "judgments": n_prompts * 2, "studies": n_studies,
            "true_net_win_rate": truth, **{f"coverage_{k}": v / n_studies for k, v in hits.items()},
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k judgments and 200 replicates")
    parser.add_argument("--prompts", type=int, default=None, help="prompts (default 1000, quick 100)")
    parser.add_argument("--bootstrap", type=int, default=None, help="replicates (default 1000, quick 200)")
    parser.add_argument("--raters-per-item", type=int, default=3, help="majority of N raters per unit")
    parser.add_argument("--studies", type=int, default=None, help="simulated studies per coverage design")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    n_prompts = args.prompts or (100 if args.quick else 1000)
    n_boot = args.bootstrap or (200 if args.quick else 1000)
    n_studies = args.studies or (20 if args.quick else 200)

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

    cover = coverage(n_studies, n_boot=200)
    ctable = Table(title="Coverage of 95% net win rate intervals (2 raters per pair, 1 question)")
    for col in ("prompts", "raters", "studies", "true net win", "clustered", "naive"):
        ctable.add_column(col, justify="right")
    for row in cover:
        ctable.add_row(
            str(row["prompts"]), str(row["raters"]), str(row["studies"]), f"{row['true_net_win_rate']:+.1f}",
            f"{row['coverage_clustered']:.3f}", f"{row['coverage_naive']:.3f}",
        )  # fmt: skip
    Console().print(ctable)

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
        "coverage": cover,
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
