"""Rater quality and position bias on small hand-checked tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eval.preference import SimulationConfig, position_bias, rater_quality, simulate_judgments
from eval.preference.quality import BIAS_COLUMNS, RATER_COLUMNS, fast_threshold


def _study(make_row) -> pd.DataFrame:
    rows = [
        # Item a: r1 win, r2 win, r3 loss. Item b: everyone tie.
        make_row("win", pair="a", rater="r1", seconds=20.0),
        make_row("win", pair="a", rater="r2", seconds=30.0),
        make_row("loss", pair="a", rater="r3", seconds=2.0),
        make_row("tie", pair="b", rater="r1", seconds=22.0),
        make_row("tie", pair="b", rater="r2", seconds=28.0),
        make_row("tie", pair="b", rater="r3", seconds=3.0),
        # Gold checks: r1 gets one of two right, r2 its one right; r3 has none.
        make_row("win", pair="g1", rater="r1", is_gold=True, gold_answer="left", seconds=18.0),
        make_row("loss", pair="g2", rater="r1", is_gold=True, gold_answer="left", seconds=19.0),
        make_row(
            "win", pair="g3", rater="r2", model_left=False, is_gold=True, gold_answer="right", seconds=25.0
        ),
    ]
    return pd.DataFrame(rows)


def test_rater_quality_by_hand(make_row):
    out = rater_quality(_study(make_row)).set_index("rater")
    assert list(out.reset_index().columns) == RATER_COLUMNS
    # Leave-one-out majorities: on item a, r1's others are (win, loss): no majority, not scored;
    # r3's others are (win, win): r3 disagrees. On item b everyone matches the others' tie.
    assert out["n"].tolist() == [2, 2, 2]
    assert out["n_compared"].tolist() == [1, 1, 2]
    assert out["agreement_with_majority"].tolist() == [1.0, 1.0, 0.5]
    assert out["n_gold"].tolist() == [2, 1, 0]
    assert out.loc["r1", "gold_accuracy"] == 0.5 and out.loc["r2", "gold_accuracy"] == 1.0
    assert np.isnan(out.loc["r3", "gold_accuracy"])
    assert out["flagged_gold"].tolist() == [True, False, False]
    # Medians (gold checks included) 19.5, 28, 2.5 s; all answers' median is 20 s -> threshold 0.3 * 20 = 6 s.
    assert out["median_seconds"].tolist() == [19.5, 28.0, 2.5]
    assert fast_threshold(_study(make_row)) == pytest.approx(6.0)
    assert out["flagged_fast"].tolist() == [False, False, True]


def test_rater_quality_thresholds_and_missing_times(make_row):
    df = _study(make_row)
    out = rater_quality(df, fast_ratio=0.0, min_seconds=25.0, min_gold_accuracy=0.4).set_index("rater")
    assert out["flagged_fast"].tolist() == [True, False, True]
    assert not out["flagged_gold"].any()
    no_times = rater_quality(df.drop(columns=["seconds"]))
    assert no_times["median_seconds"].isna().all() and not no_times["flagged_fast"].any()
    with pytest.raises(ValueError, match="fast_ratio must be between 0 and 1"):
        rater_quality(df, fast_ratio=2.0)
    with pytest.raises(ValueError, match="min_gold_accuracy must be between 0 and 1"):
        rater_quality(df, min_gold_accuracy=70)


def test_position_bias_by_hand(make_row):
    # 8 left wins, 2 right wins, 3 ties; the model is on the left in 8 of 13.
    rows = [make_row("win", pair=f"l{i}", model_left=True) for i in range(5)]  # left
    rows += [make_row("loss", pair=f"m{i}", model_left=False) for i in range(3)]  # left
    rows += [make_row("loss", pair=f"r{i}", model_left=True) for i in range(2)]  # right
    rows += [make_row("tie", pair=f"t{i}", model_left=i == 0) for i in range(3)]
    out = position_bias(pd.DataFrame(rows))
    assert list(out.columns) == BIAS_COLUMNS
    assert out["question"].tolist() == ["overall", "(all)"]
    row = out.iloc[0]
    assert (row["n"], row["left"], row["tie"], row["right"]) == (13, 8, 3, 2)
    assert row["left_win_rate"] == pytest.approx(0.8)
    # Two-sided binomial test of 8 of 10: 2 * P(X >= 8) = 2 * 56 / 1024.
    assert row["p_value"] == pytest.approx(112 / 1024)
    # Wilson 95% interval for 8/10: (0.8 + z^2/20 -/+ z sqrt(0.016 + z^2/400)) / (1 + z^2/10).
    z = 1.959963984540054
    center, half = (0.8 + z**2 / 20) / (1 + z**2 / 10), z * np.sqrt(0.016 + z**2 / 400) / (1 + z**2 / 10)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((center - half, center + half))
    assert not row["biased"]
    assert row["model_left_share"] == pytest.approx(8 / 13)


def test_position_bias_is_found_in_a_biased_simulation():
    config = SimulationConfig(n_prompts=60, questions=("q",), position_bias=0.8)
    out = position_bias(simulate_judgments(config, seed=0)).set_index("question")
    assert out.loc["q", "biased"] and out.loc["q", "left_win_rate"] > 0.6
    fair = position_bias(simulate_judgments(SimulationConfig(n_prompts=60, questions=("q",)), seed=0))
    assert not fair.set_index("question").loc["q", "biased"]


def test_all_ties_have_no_left_win_rate(make_row):
    out = position_bias(pd.DataFrame([make_row("tie", pair=f"p{i}") for i in range(4)]))
    assert np.isnan(out.loc[0, "left_win_rate"]) and not out.loc[0, "biased"]


def test_simulated_careless_raters_are_flagged():
    config = SimulationConfig(
        n_prompts=30, n_raters=12, careless_raters=2, gold_per_rater=6, questions=("q",)
    )
    df = simulate_judgments(config, seed=3)
    careless = set(df.loc[df["seconds"] < 0.3 * df["seconds"].median(), "rater_id"])
    out = rater_quality(df)
    flagged = set(out.loc[out["flagged_fast"], "rater"])
    assert len(flagged) == 2 and flagged <= careless
    # Random answers agree with the others less than careful ones do.
    mean_agree = out.groupby(out["rater"].isin(flagged))["agreement_with_majority"].mean()
    assert mean_agree[True] < mean_agree[False]
