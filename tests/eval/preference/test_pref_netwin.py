"""Net win rates against hand-computed values, and the bootstrap's coverage on simulated raters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eval.preference import (
    SimulationConfig,
    net_win_rates,
    significance_label,
    simulate_judgments,
    true_net_win_rate,
    validate_judgments,
)
from eval.preference.netwin import COLUMNS, plurality


def test_counts_and_rates_by_hand(make_row):
    # From the model's side: win, win, tie, loss, win, tie, on both sides of the screen.
    results = ["win", "win", "tie", "loss", "win", "tie"]
    rows = [
        make_row(r, pair=f"p{i}", rater=f"r{i % 2}", model_left=i % 3 == 0) for i, r in enumerate(results)
    ]
    out = net_win_rates(pd.DataFrame(rows), n_boot=0)
    assert list(out.columns) == COLUMNS
    row = out.iloc[0]
    assert (row["model"], row["baseline"], row["question"]) == ("M", "B", "overall")
    assert (row["n"], row["wins"], row["ties"], row["losses"]) == (6, 3, 2, 1)
    assert row["win_rate"] == pytest.approx(50.0)
    assert row["tie_rate"] == pytest.approx(100 * 2 / 6)
    assert row["loss_rate"] == pytest.approx(100 * 1 / 6)
    assert row["net_win_rate"] == pytest.approx(100 * (3 - 1) / 6)
    assert (row["n_judgments"], row["n_prompts"], row["n_raters"]) == (6, 6, 2)
    assert np.isnan(row["ci_low"]) and np.isnan(row["sigma"])  # n_boot=0: no bootstrap


def test_groups_by_model_baseline_and_question(make_row):
    rows = [
        make_row("win", question="sync"),
        make_row("loss", question="quality"),
        make_row("win", pair="p2", baseline="C"),
        make_row("win", pair="p3", model="C", baseline="M"),
    ]
    out = net_win_rates(pd.DataFrame(rows), n_boot=0)
    keys = list(zip(out["model"], out["baseline"], out["question"]))
    assert keys == [("C", "M", "overall"), ("M", "B", "quality"), ("M", "B", "sync"), ("M", "C", "overall")]
    assert out["net_win_rate"].tolist() == [100.0, -100.0, 100.0, 100.0]


def test_gold_checks_do_not_count(make_row):
    rows = [make_row("win"), make_row("loss", pair="g1", is_gold=True, gold_answer="right")]
    out = net_win_rates(pd.DataFrame(rows), n_boot=0)
    assert out.loc[0, "n"] == 1 and out.loc[0, "net_win_rate"] == 100.0


def test_all_ties(make_row):
    rows = [make_row("tie", pair=f"p{i}", rater=f"r{i % 3}") for i in range(12)]
    row = net_win_rates(pd.DataFrame(rows), n_boot=200).iloc[0]
    assert (row["wins"], row["ties"], row["losses"]) == (0, 12, 0)
    assert row["tie_rate"] == 100.0 and row["net_win_rate"] == 0.0
    assert row["sigma"] == 0.0 and (row["ci_low"], row["ci_high"]) == (0.0, 0.0)
    assert row["significance"] == "not significant"


def test_baseline_never_beaten(make_row):
    rows = [make_row("loss", pair=f"p{i}", rater=f"r{i % 4}", model_left=i % 2 == 0) for i in range(20)]
    row = net_win_rates(pd.DataFrame(rows), n_boot=200).iloc[0]
    assert row["net_win_rate"] == -100.0 and row["loss_rate"] == 100.0
    assert (row["ci_low"], row["ci_high"]) == (-100.0, -100.0)
    assert row["significance"] == "significant"


def test_single_rater_uses_prompt_clusters_only(make_row):
    # 40 prompts, one judgment each: 20 wins, 10 ties, 10 losses, all from one rater.
    results = ["win"] * 20 + ["tie"] * 10 + ["loss"] * 10
    rows = [make_row(r, pair=f"p{i}", rater="only") for i, r in enumerate(results)]
    row = net_win_rates(pd.DataFrame(rows), n_boot=2000, seed=1).iloc[0]
    assert row["net_win_rate"] == pytest.approx(25.0)
    # Independent prompts: the standard error of a mean of +1/0/-1 values, sd/sqrt(n) with the
    # population variance 0.75 - 0.25**2 = 0.6875, times 100 and the bootstrap's G/(G-1) correction.
    expected = 100 * np.sqrt(0.6875 / 40 * 40 / 39)
    assert row["sigma"] == pytest.approx(expected, rel=0.08)
    assert row["ci_low"] < 25.0 < row["ci_high"]
    assert row["n_raters"] == 1


def test_one_prompt_and_one_rater_is_insufficient(make_row):
    rows = [make_row("win", pair="p1", prompt="x"), make_row("loss", pair="p2", prompt="x")]
    row = net_win_rates(pd.DataFrame(rows), n_boot=100).iloc[0]
    assert np.isnan(row["sigma"]) and np.isnan(row["ci_low"])
    assert row["significance"] == "insufficient data"


def test_majority_of_three(make_row):
    votes = {
        "p1": ["win", "win", "loss"],  # -> win
        "p2": ["win", "tie", "tie"],  # -> tie
        "p3": ["win", "loss", "tie"],  # no strict plurality -> tie
        "p4": ["loss", "loss", "win"],  # -> loss
        "p5": ["win", "win"],  # incomplete: left out
    }
    rows = [
        make_row(r, pair=p, rater=f"r{k}", model_left=k == 1)
        for p, rs in votes.items()
        for k, r in enumerate(rs)
    ]
    row = net_win_rates(pd.DataFrame(rows), raters_per_item=3, n_boot=0).iloc[0]
    assert (row["n"], row["wins"], row["ties"], row["losses"]) == (4, 1, 2, 1)
    assert row["net_win_rate"] == 0.0
    assert row["n_incomplete"] == 2 and row["n_judgments"] == 12
    single = net_win_rates(pd.DataFrame(rows), n_boot=0).iloc[0]  # every judgment counts
    assert (single["n"], single["wins"], single["ties"], single["losses"]) == (14, 7, 3, 4)


def test_plurality_rule():
    wins, ties, losses = (
        np.array([2, 1, 1, 0, 1, 0]),
        np.array([0, 2, 1, 0, 0, 3]),
        np.array([1, 0, 1, 3, 1, 0]),
    )
    assert plurality(wins, ties, losses).tolist() == [1, 0, 0, -1, 0, 0]


def test_sigma_from_repeated_annotations(make_row):
    # Two items rated three times; round k is the k-th judgment of each item (table order).
    rows = [
        make_row("win", pair="a", rater="r1"), make_row("win", pair="b", rater="r1"),
        make_row("win", pair="a", rater="r2"), make_row("tie", pair="b", rater="r2"),
        make_row("loss", pair="a", rater="r3"), make_row("win", pair="b", rater="r3"),
    ]  # fmt: skip
    row = net_win_rates(pd.DataFrame(rows), n_boot=0).iloc[0]
    # Rounds: (win, win) = 100, (win, tie) = 50, (loss, win) = 0 -> std (ddof 1) = 50.
    assert row["n_repeats"] == 3
    assert row["sigma_repeat"] == pytest.approx(50.0)
    assert row["significance"] == "not significant"  # 33.3 < 50
    # The same rounds given explicitly, in a shuffled table, give the same sigma.
    explicit = pd.DataFrame(rows).assign(repeat=[0, 0, 1, 1, 2, 2]).iloc[::-1]
    assert net_win_rates(explicit, n_boot=0).iloc[0]["sigma_repeat"] == pytest.approx(50.0)


def test_rounds_of_majority_votes(make_row):
    # Two rounds of 3 raters on one item: round 0 votes win, round 1 votes loss.
    results = ["win", "win", "tie", "loss", "loss", "win"]
    rows = [make_row(r, rater=f"r{i}") for i, r in enumerate(results)]
    row = net_win_rates(pd.DataFrame(rows), raters_per_item=3, n_boot=0).iloc[0]
    assert (row["n"], row["wins"], row["losses"], row["n_repeats"]) == (2, 1, 1, 2)
    assert row["sigma_repeat"] == pytest.approx(np.std([100.0, -100.0], ddof=1))


@pytest.mark.parametrize(
    ("nwr", "sigma", "label"),
    [(10.0, 4.9, "significant"), (-10.0, 4.9, "significant"), (10.0, 5.0, "moderate"), (10.0, 9.9, "moderate"),
     (10.0, 10.0, "not significant"), (0.0, 0.0, "not significant"), (5.0, float("nan"), "insufficient data")],
)  # fmt: skip
def test_significance_label(nwr, sigma, label):
    assert significance_label(nwr, sigma) == label


def test_deterministic_and_independent_of_other_groups(make_row):
    rng = np.random.default_rng(0)
    rows = [
        make_row(str(rng.choice(["win", "tie", "loss"])), pair=f"p{i}", rater=f"r{i % 5}") for i in range(60)
    ]
    alone = net_win_rates(pd.DataFrame(rows), n_boot=200, seed=3)
    other = [make_row("win", pair=f"q{i}", rater=f"r{i % 5}", baseline="C") for i in range(10)]
    together = net_win_rates(pd.DataFrame(rows + other), n_boot=200, seed=3)
    assert alone.iloc[0].equals(together[together["baseline"] == "B"].iloc[0])
    assert not net_win_rates(pd.DataFrame(rows), n_boot=200, seed=4).iloc[0].equals(alone.iloc[0])


def test_bad_settings(make_row):
    df = pd.DataFrame([make_row("win")])
    with pytest.raises(ValueError, match="raters_per_item must be a positive integer"):
        net_win_rates(df, raters_per_item=0)
    with pytest.raises(ValueError, match="n_boot=5 is too few"):
        net_win_rates(df, n_boot=5)
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        net_win_rates(df, confidence=95)


def test_interval_covers_the_true_value_at_the_nominal_rate():
    """95% intervals on simulated studies with prompt and rater effects cover the population value ~95%.

    Ignoring the clustering (every judgment its own prompt, one rater) makes the intervals too
    narrow on the same studies: the check can fail, and fails for the naive method.
    """
    config = SimulationConfig(
        systems={"model": 1060.0, "base": 1000.0}, questions=("q",), n_prompts=40, n_raters=10,
        raters_per_item=2, prompt_sd=1.0, rater_sd=0.6,
    )  # fmt: skip
    truth = true_net_win_rate(config, "base")
    clustered, naive = [], []
    for seed in range(100):
        df = validate_judgments(simulate_judgments(config, seed=seed))
        row = net_win_rates(df, n_boot=100, seed=seed).iloc[0]
        clustered.append(row["ci_low"] <= truth <= row["ci_high"])
        # Only ids change, so the validated table stays valid (and is not checked again).
        ids = [f"j{i}" for i in range(len(df))]
        row = net_win_rates(
            df.assign(prompt_id=ids, pair_id=ids, rater_id="anyone"), n_boot=100, seed=seed
        ).iloc[0]
        naive.append(row["ci_low"] <= truth <= row["ci_high"])
    assert 0.9 <= np.mean(clustered) <= 0.99
    assert np.mean(naive) < np.mean(clustered) - 0.05
