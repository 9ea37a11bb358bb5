"""Balanced assignment: every pair gets its raters, no rater sees a pair twice, sides even out."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

from sqlalchemy import select

from human_eval_app.assignment import STALE_AFTER, raters_needed
from human_eval_app.raters import create_invites, start_queue
from human_eval_app.store import Assignment, Pair, Store


def _assignments(store: Store) -> list[tuple[int, int, bool, bool]]:
    with store.session() as s:
        return s.execute(select(Assignment.rater_id, Assignment.pair_id, Assignment.left_is_a, Pair.is_gold)
                         .join(Pair, Pair.id == Assignment.pair_id)).all()


def test_every_pair_gets_its_raters_evenly(store: Store, make_study) -> None:
    info = make_study(names=("ours", "base", "other"), raters_per_pair=3, pairs_per_rater=3,
                      gold={"count": 2, "per_rater": 1}).info  # 8 pairs, 24 ratings
    assert info.raters_needed == 8
    for invite in create_invites(store, info.id, info.raters_needed + 2):
        start_queue(store, invite.rater_id)
    rows = _assignments(store)
    regular = [r for r in rows if not r[3]]
    per_pair = Counter(pair for _, pair, _, _ in regular)
    assert len(per_pair) == 8 and set(per_pair.values()) == {3}  # exactly raters_per_pair each
    assert len({(rater, pair) for rater, pair, _, _ in rows}) == len(rows)  # no pair twice to a rater
    per_rater = Counter(rater for rater, _, _, _ in regular)
    assert sorted(per_rater.values()) == [3] * 8  # the two late raters got nothing: the study is full
    gold_per_rater = Counter(rater for rater, _, _, gold in rows if gold)
    assert set(gold_per_rater.values()) == {1} and set(gold_per_rater) == set(per_rater)
    sides = Counter((pair, left) for _, pair, left, gold in regular)
    for pair in per_pair:  # 3 raters: sides split 2/1, never 3/0
        assert abs(sides[(pair, True)] - sides[(pair, False)]) == 1


def test_a_queue_prefers_distinct_prompts(store: Store, make_study) -> None:
    info = make_study(names=("ours", "base", "other"), raters_per_pair=1, pairs_per_rater=4).info
    invite = create_invites(store, info.id, 1)[0]
    start_queue(store, invite.rater_id)
    with store.session() as s:
        prompts = s.scalars(select(Pair.prompt_id).join(Assignment, Assignment.pair_id == Pair.id)).all()
    assert len(prompts) == 4 and len(set(prompts)) == 4


def test_abandoned_queues_are_given_again(store: Store, make_study) -> None:
    info = make_study(raters_per_pair=1, pairs_per_rater=4).info
    first, second = create_invites(store, info.id, 2)
    start_queue(store, first.rater_id)
    start_queue(store, second.rater_id)
    assert sum(1 for r in _assignments(store) if r[0] == second.rater_id) == 0  # all taken
    with store.write() as s:  # the first rater left a day ago without answering
        for a in s.scalars(select(Assignment)):
            a.created_at = a.created_at - STALE_AFTER - dt.timedelta(minutes=1)
    third = create_invites(store, info.id, 1)[0]
    start_queue(store, third.rater_id)
    assert sum(1 for r in _assignments(store) if r[0] == third.rater_id) == 4


def test_parallel_joins_never_overfill_a_pair(store: Store, make_study) -> None:
    info = make_study(raters_per_pair=2, pairs_per_rater=2).info  # 8 slots: 4 raters' worth
    invites = create_invites(store, info.id, 12)
    barrier = threading.Barrier(len(invites))

    def join(rater_id: int) -> None:
        barrier.wait()
        start_queue(store, rater_id)

    threads = [threading.Thread(target=join, args=(i.rater_id,)) for i in invites]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_pair = Counter(pair for _, pair, _, _ in _assignments(store))
    assert set(per_pair.values()) == {2} and len(per_pair) == 4


def test_raters_needed() -> None:
    assert raters_needed(100, 3, 20) == 15
    assert raters_needed(2, 3, 20) == 3  # at least raters_per_pair people
    assert raters_needed(0, 3, 20) == 0
