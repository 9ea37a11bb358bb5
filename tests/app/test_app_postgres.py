"""The same storage on a real PostgreSQL server, started for the test from Debian's binaries.

Skips, saying why, when PostgreSQL is not installed (`apt-get install postgresql`; `make sysdeps`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from test_app_load_and_crash import _load_benchmark

from human_eval_app.raters import create_invites, queue_state, start_queue, submit_answers
from human_eval_app.spec import StudySpec
from human_eval_app.store import SCHEMA_VERSION, Judgment, SchemaError, Store, normalize_url
from human_eval_app.studies import create_study, judgments_frame

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if not BIN or not os.path.exists(os.path.join(BIN[-1], "initdb")):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); the SQLite tests cover the rest")
    bindir = BIN[-1]
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="avgen-pg-", dir="/tmp"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", _free_port()
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", str(data), "-U", "avgen", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=120"
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://avgen@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _fresh(pg_url: str, tmp_path: Path) -> Store:
    store = Store(pg_url, media_dir=tmp_path / "media")
    with store.engine.begin() as conn:  # each test starts from empty tables
        names = ", ".join(t.name for t in reversed(Judgment.metadata.sorted_tables) if t.name != "avgen_meta")
        conn.execute(text("ALTER TABLE judgments DISABLE TRIGGER judgments_append_only"))
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        conn.execute(text("ALTER TABLE judgments ENABLE TRIGGER judgments_append_only"))
    return store


def test_study_flow_on_postgres(pg_url: str, tmp_path: Path, systems: dict[str, Path]) -> None:
    store = _fresh(pg_url, tmp_path)
    spec = StudySpec(name="pg study", systems=[{"name": n, "path": str(systems[n])} for n in ("ours", "base")],
                     questions=["overall", "sync"], raters_per_pair=2, pairs_per_rater=2, gold={"count": 1, "per_rater": 1})
    info = create_study(store, spec).info
    for invite in create_invites(store, info.id, 4):
        start_queue(store, invite.rater_id)
        while (state := queue_state(store, invite.rater_id)).next_assignment_id:
            submit_answers(store, invite.rater_id, state.next_assignment_id, {"overall": "left", "sync": "tie"}, 2.0)
    frame = judgments_frame(store, info.code)
    assert len(frame[~frame.is_gold]) == 4 * 2 * 2 and frame.is_gold.sum() == 4
    for statement in ("UPDATE judgments SET answer = 'right'", "DELETE FROM judgments"):
        with pytest.raises(SQLAlchemyError, match="append-only"), store.write() as s:
            s.execute(text(statement))
    with pytest.raises(IntegrityError), store.write() as s:
        s.execute(text("INSERT INTO judgments (study_id, assignment_id, rater_id, pair_id, question, answer, seconds, "
                       "created_at) SELECT study_id, assignment_id, rater_id, pair_id, question, 'right', 1, now() "
                       "FROM judgments LIMIT 1"))
    store.dispose()
    again = Store(pg_url)  # the media folder was recorded in the database
    assert again.media_dir == (tmp_path / "media").resolve()
    again.dispose()


def test_parallel_raters_on_postgres(pg_url: str, tmp_path: Path) -> None:
    """50 raters join at once (allocation under SELECT ... FOR UPDATE) and answer in parallel."""
    store = _fresh(pg_url, tmp_path)
    result = _load_benchmark().run_load(store, n_raters=50, per_rater=4)
    store.dispose()
    assert result.errors == []
    assert (result.stored, result.distinct) == (200, 200)


def test_newer_schema_on_postgres(pg_url: str, tmp_path: Path) -> None:
    store = _fresh(pg_url, tmp_path)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE avgen_meta SET value = '999' WHERE key = 'schema_version'"))
    store.dispose()
    try:
        with pytest.raises(SchemaError, match="newer avgen"):
            Store(pg_url)
    finally:  # put the version back for the other tests of this module
        engine = create_engine(normalize_url(pg_url))
        with engine.begin() as conn:
            conn.execute(text("UPDATE avgen_meta SET value = :v WHERE key = 'schema_version'"), {"v": str(SCHEMA_VERSION)})
        engine.dispose()
