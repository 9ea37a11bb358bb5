"""Balanced assignment of pairs to raters.

Raters arrive one at a time (invite links, the study code, Prolific), so queues are filled when a
rater first opens the study rather than planned for a fixed crowd. Each new queue takes:

- up to `pairs_per_rater` regular pairs that still lack raters, those with the fewest raters
  first (ties broken at random), preferring prompts not yet in the queue, so every pair reaches
  `raters_per_pair` as evenly as raters come;
- `gold_per_rater` gold pairs, the least used first;
- shuffled positions; and for each pair the side its sample "a" is shown on, chosen to even out
  left and right over the pair's raters (random when even), which cancels position bias.

A pair is never given twice to one rater (a unique constraint backs this). A pair that cannot be
served (its media file is gone) is taken out of the rater's queue unanswered and replaced by another
pair of the same kind (`release_assignment`); answered assignments are never touched. Assignments left
unanswered for `STALE_AFTER` (a rater who closed the tab) stop counting towards the pair's quota,
so abandoned queues cannot starve a pair; the rater may still answer them later.

Allocation runs inside a write transaction holding the study's lock (SQLite: the database write
lock taken at BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE on the study row), so two raters
joining at once cannot both take a pair's last slot.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from .store import Assignment, Judgment, Pair, Rater, Study, utcnow

__all__ = ["STALE_AFTER", "PairLoad", "pair_loads", "allocate_queue", "release_assignment", "raters_needed"]

STALE_AFTER = dt.timedelta(hours=24)


@dataclass
class PairLoad:
    """How many raters hold a pair and on which side they see its sample "a"."""

    pair_id: int
    prompt_id: int
    is_gold: bool
    live: int = 0  # assignments answered, or handed out less than STALE_AFTER ago
    left_a: int = 0  # of all assignments, those showing "a" on the left
    right_a: int = 0


def raters_needed(n_pairs: int, raters_per_pair: int, pairs_per_rater: int) -> int:
    """Raters needed so that every one of `n_pairs` pairs gets `raters_per_pair` raters, each rater
    judging at most `pairs_per_rater` pairs."""
    if n_pairs <= 0:
        return 0
    return max(math.ceil(n_pairs * raters_per_pair / pairs_per_rater), raters_per_pair)


def pair_loads(session: Session, study_id: int, now: dt.datetime | None = None) -> dict[int, PairLoad]:
    """The load of every pair of a study (see PairLoad)."""
    now = now or utcnow()
    loads = {
        pid: PairLoad(pid, prompt_id, gold)
        for pid, prompt_id, gold in session.execute(
            select(Pair.id, Pair.prompt_id, Pair.is_gold).where(Pair.study_id == study_id)
        )
    }
    # One aggregate query: this runs under the study's write lock for every joining rater.
    answered = (select(Judgment.assignment_id).where(Judgment.study_id == study_id).distinct().subquery())
    live = case((or_(answered.c.assignment_id.is_not(None), Assignment.created_at > now - STALE_AFTER), 1), else_=0)
    rows = session.execute(
        select(Assignment.pair_id, func.sum(case((Assignment.left_is_a, 1), else_=0)), func.count(Assignment.id),
               func.sum(live))
        .outerjoin(answered, answered.c.assignment_id == Assignment.id)
        .where(Assignment.study_id == study_id)
        .group_by(Assignment.pair_id)
    )
    for pair_id, n_left_a, n, n_live in rows:
        load = loads[pair_id]
        load.left_a, load.right_a, load.live = int(n_left_a), int(n) - int(n_left_a), int(n_live)
    return loads


def _pick(candidates: list[PairLoad], k: int, rng: random.Random, avoid_prompts: set[int]) -> list[PairLoad]:
    """The `k` least loaded candidates (random among equals), new prompts first."""
    order = sorted(candidates, key=lambda c: (c.live, rng.random()))
    chosen: list[PairLoad] = []
    seen = set(avoid_prompts)
    for c in order:  # first pass: one pair per prompt
        if len(chosen) == k:
            return chosen
        if c.prompt_id not in seen:
            chosen.append(c)
            seen.add(c.prompt_id)
    for c in order:  # second pass: fill up, prompts may repeat
        if len(chosen) == k:
            break
        if c not in chosen:
            chosen.append(c)
    return chosen


def _side(load: PairLoad, rng: random.Random) -> bool:
    """Whether sample "a" goes left: the side the pair's raters saw it on less often (random when even)."""
    if load.left_a != load.right_a:
        return load.left_a < load.right_a
    return rng.random() < 0.5


