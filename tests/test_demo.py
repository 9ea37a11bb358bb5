"""The main job end to end at debug sizes: every stage runs, writes what it promises, and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avio import probe

pytestmark = pytest.mark.slow


def _demo(run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEMO_APP="0")
    # A relative run directory, as `make demo` uses: every stage must resolve manifest paths itself.
    rel = os.path.relpath(run_dir, Path.cwd())
    return subprocess.run(
        [sys.executable, "-m", "av_model.cli", "demo", "--reduced", "--run-dir", rel, *extra],
        capture_output=True, text=True, env=env, timeout=900,
    )


def _study_opens_in_the_app(run: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The demo's study holds moe-vs-dense pairs plus gold pairs, and its rater page renders."""
    from streamlit.testing.v1 import AppTest

    from human_eval_app.store import open_store
    from human_eval_app.studies import list_studies

    url = f"sqlite:///{run.resolve() / 'study.db'}"
    store = open_store(url, create=False)
    try:
        (info,) = list_studies(store)
    finally:
        store.dispose()
    assert set(info.systems) == {"moe", "dense"} and info.n_pairs > 0 and info.n_gold > 0
    app = Path(__file__).resolve().parents[1] / "human_eval_app" / "app.py"
    monkeypatch.setenv("AVGEN_DB_URL", url)
    monkeypatch.setenv("AVGEN_ADMIN_PASSWORD", "demo test password")
    at = AppTest.from_file(str(app), default_timeout=60)
    at.query_params["study"] = info.code
    at.run()
    assert not at.exception and at.text_input(key="join-code").value == info.code
    return info.code


