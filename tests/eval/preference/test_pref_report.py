"""The full report, its files and the `avgen prefs` command."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from av_model.cli import main as avgen
from eval.preference import (
    ReportSettings,
    SimulationConfig,
    full_report,
    leaderboard,
    net_win_rates,
    plot_leaderboard,
    plot_net_win_rates,
    simulate_judgments,
)
from eval.preference.cli import main as prefs

FILES = {
    "net_win_rates.csv", "leaderboard.csv", "agreement.csv", "rater_quality.csv", "position_bias.csv",
    "net_win_rates.png", "leaderboard.png", "summary.json",
}  # fmt: skip


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    config = SimulationConfig(
        n_prompts=12, n_raters=8, questions=("overall", "sync"), careless_raters=1, gold_per_rater=2
    )
    return simulate_judgments(config, seed=0)


def test_full_report_writes_every_file(study, tmp_path):
    result = full_report(study, tmp_path / "report", raters_per_item=3, n_boot=50, seed=1)
    assert {p.name for p in result["files"].values()} == FILES
    assert {p.name for p in (tmp_path / "report").iterdir()} == FILES
    nwr = pd.read_csv(tmp_path / "report" / "net_win_rates.csv")
    pd.testing.assert_frame_equal(nwr, result["tables"]["net_win_rates"], check_dtype=False)
    assert len(nwr) == 4 and (nwr["n"] == 12).all()  # 2 baselines x 2 questions; 12 pairs each
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["settings"]["raters_per_item"] == 3 and summary["settings"]["n_boot"] == 50
    assert summary["counts"]["judgments"] == len(study)
    assert summary["counts"]["gold_judgments"] == 16 and summary["counts"]["prompts"] == 12
    assert summary["tables"]["net_win_rates"][0]["net_win_rate"] == pytest.approx(nwr.loc[0, "net_win_rate"])
    assert len(summary["flagged_raters"]) >= 1 and summary["excluded_raters"] == []
    for name in ("net_win_rates.png", "leaderboard.png"):
        with Image.open(tmp_path / "report" / name) as image:
            assert image.size[0] > 300 and image.size[1] > 200


def test_report_tables_equal_the_functions(study, tmp_path):
    result = full_report(study, tmp_path, n_boot=30, seed=2)
    pd.testing.assert_frame_equal(result["tables"]["net_win_rates"], net_win_rates(study, n_boot=30, seed=2))
    pd.testing.assert_frame_equal(result["tables"]["leaderboard"], leaderboard(study, n_boot=30, seed=2))


def test_excluding_flagged_raters(study, tmp_path):
    result = full_report(study, tmp_path, ReportSettings(n_boot=0), exclude_flagged=True)
    excluded = result["summary"]["excluded_raters"]
    assert excluded and excluded == result["summary"]["flagged_raters"]
    assert result["summary"]["counts"]["judgments_used"] < (~study["is_gold"]).sum()
    assert len(result["tables"]["rater_quality"]) == 8  # still reported for everyone


def test_bad_settings(study, tmp_path):
    with pytest.raises(TypeError, match=r"unknown report setting\(s\) \['boot'\]"):
        full_report(study, tmp_path, boot=10)
    with pytest.raises(ValueError, match="raters_per_item must be >= 1"):
        full_report(study, tmp_path, raters_per_item=0)


def test_plots_need_the_right_tables(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"):
        plot_net_win_rates(pd.DataFrame({"model": []}), tmp_path / "x.png")
    with pytest.raises(ValueError, match="pass leaderboard"):
        plot_leaderboard(pd.DataFrame({"score": []}), tmp_path / "x.png")


def test_cli_simulate_then_report(tmp_path, capsys):
    judgments = tmp_path / "judgments.csv"
    assert (
        prefs(["simulate", "--out", str(judgments), "--prompts", "10", "--raters", "6", "--seed", "1"]) == 0
    )
    assert "True net win rates" in capsys.readouterr().out
    out = tmp_path / "report"
    code = avgen(
        ["prefs", "report", str(judgments), "--out", str(out), "--raters-per-item", "3", "--bootstrap", "40"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for title in (
        "Net win rate of the model",
        "Leaderboard",
        "Agreement between raters",
        "Raters",
        "Position bias",
    ):
        assert title in printed
    assert {p.name for p in out.iterdir()} == FILES


def test_cli_reports_bad_input(tmp_path, capsys, make_row):
    bad = tmp_path / "bad.csv"
    pd.DataFrame([make_row("win")]).drop(columns=["rater_id"]).to_csv(bad, index=False)
    assert prefs(["report", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "avgen prefs report: error:" in err and "['rater_id']" in err
    assert prefs(["report", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    pd.DataFrame([make_row("win")]).to_csv(good, index=False)
    assert prefs(["report", str(good), "--out", str(tmp_path / "r"), "--study", "nope"]) == 2
    assert "study ['nope'] not found" in capsys.readouterr().err
    assert prefs(["report", str(good), "--out", str(tmp_path / "r"), "--bootstrap", "5"]) == 2
    assert "too few replicates" in capsys.readouterr().err
    assert prefs(["simulate", "--out", str(tmp_path / "j.txt")]) == 2
    with pytest.raises(SystemExit):
        prefs(["report", "--help"])
    assert "Judgments columns" in capsys.readouterr().out
