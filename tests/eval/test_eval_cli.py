"""`avgen eval` end to end: tables, CSV/JSON/HTML reports, configs, and clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
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


# ------------------------------------------------------------------------------ bad clips in a set
def test_bad_clips_are_skipped_and_reported(set_with_bad_clips: Path, small_sets: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main(["--generated", f"gen={set_with_bad_clips}", "--reference", str(small_sets["manifest"]),
                 "--metrics", "events,av_align,motion", "--bootstrap", "20", "--no-progress", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped 3 clips (3 of gen)" in err  # all three found in one run
    report = json.loads((out / "report.json").read_text())
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"broken", "silent", "blind"} and all(s["system"] == "gen" for s in report["skipped"])
    assert "cannot be opened as media" in reasons["broken"]
    assert "no audio stream" in reasons["silent"] and "no video stream" in reasons["blind"]
    assert all(r["n_generated"] == 4 for r in report["results"] if r["system"] == "gen" and r["status"] == "ok")
    assert "Skipped clips (3)" in (out / "report.html").read_text()


def test_video_metrics_keep_audio_less_clips(set_with_bad_clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["--generated", f"gen={set_with_bad_clips}", "--metrics", "motion", "--bootstrap", "20",
                 "--no-progress", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert {s["id"] for s in report["skipped"]} == {"broken", "blind"}
    assert report["results"][0]["n_generated"] == 5


def test_strict_stops_at_the_first_bad_clip(set_with_bad_clips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--generated", f"gen={set_with_bad_clips}", "--metrics", "motion", "--strict", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "clip 'blind'" in err and "--strict" in err


def test_no_usable_clip_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    audio_only_mp4: Callable[[Path], None]) -> None:
    folder = tmp_path / "gen"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"junk")
    audio_only_mp4(folder / "b.mp4")
    assert main(["--generated", str(folder), "--metrics", "motion", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no generated clip can be evaluated" in err and "gen / a:" in err and "gen / b:" in err


def test_a_clip_failing_inside_a_metric_is_left_out_of_every_metric(
        small_sets: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A clip that passes the screen but cannot be read by a metric (a file broken halfway) is left
    out, and the metrics run again without it, so all numbers cover the same clips."""
    from eval import runner
    from eval.metrics.base import MetricResult
    from eval.metrics.temporal import Motion
    from eval.reader import EvalInputError

    bad = small_sets["sync"] / "clip2.mp4"

    class Fragile(Motion):
        def evaluate(self, system, reference, opts, cache) -> MetricResult:  # type: ignore[no-untyped-def]
            if any(r.path == bad for r in system.records):
                raise EvalInputError(f"{bad}: the video stream cannot be decoded (truncated).", path=bad)
            return super().evaluate(system, reference, opts, cache)

    monkeypatch.setitem(runner.METRICS, "fragile", Fragile)
    cfg = EvalConfig(generated=[f"sync={small_sets['sync']}"], metrics=["flicker", "fragile"], progress=False,
                     options={"n_boot": 10})
    report = runner.evaluate(cfg)
    assert [(s.id, s.reason) for s in report.skipped] == [("clip2", f"{bad}: the video stream cannot be decoded "
                                                                   "(truncated).")]
    assert [r.n_generated for r in report.results] == [3, 3]
    with pytest.raises(EvalInputError, match="--strict"):
        runner.evaluate(EvalConfig(**{**cfg.to_dict(), "strict": True}))


def test_a_clip_with_an_unreadable_sidecar_is_skipped(small_sets: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    folder = tmp_path / "gen"
    shutil.copytree(small_sets["sync"], folder)
    (folder / "clip1.json").write_text('{"prompt": "a ball')  # cut short by a killed job
    out = tmp_path / "report"
    assert main(["--generated", str(folder), "--metrics", "motion", "--bootstrap", "20", "--no-progress",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [(s["id"], "not valid JSON" in s["reason"]) for s in report["skipped"]] == [("clip1", True)]
    assert report["results"][0]["n_generated"] == 3
    assert main(["--generated", str(folder), "--metrics", "motion", "--strict", "--no-progress"]) == 2
    assert "clip1.json: not valid JSON" in capsys.readouterr().err


def test_a_rerun_reuses_finished_clips_and_remeasures_changed_ones(small_sets: dict[str, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    import eval.metrics.sync as sync

    folder = tmp_path / "sys"
    shutil.copytree(small_sets["sync"], folder)
    out = tmp_path / "out"
    argv = ["--generated", f"s={folder}", "--metrics", "events", "--task", "t2av", "--out", str(out),
            "--no-progress", "--bootstrap", "20"]
    assert main(argv) == 0
    first = json.loads((out / "report.json").read_text())["results"][0]["value"]
    calls: list[str] = []
    real = sync.detect_onsets
    monkeypatch.setattr(sync, "detect_onsets", lambda *a, **k: calls.append("x") or real(*a, **k))
    assert main(argv) == 0
    assert calls == [] and "reusing" in capsys.readouterr().err  # nothing measured again
    assert json.loads((out / "report.json").read_text())["results"][0]["value"] == first
    clip = sorted(folder.glob("*.mp4"))[0]
    shutil.copy(small_sets["late"] / clip.name, clip)  # a regenerated clip: measured again, alone
    assert main(argv) == 0
    assert len(calls) == 1
