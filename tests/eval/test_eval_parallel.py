"""`avgen eval --jobs N`: the per-clip work in N processes gives the report of one process."""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path

import pytest

from eval.cli import main
from eval.parallel import ClipTask, run_clip_tasks
from eval.runner import EvalConfig


def _results(out: Path) -> list[dict]:
    report = json.loads((out / "report.json").read_text())
    return [{k: r[k] for k in ("metric", "system", "status", "value", "ci_low", "ci_high", "extra", "per_clip")}
            for r in report["results"]]


def test_jobs_give_the_report_of_one_process(small_sets: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def run(jobs: int) -> Path:
        out = tmp_path / f"jobs{jobs}"
        assert main(["--generated", f"sync={small_sets['sync']}", "--generated", f"late={small_sets['late']}",
                     "--reference", str(small_sets["manifest"]), "--metrics", "events,av_align,motion,flicker",
                     "--bootstrap", "50", "--no-progress", "--out", str(out), "--jobs", str(jobs)]) == 0
        return out

    one, two = run(1), run(2)
    err = capsys.readouterr().err
    assert "per-clip work: " in err and "with 2 processes" in err  # only the run with two said so
    assert _results(one) == _results(two)
    assert json.loads((two / "report.json").read_text())["config"]["jobs"] == 2


def test_bad_clips_are_reported_the_same_with_jobs(set_with_bad_clips: Path, small_sets: dict[str, Path],
                                                   tmp_path: Path) -> None:
    """The screen finds most bad clips first; a task that fails in a worker is computed again by its
    metric, which reports the clip as it would in one process."""
    reports = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        assert main(["--generated", f"gen={set_with_bad_clips}", "--reference", str(small_sets["manifest"]),
                     "--metrics", "events,motion", "--bootstrap", "20", "--no-progress", "--out", str(out),
                     "--jobs", str(jobs)]) == 0
        reports.append(json.loads((out / "report.json").read_text()))
    assert reports[0]["skipped"] == reports[1]["skipped"] and len(reports[0]["skipped"]) == 3
    assert [r["value"] for r in reports[0]["results"]] == [r["value"] for r in reports[1]["results"]]


def test_run_clip_tasks_fills_the_cache_and_leaves_failures_out() -> None:
    cache = {"done": "kept"}
    tasks = [ClipTask("a", math.sqrt, (16.0,)), ClipTask("bad", math.sqrt, (-1.0,)),  # ValueError in the worker
             ClipTask("b", operator.add, (2, 3)), ClipTask("b", operator.mul, (2, 3), priority=1),  # the mul wins
             ClipTask("b", operator.sub, (2, 3)), ClipTask("done", operator.add, (0, 0))]  # cached: not run
    assert run_clip_tasks(tasks, cache, jobs=2, progress=False) == 2
    assert cache == {"done": "kept", "a": 4.0, "b": 6}
    assert run_clip_tasks([ClipTask("c", math.sqrt, (4.0,)), ClipTask("d", math.sqrt, (9.0,))], cache, jobs=1) == 0
    assert "c" not in cache  # one process: the metrics compute as they go


@pytest.mark.parametrize("jobs", [-1, True, 1.5])
def test_bad_jobs_is_refused(jobs: object) -> None:
    with pytest.raises(ValueError, match="jobs must be a non-negative integer"):
        EvalConfig(generated=["x"], jobs=jobs)  # type: ignore[arg-type]
