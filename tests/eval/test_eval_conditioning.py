"""`conditioning.json` (written by `avgen diagnose`): reader, writer, and its gaps in `avgen eval` reports."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from eval.claims import conditioning_claims
from eval.cli import main
from eval.conditioning import (
    ConditioningFile,
    ConditioningSystem,
    gap_name,
    read_conditioning,
    to_frame,
    write_conditioning,
)
from eval.reader import EvalInputError


def _row(task: str, modality: str, t: float | str, gap: float, half_width: float) -> dict:
    return {"task": task, "modality": modality, "t": t, "n": 16, "own": 1.0, "own_ci_low": 0.9, "own_ci_high": 1.1,
            "wrong": 1.0 + gap, "wrong_ci_low": 0.9 + gap, "wrong_ci_high": 1.1 + gap, "gap": gap,
            "gap_ci_low": gap - half_width, "gap_ci_high": gap + half_width}


def _file() -> ConditioningFile:
    rows_used = [_row(task, mod, t, 0.2, 0.05) for task, mod in (("v2a", "audio"), ("text", "video"))
                 for t in (0.3, 0.9, "all")]
    rows_ignored = [_row(task, mod, t, 0.0, 0.01) for task, mod in (("v2a", "audio"), ("text", "video"))
                    for t in (0.3, 0.9, "all")]
    return ConditioningFile(systems=[ConditioningSystem("moe", "moe.ckpt", "abc", 16, rows_used),
                                     ConditioningSystem("untrained", "u.ckpt", "def", 16, rows_ignored)],
                            t_grid=[0.3, 0.9], cache="cache", split="val", seed=0, n_boot=100)


def test_roundtrip_csv_and_names(tmp_path: Path) -> None:
    paths = write_conditioning(_file(), tmp_path)
    data = read_conditioning(paths["json"])
    assert [s.name for s in data.systems] == ["moe", "untrained"] and data.t_grid == [0.3, 0.9]
    assert data.systems[0].rows[0]["gap_ci_low"] == pytest.approx(0.15)
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == 12 and list(csv.columns[:4]) == ["system", "task", "modality", "t"]
    assert gap_name("v2a", "audio", 0.9) == "v2a_gap@t0.9" and gap_name("text", "video", "all") == "text_gap_video"
    # The rows are what the claims module takes: the used condition is claimed, the ignored one not.
    claims = conditioning_claims(to_frame(data).to_dict("records"), t=0.9)
    shown = {(c.system, c.task) for c in claims if c.ci[0] > c.floor_ci[1]}
    assert shown == {("moe", "v2a"), ("moe", "text")}


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such conditioning file"),
    ("{not json", "cannot read it as JSON"),
    (json.dumps({"format": "other"}), "not a conditioning file"),
    (json.dumps({"format": "avgen-conditioning", "version": 9}), "version"),
    (json.dumps({"format": "avgen-conditioning", "version": 1, "systems": []}), "no systems"),
    (json.dumps({"format": "avgen-conditioning", "version": 1, "systems": [{"name": "a", "rows": [{"task": "v2a"}]}]}),
     "lacks"),
])
def test_bad_files_are_refused(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "conditioning.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EvalInputError, match=message):
        read_conditioning(path)


def test_eval_report_includes_the_gaps(small_sets: dict[str, Path], tmp_path: Path) -> None:
    paths = write_conditioning(_file(), tmp_path / "diag")
    out = tmp_path / "report"
    assert main(["--generated", f"sync={small_sets['sync']}", "--metrics", "flicker", "--bootstrap", "20",
                 "--no-progress", "--conditioning", str(paths["json"]), "--out", str(out)]) == 0
    frame = pd.read_csv(out / "report.csv")
    gaps = frame[frame.metric.str.startswith("cond/")].set_index(["system", "metric"])
    assert len(gaps) == 12
    assert gaps.loc[("moe", "cond/v2a_gap@t0.9"), "value"] == pytest.approx(0.2)
    assert gaps.loc[("untrained", "cond/text_gap_video"), "ci_low"] == pytest.approx(-0.01)
    report = json.loads((out / "report.json").read_text())
    assert report["conditioning"]["systems"][0]["name"] == "moe"
    page = (out / "report.html").read_text()
    assert "Conditioning gaps" in page and "<b>0.2 [0.15, 0.25]</b>" in page
    assert page.count("data:image/png;base64,") >= 2  # the flicker plot and the gap plot


def test_eval_refuses_a_bad_conditioning_file(small_sets: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--generated", str(small_sets["sync"]), "--metrics", "flicker", "--no-progress",
                 "--conditioning", str(tmp_path / "none.json")]) == 2
    assert "no such conditioning file" in capsys.readouterr().err
