"""`benchmarks/fit_bench.py`: the real `avgen fit` beside its bare step, against a measured peak."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("fit_bench", ROOT / "benchmarks" / "fit_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sustained_rate_leaves_out_the_warm_up(tmp_path: Path) -> None:
    fb = _module()
    csv = tmp_path / "metrics.csv"
    # 10 s of start-up before step 4, then 0.5 s per step; validation rows carry no train/time.
    csv.write_text("step,train/time,val/loss\n0,10.0,\n4,12.0,\n5,,3.0\n8,14.0,\n12,16.0,\n")
    got = fb.sustained(csv, skip=4)
    assert got["fit_steps_timed"] == 8 and got["fit_step_ms"] == pytest.approx(500.0)
    with pytest.raises(SystemExit, match="fewer than two logged steps"):
        fb.sustained(csv, skip=12)
    (tmp_path / "bad.csv").write_text("step,train/loss\n0,1.0\n")
    with pytest.raises(SystemExit, match="no train/time"):
        fb.sustained(tmp_path / "bad.csv", skip=0)


@pytest.mark.slow
def test_quick_run_compares_two_configs(tmp_path: Path) -> None:
    fb = _module()
    out = tmp_path / "fit.json"
    assert fb.main(["--quick", "-c", str(ROOT / "configs/dit/debug.yaml"), "-c", str(ROOT / "configs/dit/debug_dense.yaml"),
                    "--steps", "12", "--skip", "2", "--bare-steps", "1", "--clips", "8", "--work", str(tmp_path),
                    "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["peak_tflops_measured"] > 0
    moe, dense = data["rows"]
    assert moe["fit_steps_timed"] > 0 and moe["fit_step_ms"] > 0 and 0 < moe["fit_mfu"] < 1
    assert moe["step_over_first"] == 1 and dense["step_over_first"] > 0
    assert dense["params_active_M"] < moe["params_active_M"] * 2  # the twin of equal active size
    with pytest.raises(SystemExit, match="no model.preset"):
        fb.main(["--quick", "-c", str(ROOT / "configs/codec/debug.yaml"), "--work", str(tmp_path)])
