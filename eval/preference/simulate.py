"""Simulated pairwise studies with known truth: for examples, tests of coverage, and benchmarks.

Each judgment of the model against a baseline draws a latent preference for the model

    d = (score_model - score_baseline) * ln(10) / 400 + prompt effect + rater effect
        +/- position bias (towards the left clip) + logistic noise,

and answers "model better" when d > tie_threshold, "baseline better" when d < -tie_threshold, a tie
otherwise (on the 5-point scale, |d| > tie_threshold + strong_margin is "much better"). Prompt
effects are drawn per pair and question, rater effects per rater, both normal. Careless raters
answer uniformly at random and fast. The population net win rate (over infinitely many prompts and
raters) is known in closed form up to a 1-D integral: `true_net_win_rate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit


@dataclass
class SimulationConfig:
    """A simulated study of one model against baselines.

    Attributes:
        systems: true Elo-scale quality of each system (the model and its baselines).
        model: which of `systems` is the model under test.
        questions: questions asked about every pair.
        n_prompts: prompts; every baseline is compared with the model on each.
        n_raters: size of the rater pool.
        raters_per_item: distinct raters per pair in each annotation round.
        repeats: annotation rounds (Movie Gen re-annotated its items 4 times).
        prompt_sd: standard deviation (logits) of the per-pair, per-question effect.
        rater_sd: standard deviation (logits) of each rater's leaning towards the model.
        tie_threshold: |d| below this is a tie.
        strong_margin: on the 5-point scale, |d| above tie_threshold + strong_margin is "much better".
        position_bias: logit added towards the left clip.
        scale: "3-way" (left/tie/right) or "5-point" (1..5).
        careless_raters: how many raters of the pool answer at random, fast.
        gold_per_rater: gold checks (obvious pairs with a known answer) per rater.
        median_seconds: typical time per answer of a careful rater.
    """

    systems: dict[str, float] = field(
        default_factory=lambda: {"model": 1080.0, "baseline_a": 1000.0, "baseline_b": 1040.0}
    )
    model: str = "model"
    questions: tuple[str, ...] = ("overall", "audio quality", "sync")
    n_prompts: int = 100
    n_raters: int = 20
    raters_per_item: int = 3
    repeats: int = 1
    prompt_sd: float = 0.6
    rater_sd: float = 0.3
    tie_threshold: float = 0.6
    strong_margin: float = 1.5
    position_bias: float = 0.0
    scale: str = "3-way"
    careless_raters: int = 0
    gold_per_rater: int = 0
    median_seconds: float = 25.0

    def __post_init__(self) -> None:
        if self.model not in self.systems or len(self.systems) < 2:
            raise ValueError(
                f"systems must hold the model {self.model!r} and at least one baseline, got {list(self.systems)}."
            )
        if not self.questions or len(set(self.questions)) != len(self.questions):
            raise ValueError(
                f"questions must be a non-empty tuple of distinct names, got {self.questions!r}."
            )
        for name in ("n_prompts", "n_raters", "raters_per_item", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}.")
        if self.raters_per_item > self.n_raters:
            raise ValueError(
                f"raters_per_item={self.raters_per_item} exceeds the pool of n_raters={self.n_raters}."
            )
        if not 0 <= self.careless_raters <= self.n_raters:
            raise ValueError(
                f"careless_raters must be between 0 and n_raters={self.n_raters}, got {self.careless_raters}."
            )
        for name in ("prompt_sd", "rater_sd", "tie_threshold", "strong_margin", "median_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.gold_per_rater < 0:
            raise ValueError(f"gold_per_rater must be >= 0, got {self.gold_per_rater!r}.")
        if self.scale not in ("3-way", "5-point"):
            raise ValueError(f"scale must be '3-way' or '5-point', got {self.scale!r}.")

    @property
    def baselines(self) -> list[str]:
        return [s for s in self.systems if s != self.model]


def _logit_gap(config: SimulationConfig, baseline: str) -> float:
    return (config.systems[config.model] - config.systems[baseline]) * np.log(10.0) / 400.0


def true_net_win_rate(config: SimulationConfig, baseline: str) -> float:
    """Population net win rate (percent) of one judgment by a careful rater, sides randomized 50/50.

    E[P(d > tau) - P(d < -tau)] with d's mean normal over prompts and raters, computed by
    Gauss-Hermite quadrature (exact to far below a hundredth of a point).
    """
    if baseline not in config.baselines:
        raise ValueError(f"{baseline!r} is not a baseline of this simulation; baselines: {config.baselines}.")
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # probabilists' Hermite: N(0, 1) weights
    weights = weights / weights.sum()
    spread = np.hypot(config.prompt_sd, config.rater_sd)
    tau = config.tie_threshold
    total = 0.0
    for side in (+1.0, -1.0):  # model shown left (+bias) or right (-bias)
        m = _logit_gap(config, baseline) + side * config.position_bias + spread * nodes
        total += 0.5 * float((weights * (expit(m - tau) - expit(-m - tau))).sum())
    return 100.0 * total


def simulate_judgments(config: SimulationConfig, seed: int = 0) -> pd.DataFrame:
    """Draw a whole study as a judgments table (columns of `schema`, plus `repeat`), in time order.

    Every pair (prompt x baseline) is rated in each round by `raters_per_item` distinct raters, each
    answering every question; sides are randomized per assignment.
    """
    rng = np.random.default_rng(seed)
    cfg = config
    rater_effect = rng.normal(0.0, cfg.rater_sd, cfg.n_raters)
    careless = np.zeros(cfg.n_raters, bool)
    careless[rng.choice(cfg.n_raters, cfg.careless_raters, replace=False)] = True
    n_pairs = cfg.n_prompts * len(cfg.baselines)
    pair_prompt = np.repeat(np.arange(cfg.n_prompts), len(cfg.baselines))
    pair_base = np.tile(np.arange(len(cfg.baselines)), cfg.n_prompts)
    n_q = len(cfg.questions)
    prompt_effect = rng.normal(0.0, cfg.prompt_sd, (n_pairs, n_q))

    # Assignments (round, pair, slot), in time order: round by round.
    r = cfg.raters_per_item
    rounds = np.repeat(np.arange(cfg.repeats), n_pairs * r)
    pairs = np.tile(np.repeat(np.arange(n_pairs), r), cfg.repeats)
    # Distinct raters per (round, pair): the first r of a random permutation of the pool.
    raters = np.argsort(rng.random((cfg.repeats * n_pairs, cfg.n_raters)), axis=1)[:, :r].ravel()
    model_left = rng.random(len(pairs)) < 0.5

    # One row per (assignment, question).
    a_idx = np.repeat(np.arange(len(pairs)), n_q)
    q_idx = np.tile(np.arange(n_q), len(pairs))
    p, rat = pairs[a_idx], raters[a_idx]
    gaps = np.array([_logit_gap(cfg, b) for b in cfg.baselines])
    side = np.where(model_left[a_idx], 1.0, -1.0)
    d = gaps[pair_base[p]] + prompt_effect[p, q_idx] + rater_effect[rat] + side * cfg.position_bias
    d = d + rng.logistic(0.0, 1.0, len(d))
    model_pref = _answer_level(d, cfg)  # from the model's side
    random_pref = rng.integers(-2, 3, len(d)) if cfg.scale == "5-point" else rng.integers(-1, 2, len(d))
    model_pref = np.where(careless[rat], random_pref, model_pref)
    right_pref = np.where(model_left[a_idx], -model_pref, model_pref)

    baseline_names = np.asarray(cfg.baselines, dtype=object)[pair_base[p]]
    left = np.where(model_left[a_idx], cfg.model, baseline_names)
    right = np.where(model_left[a_idx], baseline_names, cfg.model)
    seconds = _seconds(rng, cfg, careless[rat])
    table = pd.DataFrame({
        "study": "simulated", "pair_id": [f"p{pp:04d}-{b}" for pp, b in zip(pair_prompt[p], baseline_names)],
        "prompt_id": [f"p{pp:04d}" for pp in pair_prompt[p]], "system_left": left, "system_right": right,
        "model": cfg.model, "baseline": baseline_names, "rater_id": [f"r{x:03d}" for x in rat],
        "question": np.asarray(cfg.questions, dtype=object)[q_idx], "answer": _format(right_pref, cfg.scale),
        "seconds": seconds, "is_gold": False, "gold_answer": None, "repeat": rounds[a_idx],
    })  # fmt: skip
    if cfg.gold_per_rater:
        table = pd.concat([table, _gold_rows(rng, cfg, careless)], ignore_index=True)
    return table


def _answer_level(d: np.ndarray, cfg: SimulationConfig) -> np.ndarray:
    level = np.where(d > cfg.tie_threshold, 1, np.where(d < -cfg.tie_threshold, -1, 0))
    if cfg.scale == "5-point":
        strong = np.abs(d) > cfg.tie_threshold + cfg.strong_margin
        level = level * np.where(strong, 2, 1)
    return level


def _format(right_pref: np.ndarray, scale: str) -> list[str]:
    if scale == "5-point":
        return [str(int(v) + 3) for v in right_pref]
    return list(np.array(["left", "tie", "right"])[right_pref + 1])


def _seconds(rng: np.random.Generator, cfg: SimulationConfig, careless: np.ndarray) -> np.ndarray:
    median = np.where(careless, 0.15 * cfg.median_seconds, cfg.median_seconds)
    return np.round(median * rng.lognormal(0.0, 0.35, len(careless)), 2)


def _gold_rows(rng: np.random.Generator, cfg: SimulationConfig, careless: np.ndarray) -> pd.DataFrame:
    """Gold checks: an intact clip against a visibly broken one; careful raters get them right 95% of the time."""
    n = cfg.n_raters * cfg.gold_per_rater
    rater = np.repeat(np.arange(cfg.n_raters), cfg.gold_per_rater)
    good_left = rng.random(n) < 0.5
    correct = np.where(careless[rater], rng.random(n) < 1 / 3, rng.random(n) < 0.95)
    good_side = np.where(good_left, "left", "right")
    wrong_side = np.where(good_left, "right", "left")
    answer = np.where(correct, good_side, np.where(rng.random(n) < 0.5, "tie", wrong_side))
    if cfg.scale == "5-point":
        answer = np.array([{"left": "1", "tie": "3", "right": "5"}[a] for a in answer])
    gold_answer = (
        np.where(good_left, "left", "right") if cfg.scale == "3-way" else np.where(good_left, "1", "5")
    )
    ids = [f"gold{k:03d}" for k in range(n)]
    return pd.DataFrame({
        "study": "simulated", "pair_id": ids, "prompt_id": ids,
        "system_left": np.where(good_left, "gold_intact", "gold_broken"),
        "system_right": np.where(good_left, "gold_broken", "gold_intact"),
        "model": "gold_intact", "baseline": "gold_broken", "rater_id": [f"r{x:03d}" for x in rater],
        "question": cfg.questions[0], "answer": answer, "seconds": _seconds(rng, cfg, careless[rater]),
        "is_gold": True, "gold_answer": gold_answer, "repeat": 0,
    })  # fmt: skip
