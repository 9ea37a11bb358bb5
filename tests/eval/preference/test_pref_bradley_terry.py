"""Bradley-Terry leaderboard: closed forms, a direct maximum-likelihood fit with scipy, and edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import log_expit

from eval.preference import leaderboard
from eval.preference.bradley_terry import COLUMNS, fit_bradley_terry
from eval.preference.bt_newton import fit_bradley_terry_batch


def _battle(a: str, b: str, result: str, i: int, question: str = "overall") -> dict[str, object]:
    """a shown left against b; result is a's "win", "tie" or "loss"."""
    answer = {"win": "left", "tie": "tie", "loss": "right"}[result]
    return {
        "pair_id": f"{a}-{b}-{i}", "prompt_id": f"x{i % 7}", "system_left": a, "system_right": b, "model": a,
        "baseline": b, "rater_id": f"r{i % 5}", "question": question, "answer": answer,
    }  # fmt: skip


def _scores(board: pd.DataFrame) -> dict[str, float]:
    return dict(zip(board["system"], board["score"]))


def test_two_systems_closed_form():
    # A beats B 3 times out of 4: P = 3/4 = 1 / (1 + 10 ** (-d / 400)) -> d = 400 log10(3).
    rows = [_battle("A", "B", r, i) for i, r in enumerate(["win", "win", "win", "loss"])]
    board = leaderboard(pd.DataFrame(rows), n_boot=0)
    assert list(board.columns) == COLUMNS
    s = _scores(board)
    assert s["A"] - s["B"] == pytest.approx(400 * np.log10(3), abs=0.01)
    assert (s["A"] + s["B"]) / 2 == pytest.approx(1000.0)
    assert board["system"].tolist() == ["A", "B"] and board["rank"].tolist() == [1, 2]
    assert board.set_index("system").loc["A", ["n", "wins", "ties", "losses"]].tolist() == [4, 3, 0, 1]


def test_a_tie_is_half_a_win_each_way():
    # 1 win and 2 ties = 2 wins out of 3 for A: d = 400 log10(2 / 1).
    rows = [_battle("A", "B", r, i) for i, r in enumerate(["win", "tie", "tie"])]
    s = _scores(leaderboard(pd.DataFrame(rows), n_boot=0))
    assert s["A"] - s["B"] == pytest.approx(400 * np.log10(2), abs=0.01)
    # Sides do not matter: the same results with B shown on the left.
    mirrored = [
        _battle("B", "A", {"win": "loss", "tie": "tie"}[r], i) for i, r in enumerate(["win", "tie", "tie"])
    ]
    s2 = _scores(leaderboard(pd.DataFrame(mirrored), n_boot=0))
    assert s2["A"] - s2["B"] == pytest.approx(s["A"] - s["B"], abs=1e-6)


def test_all_ties_give_equal_scores():
    rows = [_battle("A", "B", "tie", i) for i in range(10)] + [_battle("B", "C", "tie", i) for i in range(10)]
    board = leaderboard(pd.DataFrame(rows), n_boot=100)
    assert board["score"].to_numpy() == pytest.approx([1000.0, 1000.0, 1000.0], abs=1e-6)
    assert (board["note"] == "").all()


def _direct_mle(rows: list[dict[str, object]], systems: list[str]) -> np.ndarray:
    """Maximize the Bradley-Terry likelihood (ties = half a win each way) with scipy, no penalty."""
    index = {s: i for i, s in enumerate(systems)}
    a = np.array([index[r["system_left"]] for r in rows])
    b = np.array([index[r["system_right"]] for r in rows])
    y = np.array([{"left": 1.0, "tie": 0.5, "right": 0.0}[r["answer"]] for r in rows])

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta = np.r_[0.0, theta]  # the first system fixes the shift
        d = np.log(10) * (beta[a] - beta[b])
        value = -(y * log_expit(d) + (1 - y) * log_expit(-d)).sum()
        resid = np.log(10) * (y - 1 / (1 + np.exp(-d)))
        grad = np.zeros(len(systems))
        np.add.at(grad, a, -resid)
        np.add.at(grad, b, resid)
        return value, grad[1:]

    fit = minimize(nll, np.zeros(len(systems) - 1), jac=True, method="BFGS", options={"gtol": 1e-10})
    beta = np.r_[0.0, fit.x]
    return 1000 + 400 * (beta - beta.mean())


def test_matches_a_direct_maximum_likelihood_fit():
    rng = np.random.default_rng(0)
    true = {"A": 1150.0, "B": 1000.0, "C": 980.0, "D": 850.0}
    rows = []
    for i in range(600):
        a, b = rng.choice(list(true), 2, replace=False)
        p = 1 / (1 + 10 ** ((true[b] - true[a]) / 400))
        u = rng.random()
        rows.append(_battle(a, b, "win" if u < 0.85 * p else ("tie" if u < 0.85 * p + 0.15 else "loss"), i))
    systems = sorted(true)
    expected = dict(zip(systems, _direct_mle(rows, systems)))
    got = _scores(leaderboard(pd.DataFrame(rows), n_boot=0))
    for s in systems:
        assert got[s] == pytest.approx(expected[s], abs=0.05)


