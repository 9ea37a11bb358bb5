"""`avgen prefs`: the preference report from a judgments file, and simulated studies to try it on."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from .report import ReportSettings, full_report
from .schema import COLUMNS, JudgmentsError, load_judgments
from .simulate import SimulationConfig, simulate_judgments, true_net_win_rate

_COLUMN_HELP = "\n".join(f"  {name:<13} {desc}" for name, desc in COLUMNS.items())


def _num(fmt: str) -> Callable[[object], str]:
    return lambda v: "-" if v is None or (isinstance(v, float) and pd.isna(v)) else fmt.format(v)


def _interval(fmt: str, low: str = "ci_low", high: str = "ci_high") -> Callable[[pd.Series], str]:
    f = _num(fmt)
    return lambda row: "-" if pd.isna(row[low]) else f"[{f(row[low])}, {f(row[high])}]"


# Printed view of each table: header -> column name or a function of the row. The CSV files keep
# every column at full precision; the terminal gets what fits in about 100 characters.
_VIEWS: dict[str, dict[str, str | Callable[[pd.Series], str]]] = {
    "net_win_rates": {
        "model": "model", "baseline": "baseline", "question": "question", "n": "n",
        "W/T/L": lambda r: f"{r['wins']}/{r['ties']}/{r['losses']}",
        "net %": lambda r: _num("{:+.1f}")(r["net_win_rate"]), "CI": _interval("{:+.1f}"),
        "sigma": lambda r: _num("{:.1f}")(r["sigma"]), "sigma rep": lambda r: _num("{:.1f}")(r["sigma_repeat"]),
        "significance": "significance",
    },
    "leaderboard": {
        "question": "question", "#": "rank", "system": "system", "score": lambda r: _num("{:.0f}")(r["score"]),
        "CI": _interval("{:.0f}"), "n": "n", "note": "note",
    },
    "agreement": {
        "question": "question", "scale": "scale", "items": "n_items",
        "raters/item": lambda r: _num("{:.1f}")(r["raters_per_item"]),
        "agree": lambda r: _num("{:.2f}")(r["observed_agreement"]),
        "Fleiss k": lambda r: _num("{:.3f}")(r["fleiss_kappa"]),
        "K alpha": lambda r: _num("{:.3f}")(r["krippendorff_alpha"]),
        "K alpha ord.": lambda r: _num("{:.3f}")(r["krippendorff_alpha_ordinal"]),
    },
    "rater_quality": {
        "rater": "rater", "n": "n", "agree w/ majority": lambda r: _num("{:.2f}")(r["agreement_with_majority"]),
        "gold": lambda r: f"{_num('{:.2f}')(r['gold_accuracy'])} of {r['n_gold']}",
        "median s": lambda r: _num("{:.1f}")(r["median_seconds"]),
        "flags": lambda r: ", ".join(f for f, on in (("fast", r["flagged_fast"]), ("gold", r["flagged_gold"])) if on),
    },
    "position_bias": {
        "question": "question", "n": "n", "L/T/R": lambda r: f"{r['left']}/{r['tie']}/{r['right']}",
        "left wins": lambda r: _num("{:.3f}")(r["left_win_rate"]), "CI": _interval("{:.3f}"),
        "p": lambda r: _num("{:.3g}")(r["p_value"]), "biased": "biased",
        "model left": lambda r: _num("{:.2f}")(r["model_left_share"]),
    },
}  # fmt: skip
_TITLES = {
    "net_win_rates": "Net win rate of the model (win% - loss%), with {conf:.0%} bootstrap interval",
    "leaderboard": "Leaderboard: Bradley-Terry scores (Elo scale), with {conf:.0%} bootstrap interval",
    "agreement": "Agreement between raters",
    "rater_quality": "Raters",
    "position_bias": "Position bias: share of decided judgments won by the left clip",
}


def print_table(
    console: Console,
    title: str,
    table: pd.DataFrame,
    view: dict[str, str | Callable[[pd.Series], str]],
    limit: int = 50,
) -> None:
    """Print a table through its view with rich, at most `limit` rows (the CSV file has them all)."""
    out = Table(title=title, title_justify="left", header_style="bold")
    for header in view:
        out.add_column(
            header,
            justify="left"
            if header in ("model", "baseline", "question", "system", "rater", "note")
            else "right",
        )
    for _, row in table.head(limit).iterrows():
        out.add_row(*(str(row[v]) if isinstance(v, str) else v(row) for v in view.values()))
    console.print(out)
    if len(table) > limit:
        console.print(f"  ... {len(table) - limit} more rows in the CSV file")


def _report(args: argparse.Namespace, console: Console) -> int:
    df = load_judgments(args.judgments)
    if args.study:
        missing = sorted(set(args.study) - set(df["study"]))
        if missing:
            raise JudgmentsError(
                f"study {missing} not found in {args.judgments}; studies: {sorted(df['study'].unique())}."
            )
        df = df[df["study"].isin(args.study)]
    settings = ReportSettings(
        raters_per_item=args.raters_per_item, n_boot=args.bootstrap, seed=args.seed, confidence=args.confidence,
        exclude_flagged=args.exclude_flagged, anchor=args.anchor,
    )  # fmt: skip
    result = full_report(df, args.out, settings, progress=not args.quiet)
    if not args.quiet:
        for name, table in result["tables"].items():
            print_table(console, _TITLES[name].format(conf=args.confidence), table, _VIEWS[name])
        flagged = result["summary"]["flagged_raters"]
        if flagged:
            action = (
                "excluded from the statistics"
                if args.exclude_flagged
                else "kept (use --exclude-flagged to drop them)"
            )
            console.print(f"Flagged raters ({len(flagged)}): {', '.join(flagged)}; {action}.", soft_wrap=True)
    names = ", ".join(p.name for p in result["files"].values())
    console.print(f"Wrote {len(result['files'])} files to {Path(args.out)}: {names}", soft_wrap=True)
    return 0


def _simulate(args: argparse.Namespace, console: Console) -> int:
    config = SimulationConfig(
        n_prompts=args.prompts, n_raters=args.raters, raters_per_item=args.raters_per_item, repeats=args.repeats,
        scale=args.scale, careless_raters=args.careless_raters, gold_per_rater=args.gold_per_rater,
        position_bias=args.position_bias,
    )  # fmt: skip
    table = simulate_judgments(config, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        table.to_parquet(out, index=False)
    elif out.suffix.lower() == ".csv":
        table.to_csv(out, index=False)
    else:
        raise ValueError(f"--out must end in .csv or .parquet, got {str(out)!r}.")
    truths = ", ".join(f"{b}: {true_net_win_rate(config, b):+.1f}" for b in config.baselines)
    console.print(
        f"Wrote {len(table)} judgments to {out}. True net win rates of {config.model!r} per judgment: {truths}.",
        soft_wrap=True,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avgen prefs",
        description="Preference statistics of pairwise human studies: net win rates with uncertainty, "
        "Bradley-Terry leaderboards, rater agreement, rater quality and position bias.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{report,simulate}")
    rep = sub.add_parser(
        "report",
        help="compute every statistic of a judgments file and write tables, plots and summary.json",
        description="Print the tables and write CSV files, PNG plots and summary.json to --out.",
        epilog=f"Judgments columns (one row per answer):\n{_COLUMN_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("judgments", type=Path, help="judgments table: .csv, .tsv, .parquet, .jsonl or .json")
    rep.add_argument("--out", type=Path, required=True, help="folder for the report (created if needed)")
    rep.add_argument("--raters-per-item", type=int, default=None, metavar="N",
                     help="count the majority vote of N raters per item once, as Movie Gen does with 3 "
                     "(default: every judgment counts)")  # fmt: skip
    rep.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                     help="bootstrap replicates over prompts and raters (default 1000; 0 skips intervals)")  # fmt: skip
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    rep.add_argument("--confidence", type=float, default=0.95, help="interval coverage (default 0.95)")
    rep.add_argument(
        "--anchor", default=None, metavar="SYSTEM", help="pin this system at 1000 on the leaderboard"
    )
    rep.add_argument("--study", action="append", metavar="NAME", help="only this study (repeatable)")
    rep.add_argument("--exclude-flagged", action="store_true",
                     help="drop raters flagged as too fast or failing gold checks before the statistics")  # fmt: skip
    rep.add_argument("--quiet", action="store_true", help="print only where the files went")
    sim = sub.add_parser(
        "simulate",
        help="write a simulated study with known true preferences (to try the report)",
        description="Simulate a pairwise study of one model against two baselines and write its judgments.",
    )
    sim.add_argument("--out", type=Path, required=True, help="judgments file to write (.csv or .parquet)")
    sim.add_argument("--prompts", type=int, default=100, help="prompts (default 100)")
    sim.add_argument("--raters", type=int, default=20, help="rater pool (default 20)")
    sim.add_argument("--raters-per-item", type=int, default=3, help="raters per pair and round (default 3)")
    sim.add_argument("--repeats", type=int, default=1, help="annotation rounds (default 1)")
    sim.add_argument(
        "--scale", choices=("3-way", "5-point"), default="3-way", help="answer scale (default 3-way)"
    )
    sim.add_argument(
        "--careless-raters", type=int, default=0, help="raters answering at random, fast (default 0)"
    )
    sim.add_argument("--gold-per-rater", type=int, default=0, help="gold checks per rater (default 0)")
    sim.add_argument(
        "--position-bias", type=float, default=0.0, help="logit towards the left clip (default 0)"
    )
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of `avgen prefs`; returns the exit status (2 for bad input, with the reason)."""
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return _report(args, console) if args.command == "report" else _simulate(args, console)
    except ValueError as err:  # JudgmentsError included: bad input, not a crash
        print(f"avgen prefs {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
