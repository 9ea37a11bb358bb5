"""Serving a rater's pair, and what happens when one of its media files is gone.

The rate page reads the two clips of the rater's current assignment through `pair_media`. If a
registered file is missing or changed since the study was created (deleted by hand, a media folder
restored incompletely), the rater must learn nothing about it (no path, no system) and must not be
stuck on that pair. So:

- the problem, with the path and the system, goes to the server log for the lead;
- the assignment, unanswered by construction, is taken out of the rater's queue and replaced by
  another servable pair (`assignment.release_assignment`); no stored judgment is touched;
- the rater gets a neutral message (`PairUnavailable`), and the next pair.

`media_problems` lists every registered file of a study that cannot be served, for the Dashboard
page and `avgen study progress`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from avio import MediaError

from .assignment import release_assignment
from .media import read_registered, resolve_registered
from .raters import Item
from .store import Assignment, Pair, Prompt, Sample, Store, find_study

__all__ = ["RATER_MESSAGE", "PairUnavailable", "MediaProblem", "pair_media", "media_problems"]

log = logging.getLogger(__name__)

# What a rater reads when a pair cannot be shown: nothing about files, systems or sides.
RATER_MESSAGE = ("One pair could not be shown, so it was taken out of your queue. Your answers so far are "
                 "saved; please go on with the next pair.")
_COME_BACK = "This pair cannot be shown right now. Please come back later; your answers so far are saved."


class PairUnavailable(Exception):
    """A pair cannot be shown; `str()` is what the rater may read.

    Attributes:
        released: whether the assignment left the rater's queue (False: the page must stop rather
            than show the same pair again).
    """

    def __init__(self, message: str, released: bool) -> None:
        super().__init__(message)
        self.released = released


@dataclass(frozen=True)
class MediaProblem:
    """A registered file that cannot be served (for the lead: it names the system and the path)."""

    sample_id: int
    system: str
    prompt_key: str
    media_path: str
    original_path: str
    problem: str


def _servable(sample: Sample, media_root) -> str | None:
    """Why a sample's file cannot be served, or None. Checks presence and size, not the hash: this
    runs while a rater waits (`read_registered` checks the hash of what is actually sent)."""
    try:
        path = resolve_registered(media_root, sample.media_path)
    except MediaError as err:
        return str(err)
    if path.stat().st_size != sample.size_bytes:
        return f"registered media {sample.media_path!r} changed since the study was created"
    return None


def _pair_servable(session: Session, media_root, pair_id: int) -> bool:
    pair = session.get(Pair, pair_id)
    return pair is not None and all(_servable(session.get(Sample, sid), media_root) is None  # type: ignore[arg-type]
                                    for sid in (pair.sample_a_id, pair.sample_b_id))


def pair_media(store: Store, rater_id: int, item: Item) -> tuple[bytes, bytes]:
    """The bytes of the left and right clip of one of the rater's items.

    Raises:
        PairUnavailable: a file is missing or changed; the problem is logged, and the assignment is
            released and replaced (see the module docstring).
    """
    media_root = store.require_media_dir()
    try:
        return (read_registered(media_root, item.left.relpath, item.left.sha256),
                read_registered(media_root, item.right.relpath, item.right.sha256))
    except MediaError as err:
        problem = str(err)
    with store.write() as s:
        a = s.get(Assignment, item.assignment_id)
        where = (f"study {a.study_id}, pair {a.pair_id}" if a is not None else "an unknown pair")
        log.error("%s cannot be served to rater %s (assignment %s): %s", where, rater_id, item.assignment_id, problem)
        result = release_assignment(s, rater_id, item.assignment_id, lambda pid: _pair_servable(s, media_root, pid))
    if result is None:
        log.error("assignment %s of rater %s was not released (answered, or not theirs)", item.assignment_id, rater_id)
        raise PairUnavailable(_COME_BACK, released=False)
    _, replacement = result
    log.warning("assignment %s taken out of rater %s's queue; %s", item.assignment_id, rater_id,
                f"replaced by pair {replacement.pair_id}" if replacement else "no servable pair was left to replace it")
    raise PairUnavailable(RATER_MESSAGE, released=True)


def media_problems(store: Store, study_ref: str | int) -> list[MediaProblem]:
    """Every registered file of a study that is missing, outside the media folder or changed in size."""
    media_root = store.require_media_dir()
    problems = []
    with store.session() as s:
        study = find_study(s, study_ref)
        for sample, key in s.execute(select(Sample, Prompt.key).join(Prompt, Prompt.id == Sample.prompt_id)
                                     .where(Sample.study_id == study.id).order_by(Sample.id)):
            why = _servable(sample, media_root)
            if why is not None:
                problems.append(MediaProblem(sample.id, sample.system.name, key, sample.media_path,
                                             sample.original_path, why))
    return problems
