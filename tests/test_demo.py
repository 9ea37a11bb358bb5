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
