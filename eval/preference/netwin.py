"""Net win rate of a model against a baseline, per question, with its uncertainty.

Net win rate = win% - loss%, from the model's point of view, in [-100, 100] (Movie Gen's headline
number). A *unit* is what gets counted once: a single judgment, or, with `raters_per_item=r`, the
majority vote of r raters on the same item (as Movie Gen counts a majority of 3). An item is one
question about one pair of clips. Uncertainty comes two ways:

- `sigma`, `ci_low`, `ci_high`: a two-way clustered bootstrap over prompts and raters (see
  `bootstrap.py`); the interval is net win rate -/+ t sigma (t about 2 for 95%), clipped to [-100, 100].
- `sigma_repeat`: Movie Gen's sigma, the standard deviation of the net win rate across annotation
  rounds when the same items were rated several times (the `repeat` column, or consecutive groups
  of r judgments of an item in table order).

The significance label compares |net win rate| with the larger of the two sigmas: beyond 2 sigma
"significant", between 1 and 2 sigma "moderate", otherwise "not significant".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .bootstrap import TwoWayBootstrap, check_bootstrap_args, group_rng, single_blas_thread
from .schema import rated, validate_judgments

COLUMNS = [
    "model", "baseline", "question", "n", "wins", "ties", "losses", "win_rate", "tie_rate", "loss_rate",
    "net_win_rate", "ci_low", "ci_high", "sigma", "sigma_repeat", "significance",
    "n_judgments", "n_prompts", "n_raters", "n_repeats", "n_incomplete",
]  # fmt: skip
SIGNIFICANT, MODERATE, NOT_SIGNIFICANT, UNKNOWN = (
    "significant",
    "moderate",
    "not significant",
    "insufficient data",
)


def significance_label(net_win_rate: float, sigma: float) -> str:
    """Movie Gen's reading of a net win rate: beyond 2 sigma significant, 1 to 2 sigma moderate.

    A sigma of NaN (no way to estimate it) gives "insufficient data".
    """
    if not np.isfinite(sigma) or not np.isfinite(net_win_rate):
        return UNKNOWN
    size = abs(net_win_rate)
    if size > 2 * sigma:
        return SIGNIFICANT
    if size > sigma:
        return MODERATE
    return NOT_SIGNIFICANT


def plurality(wins: np.ndarray, ties: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Majority vote of weighted counts, elementwise: +1, -1, or 0 for a tie vote or no strict winner.

    Win, win, loss -> +1; win, tie, tie -> 0; win, loss, tie -> 0 (no outcome has a strict plurality).
    """
    win = wins > np.maximum(ties, losses)
    loss = losses > np.maximum(wins, ties)
    return win.astype(np.int64) - loss.astype(np.int64)


def assign_units(df: pd.DataFrame, raters_per_item: int | None) -> pd.DataFrame:
    """Group judgments into counted units and annotation rounds.

    Args:
        df: validated judgments (gold rows already removed).
        raters_per_item: r, the number of raters whose majority makes one unit; None counts every
            judgment on its own (r = 1).

    Returns:
        `df` with columns `item` (study, pair, question), `round` (annotation round), `unit` (int id)
        and `complete` (the unit has its r judgments; incomplete units are left out of the counts).
        Without a `repeat` column, an item's judgments in table order form round 0 (first r), round 1
        (next r), and so on; with it, the rounds are its values and r consecutive judgments of an item
        in one round form a unit.
    """
    r = raters_per_item or 1
    out = df.copy()
    out["item"] = out.groupby(["study", "pair_id", "question"], sort=False).ngroup()
    if "repeat" in out:
        out["round"] = out["repeat"]
        chunk = out.groupby(["item", "round"], sort=False).cumcount() // r
        out["unit"] = (
            pd.DataFrame({"i": out["item"], "r": out["round"], "c": chunk})
            .groupby(["i", "r", "c"], sort=False)
            .ngroup()
        )
    else:
        out["round"] = out.groupby("item", sort=False).cumcount() // r
        out["unit"] = out.groupby(["item", "round"], sort=False).ngroup()
    out["complete"] = out.groupby("unit")["unit"].transform("size") >= r
    return out


def _unit_values(unit: np.ndarray, outcome: np.ndarray, n_units: int) -> np.ndarray:
    """(U,) majority outcome of each unit from its judgments' outcomes."""
    counts = [np.bincount(unit, weights=(outcome == v), minlength=n_units) for v in (1, 0, -1)]
    return plurality(*counts)