def allocate_queue(session: Session, study: Study, rater: Rater, now: dt.datetime | None = None) -> list[Assignment]:
    """Fill the queue of a rater who has none yet (call inside `Store.write()`).

    Returns:
        The new assignments, in queue order (empty if the rater already has a queue or the study
        has every rating it needs).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Study.id).where(Study.id == study.id).with_for_update())
    has_queue = session.scalar(select(func.count(Assignment.id)).where(Assignment.rater_id == rater.id))
    if has_queue:
        return []
    rng = random.Random(f"{study.seed}:{rater.id}")
    loads = pair_loads(session, study.id, now)
    regular = [c for c in loads.values() if not c.is_gold and c.live < study.raters_per_pair]
    gold = [c for c in loads.values() if c.is_gold]
    chosen = _pick(regular, study.pairs_per_rater, rng, set())
    if chosen:  # a rater with nothing to rate gets no gold pairs either
        chosen += _pick(gold, study.gold_per_rater, rng, set())
    rng.shuffle(chosen)
    created = []
    for position, load in enumerate(chosen):
        a = Assignment(study_id=study.id, rater_id=rater.id, pair_id=load.pair_id, position=position,
                       left_is_a=_side(load, rng), created_at=now or utcnow())
        session.add(a)
        created.append(a)
    session.flush()
    return created


def release_assignment(session: Session, rater_id: int, assignment_id: int, servable: Callable[[int], bool],
                       now: dt.datetime | None = None) -> tuple[int, Assignment | None] | None:
    """Take an unanswered assignment out of a rater's queue and put another pair in its place (call
    inside `Store.write()`).

    The replacement is a pair of the same kind (regular or gold) that the rater does not hold, that
    still lacks raters (regular pairs), and for which `servable(pair_id)` is true; it goes to the
    end of the queue. The released pair's slot is freed, so its quota is filled by another rater
    once its media are back.

    Args:
        servable: whether a pair's media can be served now.

    Returns:
        None if nothing was released (no such assignment of this rater, or it has answers: stored
        judgments are never touched); else the released pair id and the replacement (None when no
        pair is left to give).
    """
    a = session.get(Assignment, assignment_id)
    if a is None or a.rater_id != rater_id:
        return None
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Study.id).where(Study.id == a.study_id).with_for_update())
    if session.scalar(select(func.count(Judgment.id)).where(Judgment.assignment_id == a.id)):
        return None
    study = session.get(Study, a.study_id)
    released = session.get(Pair, a.pair_id)
    if study is None or released is None:
        return None
    session.delete(a)
    session.flush()
    held = session.execute(select(Assignment.pair_id, Assignment.position, Pair.prompt_id)
                           .join(Pair, Pair.id == Assignment.pair_id).where(Assignment.rater_id == rater_id)).all()
    held_pairs = {pair_id for pair_id, _, _ in held} | {released.id}
    loads = pair_loads(session, study.id, now)
    candidates = [c for c in loads.values()
                  if c.is_gold == released.is_gold and c.pair_id not in held_pairs
                  and (c.is_gold or c.live < study.raters_per_pair)]
    rng = random.Random(f"{study.seed}:{rater_id}:{assignment_id}")
    for load in _pick(candidates, len(candidates), rng, {prompt for _, _, prompt in held}):
        if not servable(load.pair_id):
            continue
        position = max((pos for _, pos, _ in held), default=-1) + 1
        replacement = Assignment(study_id=study.id, rater_id=rater_id, pair_id=load.pair_id, position=position,
                                 left_is_a=_side(load, rng), created_at=now or utcnow())
        session.add(replacement)
        session.flush()
        return released.id, replacement
    return released.id, None
