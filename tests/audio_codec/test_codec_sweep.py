"""`benchmarks/codec_sweep.py`: variants x seeds trained side by side, measured, summarized."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.audio_codec.conftest import write_manifest

ROOT = Path(__file__).resolve().parents[2]


def _sweep():
    spec = importlib.util.spec_from_file_location("codec_sweep", ROOT / "benchmarks" / "codec_sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sweep_trains_measures_and_reports_failures(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", {"train": [("a", 1.0), ("b", 1.0)], "val": [("v", 0.6)],
                                                  "heldout": [("h0", 1.0), ("h1", 1.0)]})
    variants = tmp_path / "sweep.yaml"
    variants.write_text("base: configs/codec/debug.yaml\nvariants:\n"
                        "  plain: {trainer.max_steps: 2, model.loss.adv_weight: 0.0}\n"
                        "  broken: ['--model.codec.bins', '100']\n")
    out = tmp_path / "sweep.json"
    rc = _sweep().main(["--variants", str(variants), "--manifest", str(manifest), "--seeds", "0", "1",
                        "--parallel", "2", "--threads", "1", "--root", str(tmp_path / "runs"), "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    runs = {(r["variant"], r["seed"]): r for r in result["runs"]}
    assert set(runs) == {("plain", 0), ("plain", 1), ("broken", 0), ("broken", 1)}
    for seed in (0, 1):
        ok = runs[("plain", seed)]
        assert "error" not in ok and 0.0 <= ok["onset_recall"] <= 1.0 and ok["onsets_original"] > 0
        assert "bins must be a power of two" in runs[("broken", seed)]["error"]
    plain, broken = result["summary"]
    assert plain["variant"] == "plain" and plain["runs"] == 2 and plain["failed"] == 0
    assert plain["recall_min"] <= plain["recall_mean"] <= plain["recall_max"]
    assert broken["failed"] == 2 and broken["passes"] == 0
    assert out.with_suffix(".png").exists()


@pytest.mark.parametrize("text, match", [
    ("variants: {a: {}}\n", "expected `base: <codec config>`"),
    ("base: configs/codec/debug.yaml\nvariants: {}\n", "at least one variant"),
    ("base: configs/codec/nope.yaml\nvariants: {a: {}}\n", "does not exist"),
    ("base: configs/codec/debug.yaml\nvariants: {a: 3}\n", "overrides must be a mapping"),
    ("base: [unclosed\n", "cannot read the sweep file"),
])
def test_malformed_sweep_files_are_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit, match=match):
        _sweep().load_variants(path)


def test_overrides_become_fit_arguments() -> None:
    sweep = _sweep()
    args = sweep._as_args("v", {"model.loss.disc_n_ffts": [2048], "model.loss.disc_bf16": True,
                                "trainer.max_steps": 10})
    assert args == ["--model.loss.disc_n_ffts", "[2048]", "--model.loss.disc_bf16", "true",
                    "--trainer.max_steps", "10"]
    assert sweep._as_args("v", ["--a", 1]) == ["--a", "1"] and sweep._as_args("v", None) == []
    _, variants = sweep.load_variants(ROOT / "benchmarks" / "codec_sweep.yaml")  # the shipped sweep parses
    assert variants["recipe"] == [] and variants["adversarial_from_750"] == ["--model.loss.disc_start_step", "750"]