def _weighted_net_win(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The net win rate as a function of unit weights: (b, U) weights -> (b,) percent (NaN if no weight).

    Units keep their observed value (their majority vote); resampling only reweights them. Re-voting
    each unit with just the raters a replicate kept would turn many units into ties (two remaining
    raters who disagree) and pull every replicate towards 0: a bias of the resampling, not
    uncertainty of the data.
    """
    values = values.astype(np.float64)

    def statistic(w: np.ndarray) -> np.ndarray:
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, 100.0 * (w @ values) / total, np.nan)

    return statistic


def _round_sigma(units: pd.DataFrame) -> tuple[float, int]:
    """Movie Gen's sigma: std (ddof=1) of the per-round net win rate; NaN below two rounds."""
    per_round = units.groupby("round")["value"].mean() * 100.0
    if len(per_round) < 2:
        return float("nan"), len(per_round)
    return float(per_round.std(ddof=1)), len(per_round)


def _group_row(
    key: tuple[str, str, str], g: pd.DataFrame, n_boot: int, seed: int, confidence: float
) -> dict[str, object]:
    model, baseline, question = key
    n_incomplete = int((~g["complete"]).sum())
    g = g[g["complete"]].copy()
    row: dict[str, object] = {"model": model, "baseline": baseline, "question": question}
    row.update(n_judgments=len(g), n_prompts=g["prompt_id"].nunique(), n_raters=g["rater_id"].nunique())
    row["n_incomplete"] = n_incomplete
    if len(g) == 0:
        # Every unit still waits for raters: report the group with empty counts, not silently drop it.
        nan = float("nan")
        row.update(n=0, wins=0, ties=0, losses=0, win_rate=nan, tie_rate=nan, loss_rate=nan, net_win_rate=nan)
        row.update(ci_low=nan, ci_high=nan, sigma=nan, sigma_repeat=nan, n_repeats=0, significance=UNKNOWN)
        return row
    g["unit_local"] = pd.factorize(g["unit"])[0]
    n_units = int(g["unit_local"].max()) + 1
    values = _unit_values(g["unit_local"].to_numpy(), g["outcome"].to_numpy(), n_units)
    rounds = g.groupby("unit_local", sort=True)["round"].first().to_numpy()
    wins, ties, losses = int((values == 1).sum()), int((values == 0).sum()), int((values == -1).sum())
    row.update(n=n_units, wins=wins, ties=ties, losses=losses)
    row.update(
        win_rate=100.0 * wins / n_units, tie_rate=100.0 * ties / n_units, loss_rate=100.0 * losses / n_units
    )
    net_win_rate = 100.0 * (wins - losses) / n_units
    row["net_win_rate"] = net_win_rate

    sigma_repeat, n_rounds = _round_sigma(pd.DataFrame({"round": rounds, "value": values}))
    row.update(sigma_repeat=sigma_repeat, n_repeats=n_rounds)
    ci_low = ci_high = sigma = float("nan")
    if n_boot > 0:
        boot = TwoWayBootstrap.from_judgments(
            g["unit_local"].to_numpy(), g["prompt_id"].to_numpy(), g["rater_id"].to_numpy()
        )
        if boot.informative:
            sigma = float(boot.sigma(_weighted_net_win(values), n_boot, group_rng(seed, *key)))
            low, high = boot.interval(net_win_rate, sigma, confidence)
            ci_low, ci_high = float(np.clip(low, -100.0, 100.0)), float(np.clip(high, -100.0, 100.0))
    row.update(ci_low=ci_low, ci_high=ci_high, sigma=sigma)
    sigmas = [s for s in (sigma, sigma_repeat) if np.isfinite(s)]
    row["significance"] = significance_label(net_win_rate, max(sigmas) if sigmas else float("nan"))
    return row


def net_win_rates(
    df: pd.DataFrame,
    *,
    raters_per_item: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    progress: bool = False,
) -> pd.DataFrame:
    """Net win rate of each model against each baseline, per question, with counts and uncertainty.

    Gold checks are left out. All rates are percentages.

    Args:
        df: judgments (raw or validated, see `schema`).
        raters_per_item: count the majority vote of this many raters per item as one unit (Movie Gen
            uses 3); None counts every judgment. Items still short of r judgments in a round are left
            out and counted in `n_incomplete`.
        n_boot: bootstrap replicates (0 skips the bootstrap: ci and sigma are NaN).
        seed: seed of the bootstrap; each group's generator also depends on its name only.
        confidence: coverage of the interval (0.95 gives a 95% interval).
        progress: show a progress bar over the groups.

    Returns:
        One row per (model, baseline, question), sorted, with columns `COLUMNS`: n units, wins, ties,
        losses, win/tie/loss/net win rates, the bootstrap interval and sigma, sigma_repeat, the
        significance label, and the numbers of judgments, prompts, raters, rounds and judgments
        left out of incomplete units.

    Raises:
        JudgmentsError: malformed table. ValueError: bad settings.
    """
    if raters_per_item is not None and (
        not isinstance(raters_per_item, int | np.integer) or raters_per_item < 1
    ):
        raise ValueError(f"raters_per_item must be a positive integer or None, got {raters_per_item!r}.")
    check_bootstrap_args(n_boot, confidence)
    judged = rated(validate_judgments(df))
    if judged.empty:
        return pd.DataFrame(columns=COLUMNS)
    units = assign_units(judged, raters_per_item)
    groups = units.groupby(["model", "baseline", "question"], sort=True)
    # One BLAS thread: the products here are small, and threads only contend on a busy machine.
    with single_blas_thread():
        rows = [
            _group_row(key, g, n_boot, seed, confidence)
            for key, g in tqdm(groups, total=groups.ngroups, desc="net win rates", disable=not progress)
        ]
    return pd.DataFrame(rows, columns=COLUMNS)
