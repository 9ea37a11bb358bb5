"""Dashboard (admins): net win rates with error bars, the leaderboard, agreement, rater quality,
position bias and progress of a study, all computed by `eval.preference`, refreshed as judgments
arrive."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from eval.preference import (
    JudgmentsError,
    agreement,
    leaderboard,
    net_win_rates,
    plot_net_win_rates,
    position_bias,
    rater_quality,
)
from human_eval_app.studies import judgments_frame, list_studies, study_progress
from human_eval_app.ui import escape_md, get_store, require_admin

store = get_store()
st.title("Dashboard")
require_admin(store)

REFRESH_SECONDS = 15


@st.cache_data(show_spinner="Computing statistics", max_entries=16)
def _statistics(frame: pd.DataFrame, n_boot: int) -> dict[str, pd.DataFrame | str]:
    """Every table of the dashboard (cached per judgments table: it changes with each new answer)."""
    out: dict[str, pd.DataFrame | str] = {}
    for name, fn in {
        "net_win": lambda: net_win_rates(frame, n_boot=n_boot),
        "leaderboard": lambda: leaderboard(frame, n_boot=n_boot),
        "agreement": lambda: agreement(frame),
        "quality": lambda: rater_quality(frame),
        "bias": lambda: position_bias(frame),
    }.items():
        try:
            out[name] = fn()
        except (JudgmentsError, ValueError) as err:  # e.g. too few judgments for this statistic yet
            out[name] = f"not computed yet: {err}"
    if isinstance(out["net_win"], pd.DataFrame) and len(out["net_win"]):
        with tempfile.TemporaryDirectory() as tmp:
            out["plot"] = plot_net_win_rates(out["net_win"], Path(tmp) / "net_win.png").read_bytes()  # type: ignore[assignment]
    return out


def _table(value: pd.DataFrame | str, **kwargs) -> None:
    if isinstance(value, str):
        st.caption(escape_md(value))
    elif value.empty:
        st.caption("No data yet.")
    else:
        st.dataframe(value, hide_index=True, **kwargs)


def _headline(table: pd.DataFrame | str) -> None:
    """One number per question and comparison: the net win rate, with its interval as help."""
    if not isinstance(table, pd.DataFrame) or table.empty:
        return
    for (model, baseline), rows in table.groupby(["model", "baseline"], sort=True):
        st.markdown(f"**{escape_md(model)}** vs **{escape_md(baseline)}**")
        cols = st.columns(max(len(rows), 1))
        for col, row in zip(cols, rows.itertuples()):
            interval = "" if pd.isna(row.ci_low) else f"; interval [{row.ci_low:+.1f}, {row.ci_high:+.1f}]"
            # a metric's label is Markdown: system names and question keys are shown literally
            col.metric(escape_md(f"{row.question} vs {baseline}"), f"{row.net_win_rate:+.1f}",
                       help=f"{row.n} judgments: {row.wins} wins, {row.ties} ties, {row.losses} losses{interval}; "
                            f"{row.significance}")


studies = list_studies(store)
if not studies:
    st.info("No studies yet. Create one on the Studies page or with `avgen study create spec.yaml`.")
    st.stop()
by_name = {s.name: s for s in studies}
name = st.selectbox("Study", list(by_name), index=len(by_name) - 1, key="dash-study")
info = by_name[name]
n_boot = st.sidebar.select_slider("Bootstrap resamples", [0, 100, 200, 500, 1000], value=200, key="dash-nboot")


@st.fragment(run_every=REFRESH_SECONDS)
def _live(study_id: int, n_boot: int) -> None:
    progress = study_progress(store, study_id)
    c = st.columns(4)
    c[0].metric("Ratings", f"{progress.ratings_done} / {progress.ratings_target}",
                help="answered pairs, each pair counted up to its raters per pair")
    c[1].metric("Pairs complete", f"{progress.pairs_complete} / {progress.n_pairs}")
    c[2].metric("Raters joined", len(progress.raters))
    c[3].metric("Judgments", progress.n_judgments)
    st.progress(min(progress.fraction, 1.0))
    frame = judgments_frame(store, study_id)
    if frame.empty:
        st.info(f"No judgments yet; this page refreshes every {REFRESH_SECONDS} s.")
        return
    stats = _statistics(frame, n_boot)

    st.header("Net win rate of the model against each baseline")
    st.caption("win% - loss% from the model's side, per question; bars are bootstrap intervals over prompts "
               "and raters; gold pairs are left out.")
    _headline(stats["net_win"])
    if "plot" in stats:
        st.image(stats["plot"])
    _table(stats["net_win"], column_config={
        "net_win_rate": st.column_config.NumberColumn("net win rate", format="%+.1f"),
        "ci_low": st.column_config.NumberColumn(format="%+.1f"),
        "ci_high": st.column_config.NumberColumn(format="%+.1f"),
    })
    st.header("Leaderboard (Bradley-Terry)")
    _table(stats["leaderboard"])
    left, right = st.columns(2)
    with left:
        st.header("Agreement")
        _table(stats["agreement"])
        st.header("Position bias")
        _table(stats["bias"])
    with right:
        st.header("Raters")
        quality = stats["quality"]
        if isinstance(quality, pd.DataFrame) and not quality.empty:
            names = progress.raters.assign(rater=progress.raters["rater_id"].astype(str))[["rater", "name", "done", "total"]]
            quality = names.merge(quality, on="rater", how="left")
        _table(quality)
    st.caption(f"Updated from {len(frame)} judgments; refreshes every {REFRESH_SECONDS} s.")


_live(info.id, n_boot)
