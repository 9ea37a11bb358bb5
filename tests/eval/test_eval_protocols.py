"""Named protocols: metric sets and settings, deviations in the report, and the floor table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from eval.cli import main
from eval.features.syncnet import SyncNet
from eval.protocols import PROTOCOLS
from eval.runner import EvalConfig

TINY_SYNCNET = dict(audio_widths=(4, 4, 4, 4, 4, 8), lip_widths=(4, 4, 4, 4, 4, 8), hidden=8, dim=16)


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("AVGEN_WEIGHTS", "AVGEN_SYNCNET", "AVGEN_SYNCHFORMER", "AVGEN_IMAGEBIND"):
        monkeypatch.delenv(var, raising=False)


def test_protocols_select_existing_metrics() -> None:
    for proto in PROTOCOLS.values():
        cfg = EvalConfig.from_dict({"generated": ["x"], "protocol": proto.name})
        assert cfg.metrics == list(proto.metrics) and cfg.options.desync_duration == 8.0
    explicit = EvalConfig.from_dict({"generated": ["x"], "protocol": "javisbench", "metrics": ["av_align"]})
    assert explicit.metrics == ["av_align"]
    with pytest.raises(ValueError, match="av-benchmark"):
        EvalConfig.from_dict({"generated": ["x"], "protocol": "vbench"})


def test_av_benchmark_without_weights_lists_its_deviations(small_sets: dict[str, Path], tmp_path: Path,
                                                           no_weights: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["--generated", str(small_sets["sync"]), "--protocol", "av-benchmark", "--no-progress",
                 "--bootstrap", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "protocol av-benchmark" in printed and "--synchformer" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"] == list(PROTOCOLS["av-benchmark"].metrics)
    assert all(r["value"] is None for r in report["results"])  # nothing computed, no stand-in numbers
    dev = "\n".join(report["protocol"]["deviations"])
    assert "FD_PaSST" in dev and "desync: not computed" in dev and "--imagebind" in dev and "VGGSound" in dev
    page = (out / "report.html").read_text()
    assert "Protocol: av-benchmark" in page and "FD_PaSST" in page


def test_floor_table_and_weights_option(small_sets: dict[str, Path], tmp_path: Path, no_weights: None) -> None:
    torch.manual_seed(0)
    state = {k: v for k, v in SyncNet(**TINY_SYNCNET).state_dict().items() if "num_batches" not in k}  # type: ignore[arg-type]
    torch.save(state, tmp_path / "syncnet_v2.model")
    out = tmp_path / "r"
    assert main(["--generated", str(small_sets["sync"]), "--protocol", "verse-bench", "--metrics", "lse_c,av_align",
                 "--weights", f"syncnet={tmp_path / 'syncnet_v2.model'}", "--no-progress", "--bootstrap", "20",
                 "--max-clips", "2",
                 "--out", str(out)]) == 0
    frame = pd.read_csv(out / "report.csv").set_index("metric")
    for metric in ("lse_c", "av_align"):
        assert pd.notna(frame.loc[metric, "extra.floor"]) and pd.notna(frame.loc[metric, "extra.floor_ci_low"])
    assert json.loads(frame.loc["lse_c", "weights"])["syncnet"].startswith("sha256:")
    page = (out / "report.html").read_text()
    assert "mismatched-pair floor" in page and page.count("<td>lse_c ↑</td>") == 1
    report = json.loads((out / "report.json").read_text())
    assert any("centre crop" in d for d in report["protocol"]["deviations"])


def test_bad_weights_option_is_a_clear_error(small_sets: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--generated", str(small_sets["sync"]), "--weights", "syncnett=/x"]) == 2
    assert "KEY=PATH" in capsys.readouterr().err
