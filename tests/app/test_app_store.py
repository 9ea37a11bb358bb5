"""Storage: schema creation and versions, append-only judgments, URLs, the media folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from human_eval_app import store as store_mod
from human_eval_app.raters import create_invites, start_queue, submit_answers
from human_eval_app.store import (
    SCHEMA_VERSION,
    Assignment,
    Judgment,
    SchemaError,
    Store,
    StoreError,
    normalize_url,
)


def test_new_database_gets_tables_wal_and_version(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    assert s.schema_version() == SCHEMA_VERSION
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10000
    assert s.media_dir == (tmp_path / "media").resolve()
    s.dispose()
    # reopening finds the same version and the recorded media folder
    again = Store(f"sqlite:///{tmp_path / 'a.db'}")
    assert again.schema_version() == SCHEMA_VERSION and again.media_dir == s.media_dir
    again.dispose()


def _set_version(path: Path, version: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE avgen_meta SET value = ? WHERE key = 'schema_version'", (str(version),))


def test_newer_database_is_refused_with_upgrade_advice(tmp_path: Path) -> None:
    Store(tmp_path / "a.db").dispose()
    _set_version(tmp_path / "a.db", SCHEMA_VERSION + 1)
    with pytest.raises(SchemaError, match="newer avgen.*upgrade"):
        Store(tmp_path / "a.db")


def test_older_database_without_migration_gets_a_clear_message(tmp_path: Path) -> None:
    Store(tmp_path / "a.db").dispose()
    _set_version(tmp_path / "a.db", SCHEMA_VERSION - 1)
    with pytest.raises(SchemaError, match="no upgrade from schema"):
        Store(tmp_path / "a.db")


def test_older_database_is_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema bump with a registered migration upgrades an old database in place."""
    Store(tmp_path / "a.db").dispose()
    ran = []

    def add_note_column(conn) -> None:  # what a real migration looks like
        conn.exec_driver_sql("ALTER TABLE studies ADD COLUMN note TEXT")
        ran.append(True)

    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(store_mod.MIGRATIONS, SCHEMA_VERSION, add_note_column)
    s = Store(tmp_path / "a.db")
    assert ran == [True] and s.schema_version() == SCHEMA_VERSION + 1
    with s.engine.connect() as conn:
        cols = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(studies)")]
    assert "note" in cols
    s.dispose()


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(SchemaError, match="not an avgen study database"):
        Store(tmp_path / "other.db")


def test_not_a_database_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store(bad)


def test_urls() -> None:
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("studies.db").startswith("sqlite:///")
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(StoreError, match="empty"):
        normalize_url("  ")


def test_judgments_are_append_only(store: Store, make_study) -> None:
    study = make_study()
    invite = create_invites(store, study.info.id, 1)[0]
    start_queue(store, invite.rater_id)
    with store.session() as s:
        a = s.scalars(select(Assignment).where(Assignment.rater_id == invite.rater_id)).first()
    submit_answers(store, invite.rater_id, a.id, {"overall": "left", "sync": "tie"}, 4.0)
    for statement in ("UPDATE judgments SET answer = 'right'", "DELETE FROM judgments"):
        with pytest.raises(SQLAlchemyError, match="append-only"), store.write() as s:
            s.execute(text(statement))
    # a second row for the same assignment and question is refused by the database itself
    with pytest.raises(IntegrityError), store.write() as s:
        s.add(Judgment(study_id=a.study_id, assignment_id=a.id, rater_id=invite.rater_id, pair_id=a.pair_id,
                       question="overall", answer="right", seconds=1.0))
    with store.session() as s:
        answers = dict(s.execute(select(Judgment.question, Judgment.answer)).all())
    assert answers == {"overall": "left", "sync": "tie"}


def test_media_dir_required_without_a_file_database(tmp_path: Path) -> None:
    s = Store("sqlite://")  # in memory: nothing to put media next to
    with pytest.raises(StoreError, match="--media-dir"):
        s.require_media_dir()
    s.dispose()
