"""Leaderboard: Bradley-Terry scores on an Elo-like scale, per question, with bootstrap intervals.

The model is P(a beats b) = 1 / (1 + 10 ** ((score_b - score_a) / 400)). As Chatbot Arena does, it
is fitted by scikit-learn's logistic regression without intercept on rows with +ln 10 in system a's
column and -ln 10 in system b's, so the coefficient beta of a system gives score = 400 * beta + base.
A tie counts as half a win each way (a row of each outcome with weight 1/2). Every judgment also
enters mirrored (b against a, the outcome flipped), which leaves the likelihood's maximum where it
is and guarantees logistic regression sees both classes even when one side always won.

Scores are only defined up to a common shift: they are centered so their mean is `base`, or so the
`anchor` system scores exactly `base`. Intervals are score -/+ t sigma, sigma from the two-way
clustered bootstrap over prompts and raters (`bootstrap.py`), refitting on each replicate with the
batched solver of `bt_newton.py` (the same objective, thousands of replicates per call).

Legend: K systems, N compared pairs (a < b), J judgments, B replicates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from .bootstrap import TwoWayBootstrap, check_bootstrap_args, group_rng, single_blas_thread
from .bt_newton import fit_bradley_terry_batch
from .schema import rated, validate_judgments

COLUMNS = ["question", "rank", "system", "score", "ci_low", "ci_high", "n", "wins", "ties", "losses", "note"]
LN10 = float(np.log(10.0))


def _design(pairs: np.ndarray, n_systems: int) -> np.ndarray:
    """(4N, K) rows of the logistic regression: +ln10 for a, -ln10 for b; then the mirrored rows."""
    n = len(pairs)
    x = np.zeros((n, n_systems))
    x[np.arange(n), pairs[:, 0]] = LN10
    x[np.arange(n), pairs[:, 1]] = -LN10
    return np.concatenate([x, x, -x, -x])


def _targets(n_pairs: int) -> np.ndarray:
    """(4N,) labels matching `_design`: a wins, b wins, then the mirror of each."""
    return np.repeat([1, 0, 1, 0], n_pairs)


def _row_weights(counts: np.ndarray) -> np.ndarray:
    """(..., 4N) sample weights from (..., N, 3) counts of (a wins, tie, b wins); ties split in half."""
    a, t, b = counts[..., 0], counts[..., 1], counts[..., 2]
    a_wins, b_wins = a + t / 2, b + t / 2
    return np.concatenate([a_wins, b_wins, b_wins, a_wins], axis=-1)


def make_model(C: float) -> LogisticRegression:
    """The estimator: no intercept (scores are relative), a very weak L2 penalty.

    A large C makes the fit the maximum-likelihood one wherever that exists; where a system never
    lost (or never won) the likelihood keeps growing, and the tiny penalty keeps its score finite
    instead of letting the optimizer run off (the leaderboard's note column says so).
    """
    return LogisticRegression(fit_intercept=False, C=C, solver="lbfgs", max_iter=2000, tol=1e-10)


def fit_bradley_terry(pairs: np.ndarray, counts: np.ndarray, n_systems: int, *, C: float = 1e6) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry coefficients (base-10 logits) by logistic regression.

    Args:
        pairs: (N, 2) int system indices (a, b) of each compared pair.
        counts: (N, 3) float weighted counts of (a wins, tie, b wins).
        n_systems: K.
        C: inverse strength of the L2 penalty of scikit-learn's LogisticRegression.

    Returns:
        (K,) coefficients beta, centered to mean 0; P(a beats b) = 1 / (1 + 10 ** (beta_b - beta_a)).
    """
    model = make_model(C)
    weights = _row_weights(counts)
    keep = weights > 0
    with warnings.catch_warnings():
        # With a separated design (a system never lost) lbfgs may stop on its iteration budget while
        # still creeping towards infinity; the note column of the leaderboard reports that case.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(_design(pairs, n_systems)[keep], _targets(len(pairs))[keep], sample_weight=weights[keep])
    beta = model.coef_[0].copy()
    return beta - beta.mean()


def _structure_notes(
    pairs: np.ndarray, counts: np.ndarray, systems: list[str]
) -> tuple[list[str], np.ndarray]:
    """Why a score may not be a finite estimate: never compared, never lost, or never won across a cut.

    The maximum-likelihood scores exist exactly when the "beat at least once" graph (a tie is an
    edge both ways) is strongly connected (Zermelo, 1929); otherwise some gaps are unbounded.

    Returns:
        A note per system ("" when its score is a plain estimate) and a (K,) bool mask of the
        reference group: the largest set of systems that all beat one another (a strong component),
        whose scores are estimated relative to each other whatever happens elsewhere.
    """
    n_systems = len(systems)
    a, b = pairs[:, 0], pairs[:, 1]
    total = counts.sum(axis=1) > 0
    beats = counts[:, 0] + counts[:, 1] > 0  # a beat b (a tie counts as a beat both ways)
    beaten = counts[:, 2] + counts[:, 1] > 0
    graph = sp.csr_matrix(
        (np.ones(int(beats.sum() + beaten.sum())), (np.r_[a[beats], b[beaten]], np.r_[b[beats], a[beaten]])),
        shape=(n_systems, n_systems),
    )
    undirected = sp.csr_matrix(
        (np.ones(int(total.sum())), (a[total], b[total])), shape=(n_systems, n_systems)
    )
    n_weak, weak = connected_components(undirected, directed=False)
    n_strong, strong = connected_components(graph, directed=True, connection="strong")
    names = np.asarray(systems, dtype=object)
    notes = [""] * n_systems
    if n_weak > 1:
        largest = np.bincount(weak).argmax()
        for k in range(n_systems):
            if weak[k] != largest:
                notes[k] = "never compared with the main group of systems: score not comparable"
    if n_strong > 1:
        # Across strong components the "beat" edges all point one way, so a system beaten from
        # outside its component was never beaten back by it, and vice versa.
        src, dst = graph.nonzero()
        cross = strong[src] != strong[dst]
        src, dst = src[cross], dst[cross]
        for k in range(n_systems):
            if notes[k]:
                continue
            c = strong[k]
            above = sorted(set(names[src[strong[dst] == c]]))
            below = sorted(set(names[dst[strong[src] == c]]))
            parts = [f"never beat {_listing(above)}"] * bool(above) + [
                f"never lost to {_listing(below)}"
            ] * bool(below)
            if parts:
                notes[k] = "; ".join(parts) + ": score gap is only a bound"
    return notes, strong == np.bincount(strong).argmax()


def _listing(names: list[str], limit: int = 3) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _pair_cells(g: pd.DataFrame, systems: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Map each judgment to a cell (pair, outcome from a's side).

    Returns:
        pairs (N, 2) with a < b, cell (J,) = 3 * pair + {0: a wins, 1: tie, 2: b wins}, and N.
    """
    index = {s: i for i, s in enumerate(systems)}
    left = g["system_left"].map(index).to_numpy()
    right = g["system_right"].map(index).to_numpy()
    a, b = np.minimum(left, right), np.maximum(left, right)
    # strength > 0 means the right clip was preferred; seen from a, that is a loss if a was on the left.
    right_preferred = np.sign(g["strength"].to_numpy())
    a_result = np.where(left == a, -right_preferred, right_preferred)  # +1 a won, 0 tie, -1 b won
    pair_codes, pair_uniq = pd.factorize(pd.Series(a * len(systems) + b), sort=True)
    pairs = np.stack([pair_uniq.to_numpy() // len(systems), pair_uniq.to_numpy() % len(systems)], axis=1)
    return pairs, 3 * pair_codes + (1 - a_result), len(pairs)


def _replicate_betas(
    pairs: np.ndarray,
    cell: np.ndarray,
    beta: np.ndarray,
    estimable: np.ndarray,
    anchor_idx: int | None,
    C: float,
    bar: tqdm,
) -> Callable[[np.ndarray], np.ndarray]:
    """Refit as a function of judgment weights: (b, J) -> (b, K) coefficients aligned with `beta`.

    The refits use the batched Newton solver of `bt_newton` (same objective as scikit-learn's,
    thousands of replicates per call). A system absent from a replicate gets NaN there. Alignment:
    the anchor keeps its full-fit value, or else the replicate's systems of the reference group
    keep their full-fit mean, so that a system missing from one replicate cannot shift the others.
    """
    n_pairs, k = len(pairs), len(beta)
    member = sp.csr_matrix((np.ones(len(cell)), (np.arange(len(cell)), cell)), shape=(len(cell), 3 * n_pairs))
    seen_by = np.zeros((3 * n_pairs, k))  # (3N, K): which systems a (pair, outcome) cell involves
    seen_by[np.arange(3 * n_pairs), np.repeat(pairs[:, 0], 3)] = 1.0
    seen_by[np.arange(3 * n_pairs), np.repeat(pairs[:, 1], 3)] = 1.0

    def statistic(weights: np.ndarray) -> np.ndarray:
        cell_w = np.asarray((member.T @ weights.T).T)  # (b, 3N) weighted counts per (pair, outcome)
        present = cell_w @ seen_by > 0  # (b, K)
        reps = fit_bradley_terry_batch(pairs, cell_w.reshape(len(weights), n_pairs, 3), k, C=C, init=beta)
        ref = (
            np.broadcast_to(np.eye(k, dtype=bool)[anchor_idx], present.shape)
            if anchor_idx is not None
            else present & estimable
        )
        ref = np.where(ref.any(axis=1, keepdims=True), ref, present)
        n_ref = ref.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = ((reps - beta) * ref).sum(axis=1, keepdims=True) / n_ref
        reps = np.where(present, reps - shift, np.nan)
        unusable = present.sum(axis=1) < 2
        if anchor_idx is not None:
            unusable |= ~present[:, anchor_idx]
        reps[unusable] = np.nan
        bar.update(len(weights))
        return reps

    return statistic


def _question_board(
    question: str, g: pd.DataFrame, *, n_boot: int, seed: int, confidence: float, C: float,
    anchor: str | None, scale: float, base: float, progress: bool,
) -> pd.DataFrame:  # fmt: skip
    systems = sorted(set(g["system_left"]) | set(g["system_right"]))
    k = len(systems)
    pairs, cell, n_pairs = _pair_cells(g, systems)
    counts = np.bincount(cell, minlength=3 * n_pairs).reshape(n_pairs, 3).astype(np.float64)
    if anchor is not None and anchor not in systems:
        raise ValueError(
            f"anchor system {anchor!r} was not judged on question {question!r}; systems: {systems}."
        )
    beta = fit_bradley_terry(pairs, counts, k, C=C)
    notes, estimable = _structure_notes(pairs, counts, systems)
    # Center on the reference group: a system that never lost has a huge coefficient set only by
    # the penalty, and averaging it in would drag every other score down.
    shift = beta[systems.index(anchor)] if anchor is not None else beta[estimable].mean()
    score = base + scale * (beta - shift)

    ci = np.full((k, 2), np.nan)
    boot = TwoWayBootstrap.from_judgments(
        np.arange(len(g)), g["prompt_id"].to_numpy(), g["rater_id"].to_numpy()
    )
    if n_boot > 0 and boot.informative:
        anchor_idx = systems.index(anchor) if anchor is not None else None
        bar = tqdm(total=3 * n_boot, desc=f"leaderboard {question}", disable=not progress, leave=False)
        with bar, single_blas_thread():
            # The products are small: BLAS threads would only add synchronization.
            statistic = _replicate_betas(pairs, cell, beta, estimable, anchor_idx, C, bar)
            sigma = scale * boot.sigma(statistic, n_boot, group_rng(seed, question))  # (K,)
        ci = np.stack(boot.interval(score, sigma, confidence), axis=1)

    # Wins, ties and losses of each system, from its own side.
    wins, ties, losses = np.zeros(k, int), np.zeros(k, int), np.zeros(k, int)
    for (a, b), (aw, t, bw) in zip(pairs, counts.astype(int)):
        wins[a] += aw
        losses[a] += bw
        wins[b] += bw
        losses[b] += aw
        ties[a] += t
        ties[b] += t
    board = pd.DataFrame({
        "question": question, "system": systems, "score": score, "ci_low": ci[:, 0], "ci_high": ci[:, 1],
        "n": wins + ties + losses, "wins": wins, "ties": ties, "losses": losses,
        "note": notes,
    })  # fmt: skip
    board = board.sort_values(["score", "system"], ascending=[False, True]).reset_index(drop=True)
    board.insert(1, "rank", np.arange(1, k + 1))
    return board


def leaderboard(
    df: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    C: float = 1e6,
    anchor: str | None = None,
    scale: float = 400.0,
    base: float = 1000.0,
    progress: bool = False,
) -> pd.DataFrame:
    """Bradley-Terry scores of every system shown, per question, best first.

    Every non-gold judgment counts once (no majority vote: the model is fitted to single comparisons).

    Args:
        df: judgments (raw or validated).
        n_boot: bootstrap replicates (0: no intervals).
        seed: bootstrap seed; each question's generator depends on its name only.
        confidence: coverage of the intervals.
        C: inverse L2 penalty of the logistic regression (large: practically maximum likelihood).
        anchor: system pinned at `base` (its interval then has zero width and the others' intervals
            are relative to it); None centers the scores on `base`.
        scale: points per factor of 10 in odds (400, as Elo and Chatbot Arena).
        base: the mean (or the anchor's) score.
        progress: show progress bars over questions and replicates.

    Returns:
        Columns `COLUMNS`: question, rank, system, score, ci_low, ci_high, n (judgments involving the
        system), wins, ties, losses, and a note when the score is only a bound or not comparable.
    """
    check_bootstrap_args(n_boot, confidence)
    if not C > 0:
        raise ValueError(f"C must be > 0 (large means nearly no penalty; 1e6 is the default), got {C!r}.")
    judged = rated(validate_judgments(df))
    if judged.empty:
        return pd.DataFrame(columns=COLUMNS)
    questions = judged.groupby("question", sort=True)
    boards = [
        _question_board(
            str(q),
            g,
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
            C=C,
            anchor=anchor,
            scale=scale,
            base=base,
            progress=progress,
        )  # fmt: skip
        for q, g in tqdm(questions, total=questions.ngroups, desc="leaderboard", disable=not progress)
    ]
    return pd.concat(boards, ignore_index=True)[COLUMNS]
