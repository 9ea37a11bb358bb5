"""`avgen study ...` and `avgen app`."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from av_model.cli import main as avgen
from human_eval_app import cli
from human_eval_app.auth import verify_password


@pytest.fixture
def spec_file(tmp_path: Path, systems: dict[str, Path]) -> Path:
    spec = {"name": "cli study", "systems": [{"name": n, "path": str(systems[n])} for n in ("ours", "base")],
            "questions": ["overall", "sync"], "raters_per_pair": 1, "pairs_per_rater": 4,
            "gold": {"count": 1, "per_rater": 1}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_create_list_invite_export_close(tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'db' / 's.db'}"
    assert avgen(["study", "create", str(spec_file), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "created study 'cli study'" in out and "4 pairs" in out and "1 gold pairs" in out
    assert avgen(["study", "list", "--db", db]) == 0
    assert "cli study (ours, base)" in capsys.readouterr().out
    assert avgen(["study", "invite", "cli study", "--n", "3", "--db", db, "--base-url", "https://eval.example.org"]) == 0
    links = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines() if "\t" in line]
    assert len(links) == 3 and all(link.startswith("https://eval.example.org/?token=") for link in links)
    out_file = tmp_path / "j.parquet"
    assert avgen(["study", "export", "cli study", "--out", str(out_file), "--db", db]) == 0
    assert "wrote 0 judgments" in capsys.readouterr().out and pd.read_parquet(out_file).empty
    assert avgen(["study", "close", "cli study", "--db", db]) == 0
    assert avgen(["study", "invite", "cli study", "--db", db]) == 1
    assert "closed" in capsys.readouterr().err


def test_errors_are_messages_not_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert avgen(["study", "create", str(tmp_path / "missing.yaml"), "--db", db]) == 1
    assert "no such spec file" in capsys.readouterr().err
    assert avgen(["study", "export", "nope", "--out", str(tmp_path / "x.csv"), "--db", db]) == 1
    assert "no study 'nope'" in capsys.readouterr().err
    assert avgen(["study", "list", "--db", "mysql://x@y/z"]) == 1
    assert "unsupported database" in capsys.readouterr().err


def test_hash_password_and_add_admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert avgen(["study", "hash-password"]) == 0
    assert verify_password("a long password", capsys.readouterr().out.strip())
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert avgen(["study", "add-admin", "lee", "--db", str(tmp_path / "s.db")]) == 1
    assert "at least 12" in capsys.readouterr().err


def test_app_runs_streamlit_headless_on_localhost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    monkeypatch.delenv("AVGEN_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("AVGEN_ADMIN_PASSWORD_HASH", raising=False)
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert cli.app_main(["--db", db, "--port", "8601"]) == 0
    cmd, env = calls[0]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("human_eval_app/app.py")
    assert cmd[cmd.index("--server.headless") + 1] == "true" and cmd[cmd.index("--server.address") + 1] == "localhost"
    assert env["AVGEN_DB_URL"] == db and env["AVGEN_MEDIA_DIR"] == str((tmp_path / "media").resolve())
    out = capsys.readouterr().out
    assert "http://localhost:8601" in out and "/dashboard" in out and "no admin password is set" in out


def test_app_refuses_a_bad_database(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "x.db").write_text("garbage" * 200)
    assert cli.app_main(["--db", str(tmp_path / "x.db")]) == 1
    assert "cannot open the database" in capsys.readouterr().err


def test_app_refuses_a_too_short_admin_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: calls.append(cmd) or 0)
    monkeypatch.setenv("AVGEN_ADMIN_PASSWORD", "x")
    monkeypatch.delenv("AVGEN_ADMIN_PASSWORD_HASH", raising=False)
    assert cli.app_main(["--db", f"sqlite:///{tmp_path / 's.db'}"]) == 1
    assert "AVGEN_ADMIN_PASSWORD has 1 characters; an admin password needs at least 12" in capsys.readouterr().err
    assert not calls  # the server was not started
    monkeypatch.setattr("sys.stdin", io.StringIO("eleven char\n"))
    assert avgen(["study", "add-admin", "lee", "--db", str(tmp_path / "s.db")]) == 1
    assert "needs at least 12" in capsys.readouterr().err
