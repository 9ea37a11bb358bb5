"""Preference statistics of pairwise human studies (used by `avgen prefs` and the app's dashboard).

Public API:

    validate_judgments(df) -> DataFrame                 # checked, normalized judgments
    load_judgments(path) -> DataFrame                   # .csv / .parquet / .jsonl, validated
    net_win_rates(df, *, raters_per_item=None, n_boot=1000, seed=0, confidence=0.95) -> DataFrame
    leaderboard(df, *, n_boot=1000, seed=0, confidence=0.95, anchor=None) -> DataFrame
    agreement(df) -> DataFrame                          # Fleiss' kappa, Krippendorff's alpha per question
    rater_quality(df, *, fast_ratio=0.3, min_gold_accuracy=0.7) -> DataFrame
    position_bias(df, *, confidence=0.95) -> DataFrame
    plot_net_win_rates(table, path) -> Path
    plot_leaderboard(table, path) -> Path
    full_report(df, out_dir, settings=None, **overrides) -> dict   # every table, plots, summary.json

Lower-level pieces: `fleiss_kappa(counts)`, `krippendorff_alpha(data, level)`,
`significance_label(net_win_rate, sigma)`, and `simulate_judgments(SimulationConfig(...), seed)` with
`true_net_win_rate(config, baseline)` for studies with known truth. The judgments columns are
described in `eval.preference.schema` and in docs/preference.md.
"""

from .agreement import agreement, fleiss_kappa, krippendorff_alpha
from .bradley_terry import leaderboard
from .netwin import net_win_rates, significance_label
from .plots import plot_leaderboard, plot_net_win_rates
from .quality import position_bias, rater_quality
from .report import ReportSettings, full_report
from .schema import COLUMNS, JudgmentsError, load_judgments, validate_judgments
from .simulate import SimulationConfig, simulate_judgments, true_net_win_rate

__all__ = [
    "COLUMNS",
    "JudgmentsError",
    "ReportSettings",
    "SimulationConfig",
    "agreement",
    "fleiss_kappa",
    "full_report",
    "krippendorff_alpha",
    "leaderboard",
    "load_judgments",
    "net_win_rates",
    "plot_leaderboard",
    "plot_net_win_rates",
    "position_bias",
    "rater_quality",
    "significance_label",
    "simulate_judgments",
    "true_net_win_rate",
    "validate_judgments",
]
