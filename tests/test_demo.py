"""The main job end to end at debug sizes: every stage runs, writes what it promises, and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from av_model.data import probe

pytestmark = pytest.mark.slow


def _demo(run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEMO_APP="0")
    # A relative run directory, as `make demo` uses: every stage must resolve manifest paths itself.
    rel = os.path.relpath(run_dir, Path.cwd())
    return subprocess.run(
        [sys.executable, "-m", "av_model.cli", "demo", "--reduced", "--run-dir", rel],
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
    from av_model.demo import DemoConfig, _start_app

    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr("av_model.demo.subprocess.call", lambda cmd, env: calls.append((cmd, env)) or 0)
    for key in ("AVGEN_ADMIN_PASSWORD", "AVGEN_ADMIN_PASSWORD_HASH"):
        monkeypatch.delenv(key, raising=False)
    capsys.readouterr()
    assert _start_app(DemoConfig.reduced(run)) == 0
    out = capsys.readouterr().out
    ((cmd, env),) = calls
    assert cmd[-5:-3] == ["app", "--db"] and cmd[-3].endswith("study.db")
    assert f"http://localhost:8501/?study={code}" in out and "http://localhost:8501/studies" in out
    assert len(env["AVGEN_ADMIN_PASSWORD"]) >= 12 and env["AVGEN_ADMIN_PASSWORD"] in out


def test_reduced_demo_end_to_end_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "demo"
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
    for task in ("t2av", "v2a"):
        assert (run / "eval" / task / "report.html").exists()
    assert (run / "study.db").exists()
    code = _study_opens_in_the_app(run, monkeypatch)
    _app_start_prints_the_links(run, code, monkeypatch, capsys)
    assert "Did the models learn?" in first.stdout
    # A second run keeps every finished stage.
    second = _demo(run)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("kept") >= 9


def test_verdict_compares_the_moe_model_with_the_untrained_floor() -> None:
    from av_model.demo import LEARNED_MARGIN, _verdicts

    rows = [{"task": "v2a", "system": "moe", "f1": 0.30}, {"task": "v2a", "system": "untrained", "f1": 0.12},
            {"task": "t2av", "system": "moe", "f1": 0.10}, {"task": "t2av", "system": "untrained", "f1": 0.10},
            {"task": "t2av", "system": "dense", "f1": 0.90}]
    t2av, v2a = _verdicts(rows)
    assert t2av.startswith("t2av") and "not clearly above" in t2av and f"+{LEARNED_MARGIN}" in t2av
    assert v2a.startswith("v2a") and "learned" in v2a and "not clearly" not in v2a
    assert _verdicts([{"task": "v2a", "system": "dense", "f1": 0.3}]) == []  # nothing to compare


def test_codec_recipe_is_chosen_by_flag_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import av_model.demo as demo

    seen: list[demo.DemoConfig] = []
    monkeypatch.setattr(demo, "run_demo", lambda cfg: seen.append(cfg) or 0)
    monkeypatch.delenv("DEMO_CODEC", raising=False)
    assert demo.main(["--run-dir", str(tmp_path)]) == 0
    monkeypatch.setenv("DEMO_CODEC", "adversarial")
    assert demo.main(["--run-dir", str(tmp_path)]) == 0
    assert demo.main(["--run-dir", str(tmp_path), "--codec-recipe", "fast"]) == 0  # the flag wins
    assert [(c.codec_config, c.codec_steps) for c in seen] == [demo.CODEC_RECIPES["fast"],
                                                               demo.CODEC_RECIPES["adversarial"],
                                                               demo.CODEC_RECIPES["fast"]]
    assert all((Path(__file__).resolve().parents[1] / c.codec_config).exists() for c in seen)
    stage2 = [demo.build_stages(c)[1] for c in seen]
    assert [s.side_by_side for s in stage2] == [True, False, True]  # the long codec run gets both cores
    monkeypatch.setenv("DEMO_CODEC", "best")
    with pytest.raises(SystemExit) as exc:
        demo.main(["--run-dir", str(tmp_path)])
    assert exc.value.code == 2 and "must be one of fast, adversarial; got 'best'" in capsys.readouterr().err


def test_a_codec_of_another_recipe_is_refused(tmp_path: Path) -> None:
    import torch

    from av_model.demo import DemoConfig, _check_codec_recipe

    cfg = DemoConfig(run_dir=tmp_path)
    _check_codec_recipe(cfg)  # nothing trained yet
    (tmp_path / "codec").mkdir()
    torch.save({"meta": {"steps": cfg.codec_steps}}, tmp_path / "codec" / "codec.pt")
    _check_codec_recipe(cfg)  # the same recipe: kept
    cfg.codec_steps = 1500
    with pytest.raises(SystemExit, match="trained for 500 steps, but this demo's codec recipe trains 1500"):
        _check_codec_recipe(cfg)


def test_a_stage_not_side_by_side_runs_its_commands_one_after_another(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import av_model.demo as demo

    groups: list[list[list[str]]] = []
    done: list[str] = []
    monkeypatch.setattr(demo, "_run_parallel", lambda commands, log_dir, stage: (groups.append(commands),
                                                                                 done.append(stage)))
    stages = [demo.Stage("1. pair", [["a"], ["b"]], lambda: bool(done)),
              demo.Stage("2. alone", [["c"], ["d"]], lambda: len(done) > 1, side_by_side=False)]
    monkeypatch.setattr(demo, "build_stages", lambda cfg: stages)
    monkeypatch.setattr(demo, "_write_inputs", lambda cfg: None)
    monkeypatch.setattr(demo, "_summary", lambda cfg, timings: None)
    cfg = demo.DemoConfig(run_dir=tmp_path, start_app=False)
    assert demo.run_demo(cfg) == 0
    assert groups == [[["a"], ["b"]], [["c"]], [["d"]]]
