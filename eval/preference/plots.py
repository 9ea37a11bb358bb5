"""Figures for leads: net win rates with error bars, and the leaderboard with its intervals."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the report runs on servers without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _errors(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(2, N) distances to the interval ends, 0 where the interval is unknown (no error bar drawn)."""
    err = np.stack([values - low, high - values])
    return np.nan_to_num(np.clip(err, 0, None), nan=0.0)


def plot_net_win_rates(table: pd.DataFrame, path: str | Path) -> Path:
    """Bar chart of net win rates: one panel per model, questions on the x axis, one bar per baseline.

    Args:
        table: the output of `net_win_rates`.
        path: image file to write (the extension picks the format, e.g. .png or .svg).

    Returns:
        The path written.
    """
    path = Path(path)
    required = {"model", "baseline", "question", "net_win_rate", "ci_low", "ci_high"}
    if not required <= set(table.columns):
        raise ValueError(
            f"the table lacks columns {sorted(required - set(table.columns))}; pass net_win_rates(...)."
        )
    models = sorted(table["model"].unique())
    questions = sorted(table["question"].unique())
    baselines = sorted(table["baseline"].unique())
    fig, axes = plt.subplots(
        len(models),
        1,
        figsize=(
            max(6.0, 1.6 * len(questions) * max(1, len(baselines)) ** 0.5 + 2),
            3.6 * max(1, len(models)),
        ),
        squeeze=False,
    )
    width = 0.8 / max(1, len(baselines))
    colors = plt.get_cmap("tab10")
    for ax, model in zip(axes[:, 0], models):
        sub = table[table["model"] == model]
        for j, baseline in enumerate(baselines):
            rows = sub[sub["baseline"] == baseline].set_index("question").reindex(questions)
            x = np.arange(len(questions)) + (j - (len(baselines) - 1) / 2) * width
            values = rows["net_win_rate"].to_numpy(dtype=float)
            err = _errors(values, rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float))
            ax.bar(
                x,
                np.nan_to_num(values),
                width,
                yerr=err,
                capsize=3,
                color=colors(j % 10),
                label=f"vs {baseline}",
            )
        if len(models) and len(baselines) and len(questions):
            ax.set_xticks(np.arange(len(questions)), questions, rotation=20, ha="right")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylim(-100, 100)
        ax.set_ylabel("net win rate (%)")
        ax.set_title(f"{model}: net win rate (win% - loss%) with bootstrap interval")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_leaderboard(table: pd.DataFrame, path: str | Path) -> Path:
    """Horizontal interval plot of Bradley-Terry scores: one panel per question, best system on top.

    Args:
        table: the output of `leaderboard`.
        path: image file to write.

    Returns:
        The path written.
    """
    path = Path(path)
    required = {"question", "system", "score", "ci_low", "ci_high"}
    if not required <= set(table.columns):
        raise ValueError(
            f"the table lacks columns {sorted(required - set(table.columns))}; pass leaderboard(...)."
        )
    questions = sorted(table["question"].unique())
    n_sys = max([1, *(int((table["question"] == q).sum()) for q in questions)])
    fig, axes = plt.subplots(
        1, max(1, len(questions)), figsize=(4.2 * max(1, len(questions)), 0.45 * n_sys + 1.6), squeeze=False
    )
    for ax, question in zip(axes[0], questions):
        sub = table[table["question"] == question].sort_values("score")
        y = np.arange(len(sub))
        values = sub["score"].to_numpy(dtype=float)
        err = _errors(values, sub["ci_low"].to_numpy(dtype=float), sub["ci_high"].to_numpy(dtype=float))
        ax.errorbar(values, y, xerr=err, fmt="o", capsize=3, color="tab:blue")
        ax.set_yticks(y, sub["system"].tolist())
        ax.set_ylim(-0.6, len(sub) - 0.4)
        ax.set_xlabel("Bradley-Terry score (Elo scale)")
        ax.set_title(str(question))
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
