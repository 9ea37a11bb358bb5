"""Storage of human evaluation studies: SQLAlchemy models, engines, sessions and the schema version.

One database holds every study. A SQLite file is the default (WAL journal, a busy timeout, write
transactions that take the write lock up front); PostgreSQL is used by passing its URL. Judgments
are append-only: the database itself refuses to update or delete a judgment row (a trigger), and a
unique constraint on (assignment, question) makes a second submission of the same answer fail
instead of overwriting the first.

Tables (one class each below): ``avgen_meta`` (schema version, media folder), ``admins``,
``studies``, ``systems``, ``prompts``, ``samples`` (registered media), ``pairs``, ``raters``,
``assignments`` (rater, pair, which side the pair's sample "a" is shown on) and ``judgments``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DDL,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    make_url,
    select,
)
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.pool import StaticPool

from .errors import NotFoundError

__all__ = [
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "StoreError",
    "SchemaError",
    "Store",
    "open_store",
    "normalize_url",
    "utcnow",
    "find_study",
    "Base",
    "Meta",
    "Admin",
    "Study",
    "System",
    "Prompt",
    "Sample",
    "Pair",
    "Rater",
    "Assignment",
    "Judgment",
]

# The version of the tables below. Bump it with every change of the tables and add a migration
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


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC (the only kind of time stored)."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no time zones and returns naive datetimes; PostgreSQL returns aware ones. Storing
    and reading through this type makes comparisons such as "has this token expired" behave the
    same on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use human_eval_app.store.utcnow()")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of every avgen study table."""


class Meta(Base):
    """Key-value facts about the database itself: ``schema_version`` and ``media_dir``."""

    __tablename__ = "avgen_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Admin(Base):
    """A named lead who may create studies, export them and read dashboards (besides the password
    configured in secrets or the environment)."""

    __tablename__ = "admins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Study(Base):
    """A pairwise study: its questions, how many raters each pair needs and how raters join."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)  # what raters type to join
    description: Mapped[str] = mapped_column(Text, default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    questions_json: Mapped[str] = mapped_column(Text)  # list of Question dicts, in display order
    spec_json: Mapped[str] = mapped_column(Text)  # the full spec the study was made from
    raters_per_pair: Mapped[int] = mapped_column(Integer)
    pairs_per_rater: Mapped[int] = mapped_column(Integer)
    gold_per_rater: Mapped[int] = mapped_column(Integer, default=0)
    open_join: Mapped[bool] = mapped_column(Boolean, default=True)
    completion_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_days: Mapped[float] = mapped_column(Float, default=14.0)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")  # "open" | "closed"
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    systems: Mapped[list[System]] = relationship(back_populates="study", order_by="System.id")


class System(Base):
    """A system compared in a study. ``role``: "model" (under test), "baseline", or "gold" (the
    altered copies that gold pairs are made of)."""

    __tablename__ = "systems"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text, default="")

    study: Mapped[Study] = relationship(back_populates="systems")


class Prompt(Base):
    """A prompt every compared system generated a clip for."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("study_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))  # stable id, exported as prompt_id
    text: Mapped[str] = mapped_column(Text)


class Sample(Base):
    """A registered media file: the only kind of file the app ever serves.

    ``media_path`` is relative to the store's media folder; the file there is a browser-playable
    copy (H.264 + AAC mp4) made when the study was created, so later changes to the system's sample
    folder cannot change what raters see.
    """

    __tablename__ = "samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("systems.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    media_path: Mapped[str] = mapped_column(Text)
    original_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    duration: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    has_audio: Mapped[bool] = mapped_column(Boolean)
    transcoded: Mapped[bool] = mapped_column(Boolean, default=False)

    system: Mapped[System] = relationship()
    prompt: Mapped[Prompt] = relationship()


class Pair(Base):
    """Two samples of one prompt. Sample "a" belongs to the model, "b" to the baseline; gold pairs
    carry the known answers as {question key: "a" | "b" | "tie"}."""

    __tablename__ = "pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    sample_a_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    sample_b_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    gold_answers_json: Mapped[str] = mapped_column(Text, default="{}")

    prompt: Mapped[Prompt] = relationship()
    sample_a: Mapped[Sample] = relationship(foreign_keys=[sample_a_id])
    sample_b: Mapped[Sample] = relationship(foreign_keys=[sample_b_id])


class Rater(Base):
    """A rater of one study, identified by a secret token (only its SHA-256 is stored)."""

    __tablename__ = "raters"
    __table_args__ = (UniqueConstraint("study_id", "prolific_pid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    joined_via: Mapped[str] = mapped_column(String(16))  # "invite" | "code" | "prolific"
    prolific_pid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prolific_study_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prolific_session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Assignment(Base):
    """One pair in one rater's queue, at a position, with the side sample "a" is shown on."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("rater_id", "pair_id"), UniqueConstraint("rater_id", "position"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    left_is_a: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    pair: Mapped[Pair] = relationship()


class Judgment(Base):
    """One answer to one question about one assignment, as the rater saw it ("left"/"tie"/"right"
    or "1".."5"). Append-only."""

    __tablename__ = "judgments"
    __table_args__ = (UniqueConstraint("assignment_id", "question"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"))
    question: Mapped[str] = mapped_column(String(64))
    answer: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# Append-only judgments, enforced by the database so that no code path (nor a hand-written SQL
# statement) can rewrite what a rater answered.
_APPEND_ONLY_MSG = "judgments are append-only: a recorded answer cannot be changed or deleted"
for _op in ("UPDATE", "DELETE"):
    event.listen(
        Judgment.__table__,
        "after_create",
        DDL(
            f"CREATE TRIGGER judgments_no_{_op.lower()} BEFORE {_op} ON judgments "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MSG}'); END"
        ).execute_if(dialect="sqlite"),
    )
event.listen(
    Judgment.__table__,
    "after_create",
    DDL(
        "CREATE OR REPLACE FUNCTION avgen_judgments_append_only() RETURNS trigger AS $$ "
        f"BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MSG}'; END $$ LANGUAGE plpgsql"
    ).execute_if(dialect="postgresql"),
)
event.listen(
    Judgment.__table__,
    "after_create",
    DDL(
        "CREATE TRIGGER judgments_append_only BEFORE UPDATE OR DELETE ON judgments "
        "FOR EACH ROW EXECUTE FUNCTION avgen_judgments_append_only()"
    ).execute_if(dialect="postgresql"),
)

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
                conn.execute(Meta.__table__.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
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
            conn.execute(
                Meta.__table__.update().where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION))
            )

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
        with self._write_sessions() as s, s.begin():
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
