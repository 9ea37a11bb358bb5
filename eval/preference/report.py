"""The whole preference report: every table, the figures, and a JSON summary, written to one folder."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .agreement import agreement
from .bradley_terry import leaderboard
from .netwin import net_win_rates
from .plots import plot_leaderboard, plot_net_win_rates
from .quality import fast_threshold, position_bias, rater_quality
from .schema import validate_judgments

TABLES = ("net_win_rates", "leaderboard", "agreement", "rater_quality", "position_bias")


@dataclass
class ReportSettings:
    """Settings of `full_report`, recorded in summary.json so every number can be reproduced.

    Attributes:
        raters_per_item: majority of this many raters per item counts as one unit (None: every judgment).
        n_boot: bootstrap replicates for the intervals (0: none).
        seed: bootstrap seed.
        confidence: coverage of the intervals.
        exclude_flagged: drop raters flagged as too fast or failing gold checks before the statistics
            (rater quality is still reported for everyone).
        anchor: system pinned at 1000 on the leaderboard (None: scores centered on 1000).
        fast_ratio: a rater is too fast below this share of the median answer time.
        min_gold_accuracy: a rater fails the gold checks below this accuracy.
    """

    raters_per_item: int | None = None
    n_boot: int = 1000
    seed: int = 0
    confidence: float = 0.95
    exclude_flagged: bool = False
    anchor: str | None = None
    fast_ratio: float = 0.3
    min_gold_accuracy: float = 0.7

    def __post_init__(self) -> None:
        if self.raters_per_item is not None and self.raters_per_item < 1:
            raise ValueError(f"raters_per_item must be >= 1 or None, got {self.raters_per_item!r}.")
        if self.n_boot < 0:
            raise ValueError(f"n_boot must be >= 0, got {self.n_boot!r}.")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence!r}.")


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows: NaN becomes null, numpy scalars become Python numbers."""
    rows = json.loads(table.to_json(orient="records"))
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows
    ]


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def full_report(df: pd.DataFrame, out_dir: str | Path, settings: ReportSettings | None = None, *,
                progress: bool = False, **overrides: Any) -> dict[str, Any]:  # fmt: skip
    """Compute every statistic of a study and write them to `out_dir`.

    Files: net_win_rates.csv, leaderboard.csv, agreement.csv, rater_quality.csv, position_bias.csv,
    net_win_rates.png, leaderboard.png and summary.json (settings, counts and all tables).

    Args:
        df: judgments (raw or validated).
        out_dir: folder to write into (created if needed; files of the same names are replaced).
        settings: a `ReportSettings`; keyword overrides (e.g. `raters_per_item=3, n_boot=1000`) update it.
        progress: show progress bars.

    Returns:
        {"tables": {name: DataFrame}, "files": {name: Path}, "summary": dict (what summary.json holds)}.

    Raises:
        JudgmentsError: malformed judgments. ValueError / TypeError: bad settings.
    """
    settings = settings or ReportSettings()
    unknown = set(overrides) - set(asdict(settings))
    if unknown:
        raise TypeError(f"unknown report setting(s) {sorted(unknown)}; known: {sorted(asdict(settings))}.")
    settings = ReportSettings(**{**asdict(settings), **overrides})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Check the table and measure the raters
    valid = validate_judgments(df)
    quality = rater_quality(
        valid, fast_ratio=settings.fast_ratio, min_gold_accuracy=settings.min_gold_accuracy
    )
    flagged = quality.loc[quality["flagged_fast"] | quality["flagged_gold"], "rater"].tolist()
    used = valid[~valid["rater_id"].isin(flagged)] if settings.exclude_flagged else valid
    if used["is_gold"].all():
        raise ValueError(
            "no non-gold judgments are left to analyse (all raters flagged, or only gold checks)."
        )

    # 2. Statistics
    n_boot, seed, confidence = settings.n_boot, settings.seed, settings.confidence
    tables = {
        "net_win_rates": net_win_rates(
            used,
            raters_per_item=settings.raters_per_item,
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
            progress=progress,
        ),
        "leaderboard": leaderboard(
            used, anchor=settings.anchor, n_boot=n_boot, seed=seed, confidence=confidence, progress=progress
        ),
        "agreement": agreement(used),
        "rater_quality": quality,
        "position_bias": position_bias(used, confidence=settings.confidence),
    }

    # 3. Files
    files: dict[str, Path] = {}
    for name, table in tables.items():
        files[name] = out / f"{name}.csv"
        table.to_csv(files[name], index=False)
    files["net_win_rates_plot"] = plot_net_win_rates(tables["net_win_rates"], out / "net_win_rates.png")
    files["leaderboard_plot"] = plot_leaderboard(tables["leaderboard"], out / "leaderboard.png")
    summary = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "counts": {
            "judgments": len(valid),
            "gold_judgments": int(valid["is_gold"].sum()),
            "judgments_used": int((~used["is_gold"]).sum()),
            "studies": sorted(valid["study"].unique()),
            "raters": int(valid["rater_id"].nunique()),
            "prompts": int(valid.loc[~valid["is_gold"], "prompt_id"].nunique()),
            "questions": sorted(valid["question"].unique()),
        },  # fmt: skip
        "flagged_raters": flagged,
        "excluded_raters": flagged if settings.exclude_flagged else [],
        "fast_threshold_seconds": _finite(fast_threshold(valid, fast_ratio=settings.fast_ratio)),
        "tables": {name: _records(table) for name, table in tables.items()},
    }
    files["summary"] = out / "summary.json"
    files["summary"].write_text(json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n")
    return {"tables": tables, "files": files, "summary": summary}
