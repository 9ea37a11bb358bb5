"""`avgen eval` end to end: tables, CSV/JSON/HTML reports, configs, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from av_model import cli as avgen
from eval.cli import main
from eval.runner import EvalConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "eval").glob("*.yaml"))


def test_two_systems_one_report(small_sets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no weights anywhere
    monkeypatch.delenv("AVGEN_WEIGHTS", raising=False)
    out = tmp_path / "report"
    code = avgen.main(["eval", "--generated", f"sync={small_sets['sync']}", "--generated", f"late={small_sets['late']}",
                       "--reference", str(small_sets["manifest"]), "--metrics", "events,av_align,motion,fvd",
                       "--bootstrap", "100", "--no-progress", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "sync" in printed and "late" in printed and "(reference)" in printed
    assert "fvd (sync, late): not computed: weights not found: pass --i3d PATH" in printed
    frame = pd.read_csv(out / "report.csv")
    assert {"sync", "late"} < set(frame.system) and len(set(frame.system)) == 3  # + the reference row
    fvd = frame[frame.metric == "fvd"]
    assert (fvd.status == "not computed").all() and fvd.value.isna().all()  # never a number
    ev = frame[(frame.metric == "events")].set_index("system")
    assert ev.loc["sync", "value"] > ev.loc["late", "value"]
    assert ev.loc["late", "extra.offset_ms"] == pytest.approx(160, abs=30)
    report = json.loads((out / "report.json").read_text())
    assert report["environment"]["torch"] and report["config"]["options"]["task"] == "t2av"
    first = next(r for r in report["results"] if r["metric"] == "events")
    assert first["n_generated"] == 4 and first["preprocessing"]["tolerance"] == "0.1 s"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and "not computed" in page


def test_config_file_and_overrides(small_sets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(EvalConfig(metrics=["flicker"], options={"n_boot": 20}).to_yaml())
    assert main(["-c", str(cfg), "--generated", str(small_sets["sync"]), "--no-progress", "--max-clips", "2"]) == 0
    assert "flicker" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics", "events"], "no generated set"),
        (["--generated", "/no/such/dir"], "no such folder"),
        (["--generated", "X", "--metrics", "fvdd"], "unknown metrics"),
        (["--generated", "a=", "--metrics", "events"], "NAME=PATH"),
        (["--generated", "X", "--bootstrap", "-1"], "n_boot"),
        (["--generated", "X", "--reference-split", "heldout"], "needs --reference"),
        (["--generated", "X", "--device", "gpu7"], "device"),
    ],
)
def test_bad_input_is_a_clear_error(argv: list[str], message: str, small_sets: dict[str, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(small_sets["sync"]) if a == "X" else a for a in argv]
    assert main(argv + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_same_names_must_be_told_apart(small_sets: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--generated", str(small_sets["sync"]), "--generated", str(small_sets["sync"]), "--no-progress"]) == 2
    assert "NAME=DIR" in capsys.readouterr().err


def test_bad_config_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("metrics: [events]\noptions:\n  tolerance: 3\n")
    assert main(["-c", str(cfg)]) == 2
    assert "options.tolerance" in capsys.readouterr().err


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_eval_config_loads(path: Path) -> None:
    cfg = EvalConfig.from_yaml(path)
    assert cfg.metrics and EvalConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_help_lists_metrics_and_weights(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for word in ("fad_vggish", "--i3d", "AVGEN_WEIGHTS", "av_align", "weights-free"):
        assert word in text
