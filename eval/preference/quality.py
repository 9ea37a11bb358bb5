"""Quality of a study: each rater's agreement, gold accuracy and speed, and the bias towards one side.

- Agreement with the majority: for each judgment, the majority of the *other* raters of the same
  item (leave-one-out, so a rater does not vote on their own reference); judgments whose item has
  no strict majority among the others are not scored.
- Gold accuracy: share of a rater's gold checks answered in the expected direction.
- Speed: a rater is flagged when their median time is below `fast_ratio` times the median time of
  all judgments (or below `min_seconds`): they cannot have watched the clips.
- Position bias: share of the decided (non-tie) judgments won by the left clip, with a Wilson
  interval and a two-sided binomial test against 1/2. With randomized sides, anything else means
  raters favour a side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from .netwin import plurality
from .schema import rated, validate_judgments

RATER_COLUMNS = [
    "rater", "n", "n_compared", "agreement_with_majority", "n_gold", "gold_accuracy", "median_seconds",
    "flagged_fast", "flagged_gold",
]  # fmt: skip
BIAS_COLUMNS = [
    "question", "n", "left", "tie", "right", "left_win_rate", "ci_low", "ci_high", "p_value", "biased",
    "model_left_share",
]  # fmt: skip
ALL_QUESTIONS = "(all)"


def fast_threshold(df: pd.DataFrame, *, fast_ratio: float = 0.3, min_seconds: float = 0.0) -> float:
    """Seconds below which a rater's median answer time counts as implausibly fast (NaN without times)."""
    if not 0.0 <= fast_ratio <= 1.0:
        raise ValueError(
            f"fast_ratio must be between 0 and 1 (0.3: under 30% of the typical time), got {fast_ratio!r}."
        )
    if min_seconds < 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds!r}.")
    seconds = validate_judgments(df)["seconds"].dropna()
    if seconds.empty:
        return float("nan")
    return max(float(min_seconds), fast_ratio * float(seconds.median()))


def _agreement_with_others(judged: pd.DataFrame) -> pd.Series:
    """Per judgment: 1.0 if it matches the others' majority on its item, 0.0 if not, NaN if no majority."""
    item = judged.groupby(["study", "pair_id", "question"], sort=False).ngroup().to_numpy()
    outcome = judged["outcome"].to_numpy()
    counts = {v: np.bincount(item, weights=(outcome == v)) for v in (1, 0, -1)}
    # Leave the judgment itself out of its item's counts.
    others = {v: counts[v][item] - (outcome == v) for v in (1, 0, -1)}
    majority = plurality(others[1], others[0], others[-1])
    total = others[1] + others[0] + others[-1]
    decided = (total > 0) & ((majority != 0) | (others[0] > np.maximum(others[1], others[-1])))
    return pd.Series(np.where(decided, (majority == outcome).astype(float), np.nan), index=judged.index)


def rater_quality(
    df: pd.DataFrame, *, fast_ratio: float = 0.3, min_seconds: float = 0.0, min_gold_accuracy: float = 0.7
) -> pd.DataFrame:
    """One row per rater: volume, agreement with the others, gold accuracy, speed, and flags.

    Args:
        df: judgments (raw or validated).
        fast_ratio: flag raters whose median time is under this share of the overall median time.
        min_seconds: flag raters whose median time is under this many seconds, whatever the others do.
        min_gold_accuracy: flag raters whose gold accuracy is below this share.

    Returns:
        Columns `RATER_COLUMNS`, sorted by rater: n (non-gold judgments), n_compared (those with a
        majority of other raters to compare with), agreement_with_majority, n_gold, gold_accuracy
        (NaN without gold checks), median_seconds, flagged_fast, flagged_gold.
    """
    if not 0.0 <= min_gold_accuracy <= 1.0:
        raise ValueError(f"min_gold_accuracy must be between 0 and 1, got {min_gold_accuracy!r}.")
    valid = validate_judgments(df)
    threshold = fast_threshold(valid, fast_ratio=fast_ratio, min_seconds=min_seconds)
    judged = rated(valid)
    agree = _agreement_with_others(judged)
    gold = valid[valid["is_gold"]]
    gold_correct = (gold["choice"] == gold["gold_choice"]).astype(float)

    raters = sorted(valid["rater_id"].unique())
    table = pd.DataFrame({"rater": raters}).set_index("rater")
    table["n"] = judged.groupby("rater_id").size()
    table["n_compared"] = agree.groupby(judged["rater_id"]).count()
    table["agreement_with_majority"] = agree.groupby(judged["rater_id"]).mean()
    table["n_gold"] = gold.groupby("rater_id").size()
    table["gold_accuracy"] = gold_correct.groupby(gold["rater_id"]).mean()
    table["median_seconds"] = valid.groupby("rater_id")["seconds"].median()
    for col in ("n", "n_compared", "n_gold"):
        table[col] = table[col].fillna(0).astype(int)
    table["flagged_fast"] = (table["median_seconds"] < threshold).fillna(False).astype(bool)
    table["flagged_gold"] = (table["gold_accuracy"] < min_gold_accuracy).fillna(False).astype(bool)
    return table.reset_index()[RATER_COLUMNS]


def _bias_row(question: str, g: pd.DataFrame, confidence: float) -> dict[str, object]:
    left, tie, right = (int((g["choice"] == c).sum()) for c in ("left", "tie", "right"))
    row: dict[str, object] = {"question": question, "n": len(g), "left": left, "tie": tie, "right": right}
    row["model_left_share"] = float((g["model_side"] == "left").mean())
    decided = left + right
    if decided == 0:
        row.update(
            left_win_rate=float("nan"), ci_low=float("nan"), ci_high=float("nan"), p_value=float("nan")
        )
        row["biased"] = False
        return row
    test = binomtest(left, decided, 0.5)
    ci = test.proportion_ci(confidence_level=confidence, method="wilson")
    row.update(
        left_win_rate=left / decided, ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(test.pvalue)
    )
    row["biased"] = bool(test.pvalue < 1.0 - confidence)
    return row


def position_bias(df: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """How often the left clip wins, per question and over all questions (gold checks left out).

    The binomial interval and test treat judgments as independent; judgments of one rater are not
    quite, so read a borderline p-value with care. `model_left_share` checks the randomization:
    it should be near 0.5, or a better model shown mostly on one side will look like a bias.

    Returns:
        Columns `BIAS_COLUMNS`: counts of left/tie/right answers, left_win_rate = left / (left + right),
        its Wilson interval, the binomial test's p-value, `biased` (p below 1 - confidence), and the
        share of judgments where the model was on the left. The last row, question "(all)", pools all.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}.")
    judged = rated(validate_judgments(df))
    if judged.empty:
        return pd.DataFrame(columns=BIAS_COLUMNS)
    rows = [_bias_row(str(q), g, confidence) for q, g in judged.groupby("question", sort=True)]
    rows.append(_bias_row(ALL_QUESTIONS, judged, confidence))
    return pd.DataFrame(rows, columns=BIAS_COLUMNS)