def _app_start_prints_the_links(run: Path, code: str, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's last step serves the study with a session admin password, and prints both links."""
    from av_model.demo.run import DemoConfig, _start_app

    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr("av_model.demo.run.subprocess.call", lambda cmd, env: calls.append((cmd, env)) or 0)
    for key in ("AVGEN_ADMIN_PASSWORD", "AVGEN_ADMIN_PASSWORD_HASH"):
        monkeypatch.delenv(key, raising=False)
    capsys.readouterr()
    assert _start_app(DemoConfig.reduced(run)) == 0
    out = capsys.readouterr().out
    ((cmd, env),) = calls
    assert cmd[-5:-3] == ["app", "--db"] and cmd[-3].endswith("study.db")
    assert f"http://localhost:8501/?study={code}" in out and "http://localhost:8501/studies" in out
    assert len(env["AVGEN_ADMIN_PASSWORD"]) >= 12 and env["AVGEN_ADMIN_PASSWORD"] in out


def _reference_report_reads_the_run(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/reference_report.py turns the run into one JSON (claims, systems, stages) and a loss plot."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "reference_report", Path(__file__).resolve().parents[1] / "benchmarks" / "reference_report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.main([str(run), "--out", str(run / "ref")]) == 0
    data = json.loads((run / "ref.json").read_text())
    assert {"moe", "dense"} <= set(data["systems"]) and data["claims"] and data["profile"] == "reduced"
    assert data["systems"]["moe"]["steps"] > 0 and (run / "ref_loss.png").stat().st_size > 0
    assert report.main([str(run / "nope"), "--out", str(run / "x")]) == 2
    assert "finished `avgen demo` run directory" in capsys.readouterr().err


def test_reduced_demo_end_to_end_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "demo"
    # Split over two jobs, as on a machine with a time limit per job: stages 1-2, then the rest.
    part = _demo(run, "--stop-after", "2")
    assert part.returncode == 0 and "stopped after stage 2" in part.stdout, part.stdout[-4000:] + part.stderr[-4000:]
    assert (run / "codec" / "codec.pt").exists() and not (run / "cache").exists()
    first = _demo(run)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    # Every stage left its output.
    assert (run / "codec" / "codec.pt").exists() and (run / "vae" / "vae.pt").exists()
    assert json.loads((run / "cache" / "meta.json").read_text())
    for system in ("moe", "dense", "untrained"):
        clips = sorted((run / "samples" / system).glob("*.mp4"))
        assert len(clips) == 2, system
        info = probe(clips[0])
        assert info.has_video and info.has_audio and info.video_codec == "h264"
        assert json.loads(clips[0].with_suffix(".json").read_text())["prompt"]
        assert len(list((run / "samples" / f"{system}_v2a").glob("*.mp4"))) == 2
        assert len(list((run / "samples" / f"{system}_a2v").glob("*.mp4"))) == 2
    assert len(list((run / "samples" / "autoencoder").glob("*.mp4"))) == 2
    for task in ("t2av", "v2a", "a2v"):
        assert (run / "eval" / task / "report.html").exists()
    assert (run / "study.db").exists()
    code = _study_opens_in_the_app(run, monkeypatch)
    _app_start_prints_the_links(run, code, monkeypatch, capsys)
    assert "Did the models learn?" in first.stdout
    check = json.loads((run / "eval" / "codec.json").read_text())  # the codec's onsets, measured in the run
    assert check["clips"] == 4 and "audio codec: keeps" in first.stdout
    assert json.loads((run / "summary.json").read_text())["codec"]["onsets_original"] == check["onsets_original"]
    _reference_report_reads_the_run(run, capsys)
    # A second run keeps every finished stage.
    second = _demo(run)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("kept") >= 9


def _report(systems: dict[str, tuple[float, float, float, float, float, float]]) -> dict:
    """A report.json with event rows: system -> (f1, lo, hi, floor, floor_lo, floor_hi) at both tolerances."""
    results = []
    for name, (f1, lo, hi, fl, fl_lo, fl_hi) in systems.items():
        extra = {}
        for tag in ("50ms", "100ms"):
            extra.update({f"f1_{tag}": f1, f"f1_{tag}_ci_low": lo, f"f1_{tag}_ci_high": hi,
                          f"mismatched_f1_{tag}": fl, f"mismatched_f1_{tag}_ci_low": fl_lo,
                          f"mismatched_f1_{tag}_ci_high": fl_hi})
        results.append({"metric": "events", "status": "ok", "system": name, "extra": extra})
    return {"reference": "heldout", "systems": list(systems), "results": results}


def test_summary_says_learned_only_above_the_floor(tmp_path: Path) -> None:
    from rich.console import Console

    from av_model.demo.summary import claims_of_run, print_claims, write_summary

    (tmp_path / "eval" / "v2a").mkdir(parents=True)
    (tmp_path / "eval" / "v2a" / "report.json").write_text(json.dumps(_report({
        "moe": (0.45, 0.40, 0.50, 0.14, 0.11, 0.17),        # clears its floor
        "dense": (0.20, 0.12, 0.28, 0.15, 0.12, 0.18),      # overlaps it
        "untrained": (0.02, 0.0, 0.05, 0.02, 0.0, 0.04),    # no onsets: never learned
        "heldout": (0.77, 0.70, 0.83, 0.17, 0.15, 0.19),    # the data's own figure
    })))
    claims = claims_of_run(tmp_path)
    verdicts = {(c.system, c.claim.endswith("50 ms")): c.verdict for c in claims}
    assert verdicts[("moe", True)] == "learned"
    assert verdicts[("dense", True)].startswith("not shown") and verdicts[("untrained", True)].startswith("not shown")
    assert {c.system for c in claims} == {"moe", "dense", "untrained"}  # the reference is the ceiling, not a claim
    assert all(c.ceiling == 0.77 for c in claims)
    console = Console(record=True, width=200)
    print_claims(claims, console)
    text = console.export_text()
    assert "Did the models learn?" in text and "not shown" in text and "0.770" in text
    summary = json.loads(write_summary(tmp_path, claims, [("total", 1.0, False)], "cpu").read_text())
    assert summary["profile"] == "cpu" and len(summary["claims"]) == 6 and summary["codec"] is None


def test_summary_shows_the_codec_check_against_its_criterion(tmp_path: Path) -> None:
    from rich.console import Console

    from av_model.demo.summary import codec_check_of_run, print_codec_check

    (tmp_path / "eval").mkdir()
    check = {"onset_recall": 0.77, "onsets_original": 152, "onset_precision": 1.0, "tolerance_ms": 10.0,
             "criterion": 0.95, "passes_onset_criterion": False, "mel_distance": 1.28, "octave_bands": []}
    (tmp_path / "eval" / "codec.json").write_text(json.dumps(check))
    console = Console(record=True, width=200)
    print_codec_check(codec_check_of_run(tmp_path), console)
    text = console.export_text()
    assert "keeps 77.0% of 152 held-out onsets within 10 ms" in text and "FAIL" in text
    (tmp_path / "eval" / "codec.json").write_text(json.dumps({"onset_recall": 1.0}))
    problems: list[str] = []
    assert codec_check_of_run(tmp_path, problems) is None and "onsets_original" in problems[0]


def test_profiles_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from av_model.demo import run as demo

    gpu = demo.DemoConfig.gpu(tmp_path)
    assert gpu.systems == ("moe", "dense", "moe_s1", "dense_s1", "untrained") and gpu.n_train > 500
    for g in gpu.generators:
        assert Path(g.config).exists(), g.config
    cfg = demo._apply_sets(demo.DemoConfig(run_dir=tmp_path), ["dit_steps=1200", "text=/models/minilm"])
    assert cfg.dit_steps == 1200 and cfg.text == "/models/minilm"
    one_seed = demo._apply_sets(demo.DemoConfig.gpu(tmp_path), ["seeds=1"])
    assert one_seed.systems == ("moe", "dense", "untrained") and one_seed.generators[1].config.endswith("small_dense.yaml")
    for bad, msg in (("dit_steps=abc", "whole number"), ("nope=1", "FIELD=VALUE"), ("n_train=0", "at least 1")):
        with pytest.raises(SystemExit, match=msg):
            demo._apply_sets(demo.DemoConfig(run_dir=tmp_path), [bad])
    monkeypatch.setattr(demo, "_cuda_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        demo.main(["--profile", "gpu", "--run-dir", str(tmp_path / "g")])
    # An interrupted generator resumes from its last checkpoint; the others start afresh.
    (tmp_path / "s" / "dit_moe" / "checkpoints").mkdir(parents=True)
    (tmp_path / "s" / "dit_moe" / "checkpoints" / "last.ckpt").write_bytes(b"")
    fits = next(st for st in demo.build_stages(demo.DemoConfig(run_dir=tmp_path / "s")) if st.name.startswith("4."))
    moe, dense = fits.commands
    assert moe[-2:] == ["--ckpt_path", "last"] and "--ckpt_path" not in dense
    # A run stopped inside stage 8 repeats only the jobs whose report is missing.
    (tmp_path / "s" / "eval" / "v2a").mkdir(parents=True)
    (tmp_path / "s" / "eval" / "v2a" / "report.json").write_text("{}")
    (tmp_path / "s" / "diagnostics").mkdir()
    (tmp_path / "s" / "diagnostics" / "conditioning.json").write_text("{}")
    metrics = next(st for st in demo.build_stages(demo.DemoConfig(run_dir=tmp_path / "s")) if st.name.startswith("8."))
    assert [cmd[cmd.index("--task") + 1] if "--task" in cmd else cmd[3] for cmd in metrics.commands] == [
        "t2av", "a2v", "codec-check"]
    # The GPU profile starts each job once what it reads exists; the CPU profile waits for each stage.
    assert gpu.overlap and not demo.DemoConfig(run_dir=tmp_path).overlap
    stages = {st.name.split(".")[0]: st for st in demo.build_stages(demo.DemoConfig.gpu(tmp_path / "g2"))}
    assert stages["5"].start_after == [3]  # the untrained floor needs the cache only
    assert set(stages["7"].start_after) == {5} and len(stages["7"].start_after) == len(stages["7"].commands)
    after = {cmd[cmd.index("--task") + 1] if "--task" in cmd else cmd[3]: stages["8"].ready_after(i)
             for i, cmd in enumerate(stages["8"].commands)}
    assert after == {"t2av": 6, "v2a": None, "a2v": None, "codec-check": 2, "diagnose": 5}
    # --fit-arg reaches every generator's `avgen fit`, the untrained floor's included.
    captured: list = []
    monkeypatch.setattr(demo, "run_demo", lambda cfg, stop_after=None: captured.append(cfg) or 0)
    assert demo.main(["--profile", "cpu", "--run-dir", str(tmp_path / "f"), "--no-app",
                      "--fit-arg=--model.parallel.compile=true"]) == 0
    fits = [cmd for st in demo.build_stages(captured[0]) if st.name[0] in "45" for cmd in st.commands]
    assert len(fits) == 3 and all("--model.parallel.compile=true" in cmd for cmd in fits)
    # One run directory holds one profile.
    demo._check_profile(demo.DemoConfig(run_dir=tmp_path / "r"))
    with pytest.raises(SystemExit, match="'cpu' profile"):
        demo._check_profile(demo.DemoConfig.gpu(tmp_path / "r"))


def test_summary_leaves_out_a_damaged_report_and_keeps_the_rest(tmp_path: Path) -> None:
    from av_model.demo.summary import claims_of_run

    for task in ("t2av", "v2a"):
        (tmp_path / "eval" / task).mkdir(parents=True)
    (tmp_path / "eval" / "t2av" / "report.json").write_text("{torn")
    (tmp_path / "eval" / "v2a" / "report.json").write_text(json.dumps(_report({
        "moe": (0.45, 0.40, 0.50, 0.14, 0.11, 0.17)})))
    (tmp_path / "diagnostics").mkdir()
    (tmp_path / "diagnostics" / "conditioning.json").write_text("[]")
    problems: list[str] = []
    claims = claims_of_run(tmp_path, problems)
    assert {c.task for c in claims} == {"v2a"} and len(problems) == 2
    assert "t2av" in problems[0] and "conditioning" in problems[1]


def _stamp(path: Path, sleep: float = 0.0, fail: bool = False) -> list[str]:
    """A command that waits, then writes the time it ended to `path` (or fails)."""
    code = f"import time, sys; time.sleep({sleep}); sys.exit(3) if {fail} else open({str(path)!r}, 'w').write(repr(time.time()))"
    return [sys.executable, "-c", code]


def test_overlapping_profile_starts_a_job_once_its_inputs_exist(tmp_path: Path) -> None:
    from av_model.demo import run as demo

    def stages(fail: bool = False) -> list[demo.Stage]:
        a, b, c, d = (tmp_path / n for n in "abcd")
        return [
            demo.Stage("1. first", [_stamp(a)], a.exists),
            demo.Stage("2. slow", [_stamp(b, sleep=1.5)], b.exists),
            # needs only stage 1: with overlap it runs beside stage 2
            demo.Stage("3. early", [_stamp(c, fail=fail), _stamp(d)], lambda: c.exists() and d.exists(),
                       start_after=[1, None]),
        ]

    cfg = demo.DemoConfig(run_dir=tmp_path / "run")
    timings = demo._run_stages(cfg, stages(), demo._Jobs(tmp_path / "logs"), None)
    assert timings is not None and [t[0] for t in timings] == ["1. first", "2. slow", "3. early", "total"]
    times = {n: float((tmp_path / n).read_text()) for n in "abcd"}
    assert times["c"] < times["b"] < times["d"]  # c started after stage 1, d at stage 3's turn
    for n in "abcd":
        (tmp_path / n).unlink()
    # An early job that fails stops the demo at its own stage, after the stages before it finished.
    jobs = demo._Jobs(tmp_path / "logs")
    with pytest.raises(SystemExit, match="stopped at stage '3. early'"):
        demo._run_stages(cfg, stages(fail=True), jobs, None)
    assert (tmp_path / "b").exists()
    # Stopped after stage 2 (--stop-after): nothing of stage 3 runs, not even early.
    for n in "abd":
        (tmp_path / n).unlink(missing_ok=True)
    assert demo._run_stages(cfg, stages(), demo._Jobs(tmp_path / "logs"), 2) is None
    assert (tmp_path / "b").exists() and not (tmp_path / "c").exists()
