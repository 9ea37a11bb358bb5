"""The tables of the study database (SQLAlchemy declarative models).

``avgen_meta`` (schema version, media folder), ``admins``, ``studies``, ``systems``, ``prompts``,
``samples`` (registered media), ``pairs``, ``raters``, ``assignments`` (rater, pair, which side the
pair's sample "a" is shown on) and ``judgments`` (append-only, enforced by a database trigger).
Engines, sessions and the schema version live in `store`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    DDL,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "utcnow",
    "UTCDateTime",
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
