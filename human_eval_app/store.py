"""Storage of human evaluation studies: engines, sessions, the schema version (tables: `models`).

One database holds every study. A SQLite file is the default (WAL journal, a busy timeout, write
transactions that take the write lock up front); PostgreSQL is used by passing its URL. Judgments
are append-only: the database itself refuses to update or delete a judgment row (a trigger), and a
unique constraint on (assignment, question) makes a second submission of the same answer fail
instead of overwriting the first.

The tables are defined in `models` and re-exported here. Every open checks the schema version
recorded in ``avgen_meta``: an empty database gets the tables, an older one is migrated (or
refused with what to do), a newer or a foreign one is refused.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    insert,
    inspect,
    make_url,
    select,
    update,
)
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from . import models
from .errors import NotFoundError
from .models import (  # noqa: F401 (re-exported through __all__ below)
    Admin,
    Assignment,
    Base,
    Judgment,
    Meta,
    Pair,
    Prompt,
    Rater,
    Sample,
    Study,
    System,
    UTCDateTime,
    utcnow,
)

__all__ = [
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "StoreError",
    "SchemaError",
    "Store",
    "open_store",
    "normalize_url",
    "find_study",
]
__all__ += models.__all__  # re-exported: the tables are part of the store's API

# The version of the tables in `models`. Bump it with every change of the tables and add a migration
# from the previous version to MIGRATIONS, so that an older database is upgraded when opened.
SCHEMA_VERSION = 1

# version n -> function upgrading a version-n database to n+1, run inside one transaction.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

DEFAULT_DB_URL = "sqlite:///runs/study/studies.db"
SQLITE_BUSY_TIMEOUT_S = 30.0


class StoreError(RuntimeError):
    """A database cannot be opened or used; the message says why and what to do."""


class SchemaError(StoreError):
    """The database was made by another version of avgen, or by something else."""


_TABLES = {t.name for t in Base.metadata.sorted_tables}


def normalize_url(url: str | os.PathLike[str]) -> str:
    """A database URL SQLAlchemy can open: a plain file path becomes a SQLite URL, and
    ``postgresql://``/``postgres://`` select the psycopg 3 driver (the one avgen installs).

    Raises:
        StoreError: the URL is malformed or names a database kind avgen does not support.
    """
    text = os.fspath(url).strip()
    if not text:
        raise StoreError("empty database URL: pass e.g. sqlite:///studies.db or postgresql://user@host/db")
    if "://" not in text:  # a path to a SQLite file
        return f"sqlite:///{Path(text).expanduser()}"
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        parsed = make_url(text)
    except ArgumentError as err:
        raise StoreError(f"malformed database URL {text!r}: {err}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)}: "
            "use a SQLite file (sqlite:///path.db) or PostgreSQL (postgresql://user:pass@host/db)"
        )
    if parsed.drivername == "postgresql":  # no driver named: use psycopg 3, the one avgen installs
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).expanduser().resolve().parent
        if not folder.is_dir():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create the folder {folder} for the database: {err}") from None
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    if database in (None, "", ":memory:"):
        # One in-memory database lives in one connection: share it (tests and throwaway use only).
        engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
    else:
        # Enough connections for the parallel writers of the load test; each waits its turn for
        # the write lock inside SQLite (busy timeout), not for a pooled connection.
        engine = create_engine(url, connect_args=connect_args, pool_size=8, max_overflow=56, pool_timeout=60)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The sqlite3 module opens transactions itself, lazily and only before writes, which breaks
        # SQLAlchemy's transaction boundaries; we switch that off and emit BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers (the dashboard) never block the writer and a killed writer leaves the file
        # consistent; NORMAL sync is durable against process crashes in WAL mode.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write transaction takes the write lock at BEGIN. A deferred transaction that reads and
        # then writes cannot wait for the lock (SQLite answers "database is locked" at once, the
        # busy timeout does not apply to that upgrade), which is what parallel raters would hit.
        if conn.get_execution_options().get("avgen_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


class Store:
    """An open study database: engines, sessions, and where registered media live.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://user:pass@host/db``) or a path
            to a SQLite file.
        media_dir: folder of the registered media. Default: the folder recorded in the database,
            else ``media/`` next to a SQLite file. Required the first time for PostgreSQL.
        create: create the tables when the database is empty (otherwise an empty database is an
            error).

    Raises:
        StoreError: the server cannot be reached or the file cannot be opened.
        SchemaError: the database is not an avgen study database, or is from a newer avgen, or from
            an older one with no migration.
    """

    def __init__(self, url: str | os.PathLike[str], *, media_dir: str | os.PathLike[str] | None = None,
                 create: bool = True) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self.display_url = parsed.render_as_string(hide_password=True)
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=8, max_overflow=24)
        # Same pool, but transactions begun through it are write transactions (see _on_begin).
        self._write_engine = self.engine.execution_options(avgen_write=True)
        self._read_sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(bind=self._write_engine, expire_on_commit=False)
        # SQLite has one writer at a time, and a writer waiting in its busy handler polls with
        # growing sleeps, so under many threads (one Streamlit server serves every rater) newcomers
        # overtake waiters and latencies grow to seconds. Threads of this process therefore queue on
        # a lock and are woken as soon as the writer before them commits; other processes (the CLI)
        # still meet at SQLite's own lock. PostgreSQL locks rows, so writers there run in parallel.
        self._local_writer: contextlib.AbstractContextManager = (
            threading.RLock() if self.dialect == "sqlite" else contextlib.nullcontext()
        )
        try:
            self._prepare_schema(create)
        except DBAPIError as err:
            self.engine.dispose()
            raise StoreError(f"cannot open the database {self.display_url}: {err.orig}") from None
        except Exception:
            self.engine.dispose()
            raise
        self.media_dir = self._resolve_media_dir(media_dir)

    # -- schema ---------------------------------------------------------------------------------
    def _prepare_schema(self, create: bool) -> None:
        tables = set(inspect(self.engine).get_table_names())
        if Meta.__tablename__ not in tables:
            if tables:
                listed = ", ".join(sorted(tables)[:8])
                raise SchemaError(
                    f"{self.display_url} is not an avgen study database (it has other tables: {listed}); "
                    "pass a new file or an empty database"
                )
            if not create:
                raise SchemaError(f"{self.display_url} has no avgen study tables; create a study first")
            with self._write_engine.begin() as conn:
                Base.metadata.create_all(conn)
                conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        with self.engine.connect() as conn:
            row = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).first()
        if row is None or not str(row[0]).isdigit():
            raise SchemaError(f"{self.display_url} has no readable schema version; it was not made by avgen")
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.display_url} was made by a newer avgen (schema {version}, this one knows "
                f"{SCHEMA_VERSION}): upgrade avgen to open it (pip install -U avgen)"
            )
        if version < SCHEMA_VERSION:
            self._migrate(version)
        missing = _TABLES - tables
        if missing:
            raise SchemaError(f"{self.display_url} lacks the tables {sorted(missing)}; the database is damaged")

    def _migrate(self, version: int) -> None:
        steps = list(range(version, SCHEMA_VERSION))
        absent = [v for v in steps if v not in MIGRATIONS]
        if absent:
            raise SchemaError(
                f"{self.display_url} has schema {version}, older than this avgen's {SCHEMA_VERSION}, and "
                f"no upgrade from schema {absent[0]} exists: open it with the avgen version that made it "
                "and export its judgments (avgen study export)"
            )
        with self._write_engine.begin() as conn:  # all steps or none
            for v in steps:
                MIGRATIONS[v](conn)
            conn.execute(update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION)))

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self.session() as s:
            return int(s.get(Meta, "schema_version").value)  # type: ignore[union-attr]

    # -- media folder ---------------------------------------------------------------------------
    def _resolve_media_dir(self, media_dir: str | os.PathLike[str] | None) -> Path | None:
        with self.session() as s:
            row = s.get(Meta, "media_dir")
            recorded = Path(row.value) if row is not None else None
        if media_dir is not None:
            chosen = Path(media_dir).expanduser().resolve()
        elif recorded is not None:
            chosen = recorded
        elif self.dialect == "sqlite" and make_url(self.url).database not in (None, "", ":memory:"):
            chosen = Path(make_url(self.url).database).expanduser().resolve().parent / "media"  # type: ignore[arg-type]
        else:
            return None
        if recorded != chosen:
            with self.write() as s:
                s.merge(Meta(key="media_dir", value=str(chosen)))
        return chosen

    def require_media_dir(self) -> Path:
        """The media folder, created if needed.

        Raises:
            StoreError: none is known (a PostgreSQL database opened without ``media_dir``).
        """
        if self.media_dir is None:
            raise StoreError(
                f"no media folder is set for {self.display_url}: pass --media-dir (a folder every app "
                "server can read) the first time you create a study in it"
            )
        self.media_dir.mkdir(parents=True, exist_ok=True)
        return self.media_dir

    # -- sessions -------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (no commit). Objects stay usable after the block."""
        with self._read_sessions() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on an exception."""
        with self._local_writer, self._write_sessions() as s, s.begin():
            yield s

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r}, media_dir={str(self.media_dir)!r})"


def open_store(url: str | os.PathLike[str] | None = None, *, media_dir: str | os.PathLike[str] | None = None,
               create: bool = True) -> Store:
    """Open (and create, when empty) the study database at ``url``.

    ``url`` defaults to the environment variable ``AVGEN_DB_URL``, else ``sqlite:///runs/study/studies.db``;
    ``media_dir`` to ``AVGEN_MEDIA_DIR``, else what the database recorded.
    """
    url = url or os.environ.get("AVGEN_DB_URL") or DEFAULT_DB_URL
    media_dir = media_dir or os.environ.get("AVGEN_MEDIA_DIR") or None
    return Store(url, media_dir=media_dir, create=create)


def find_study(session: Session, ref: str | int) -> Study:
    """A study by id, name or code (codes in any case).

    Raises:
        NotFoundError: no study matches.
    """
    study = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        study = session.get(Study, int(ref))
    if study is None and isinstance(ref, str):
        text = ref.strip()
        study = session.scalar(select(Study).where((Study.name == text) | (Study.code == text.upper())))
    if study is None:
        raise NotFoundError(f"no study {ref!r}; `avgen study list` shows the studies")
    return study