def test_bootstrap_interval_contains_the_truth_and_anchor_pins():
    rng = np.random.default_rng(1)
    true = {"A": 1100.0, "B": 1000.0, "C": 900.0}
    rows = []
    for i in range(900):
        a, b = rng.choice(list(true), 2, replace=False)
        p = 1 / (1 + 10 ** ((true[b] - true[a]) / 400))
        rows.append(_battle(a, b, "win" if rng.random() < p else "loss", i))
    board = leaderboard(pd.DataFrame(rows), n_boot=200, anchor="B").set_index("system")
    assert board.loc["B", "score"] == 1000.0
    assert board.loc["B", "ci_low"] == pytest.approx(1000.0) and board.loc["B", "ci_high"] == pytest.approx(
        1000.0
    )
    for s in ("A", "C"):
        assert board.loc[s, "ci_low"] < true[s] < board.loc[s, "ci_high"]
        assert 10 < board.loc[s, "ci_high"] - board.loc[s, "ci_low"] < 200
    # Same data, centered instead of anchored: same gaps.
    centered = leaderboard(pd.DataFrame(rows), n_boot=0).set_index("system")["score"]
    assert centered["A"] - centered["C"] == pytest.approx(board.loc["A", "score"] - board.loc["C", "score"])


def test_never_beaten_system_is_noted_and_does_not_drag_the_others():
    rows = [_battle("A", "B", "win", i) for i in range(5)]  # A never lost
    rows += [_battle("B", "C", r, i) for i, r in enumerate(["win", "win", "win", "loss"])]
    board = leaderboard(pd.DataFrame(rows), n_boot=0).set_index("system")
    assert board.loc["A", "note"].startswith("never lost to B")
    assert board.loc["B", "note"].startswith("never beat A")
    # C never met A, but its group never beat A: its gap to A is a bound too.
    assert board.loc["C", "note"].startswith("never beat A")
    # B and C beat each other: they form the reference group, centered on 1000, with their usual gap.
    assert (board.loc["B", "score"] + board.loc["C", "score"]) / 2 == pytest.approx(1000.0)
    assert board.loc["B", "score"] - board.loc["C", "score"] == pytest.approx(400 * np.log10(3), abs=0.5)
    assert board.loc["A", "score"] > board.loc["B", "score"] + 400


def test_systems_never_compared_are_noted():
    rows = [_battle("A", "B", r, i) for i, r in enumerate(["win", "loss", "win"])]
    rows += [_battle("C", "D", r, i) for i, r in enumerate(["win", "loss"])]
    notes = leaderboard(pd.DataFrame(rows), n_boot=0).set_index("system")["note"]
    assert notes["C"].startswith("never compared") and notes["D"].startswith("never compared")


def test_per_question_and_gold_excluded():
    rows = [_battle("A", "B", "win", i, "sync") for i in range(3)] + [_battle("A", "B", "loss", 9, "sync")]
    rows += [_battle("A", "B", "loss", i, "quality") for i in range(3)] + [
        _battle("A", "B", "win", 9, "quality")
    ]
    gold = _battle("A", "B", "loss", 99, "sync") | {"is_gold": True, "gold_answer": "right"}
    board = leaderboard(pd.DataFrame([*rows, gold]), n_boot=0)
    assert board["question"].tolist() == ["quality", "quality", "sync", "sync"]
    assert board["system"].tolist() == ["B", "A", "A", "B"]
    assert board["n"].tolist() == [4, 4, 4, 4]


def test_bad_arguments():
    df = pd.DataFrame([_battle("A", "B", "win", 0)])
    with pytest.raises(ValueError, match="anchor system 'Z' was not judged on question 'overall'"):
        leaderboard(df, n_boot=0, anchor="Z")
    with pytest.raises(ValueError, match="C must be > 0"):
        leaderboard(df, C=0)


def test_batched_refits_agree_with_scikit_learn():
    pairs = np.array([[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]])
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 30, size=(6, len(pairs), 3)).astype(float)
    counts[0, 3] = 0.0  # a pair missing from one replicate
    batch = fit_bradley_terry_batch(pairs, counts, 4, C=1e6)
    for replicate, beta in zip(counts, batch):
        assert beta == pytest.approx(fit_bradley_terry(pairs, replicate, 4, C=1e6), abs=1e-6)
    assert batch.sum(axis=1) == pytest.approx(np.zeros(6), abs=1e-9)


def test_batched_refit_stays_finite_when_a_system_never_lost():
    pairs = np.array([[0, 1], [1, 2]])
    counts = np.array([[[5.0, 0.0, 0.0], [3.0, 1.0, 2.0]]])  # system 0 never lost
    beta = fit_bradley_terry_batch(pairs, counts, 3, C=1e6)[0]
    assert np.isfinite(beta).all() and beta[0] - beta[1] > 2.0  # odds of more than 100:1
