"""The rater's side: joining, tokens (forged, expired), Prolific, answers, duplicates, access."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from human_eval_app.auth import AccessError
from human_eval_app.errors import AnswerError, DuplicateSubmission, StudyClosed
from human_eval_app.raters import (
    ProlificParams,
    authenticate,
    create_invites,
    join_with_code,
    load_item,
    queue_state,
    start_queue,
    submit_answers,
)
from human_eval_app.store import Judgment, Rater, Store, Study
from human_eval_app.studies import set_status


def test_join_with_code_then_resume_by_token(store: Store, make_study) -> None:
    info = make_study().info
    ctx, token = join_with_code(store, info.code.lower(), "  Ann\x00 \t Lee ")
    assert ctx.name == "Ann Lee" and ctx.study_name == "study" and [q.key for q in ctx.questions] == ["overall", "sync"]
    start_queue(store, ctx.rater_id)
    first = queue_state(store, ctx.rater_id)
    submit_answers(store, ctx.rater_id, first.next_assignment_id, {"overall": "left", "sync": "right"}, 3)
    again = authenticate(store, token)  # a reload: same rater, next pair
    assert again.rater_id == ctx.rater_id
    state = queue_state(store, again.rater_id)
    assert (state.done, state.total) == (1, 2) and state.next_assignment_id != first.next_assignment_id


def test_item_shows_no_system_names_or_source_paths(store: Store, make_study, systems) -> None:
    info = make_study().info
    ctx, _ = join_with_code(store, info.code, "Ann")
    start_queue(store, ctx.rater_id)
    item = load_item(store, ctx.rater_id, queue_state(store, ctx.rater_id).next_assignment_id)
    shown = repr(item)
    for secret in ("ours", "base", str(systems["ours"]), "clip0"):
        assert secret not in shown


@pytest.mark.parametrize("token", ["", "garbage", "' OR '1'='1' --", "A" * 32, "<img src=x onerror=alert(1)>"])
def test_forged_tokens_are_refused(store: Store, make_study, token: str) -> None:
    make_study()
    with pytest.raises(AccessError, match="not valid"):
        authenticate(store, token)


def test_expired_token(store: Store, make_study) -> None:
    info = make_study().info
    invite = create_invites(store, info.id, 1, days=1)[0]
    assert authenticate(store, invite.token).rater_id == invite.rater_id
    with store.write() as s:
        s.get(Rater, invite.rater_id).expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with pytest.raises(AccessError, match="expired"):
        authenticate(store, invite.token)


@pytest.mark.parametrize("code", ["'; DROP TABLE studies; --", "ABCD' OR 1=1", "<script>", "", "ZZZZZZZZ"])
def test_bad_study_codes(store: Store, make_study, code: str) -> None:
    make_study()
    with pytest.raises(AccessError):
        join_with_code(store, code, "Ann")
    with store.session() as s:
        assert s.scalar(select(func.count(Study.id))) == 1  # still there


def test_hostile_names_are_stored_literally(store: Store, make_study) -> None:
    info = make_study()
    name = "Robert'); DROP TABLE raters;-- <script>alert(1)</script>"
    ctx, token = join_with_code(store, info.info.code, name)
    assert authenticate(store, token).name == name
    with pytest.raises(AccessError, match="enter your name"):
        join_with_code(store, info.info.code, " \x00\x07 ")


def test_prolific_participant_resumes_as_the_same_rater(store: Store, make_study) -> None:
    info = make_study().info
    params = ProlificParams(pid="5f1a2b3c4d", study_id="S1", session_id="X1")
    ctx, token = join_with_code(store, info.code, None, prolific=params)
    assert ctx.name == "prolific-5f1a2b3c4d"
    again, token2 = join_with_code(store, info.code, None, prolific=params)
    assert again.rater_id == ctx.rater_id and token2 != token
    with pytest.raises(AccessError):  # the older link was replaced
        authenticate(store, token)
    with pytest.raises(AccessError, match="malformed"):
        ProlificParams(pid="x' OR 1=1")


def test_invite_only_and_closed_studies(store: Store, make_study) -> None:
    info = make_study(open_join=False).info
    with pytest.raises(AccessError, match="invitation only"):
        join_with_code(store, info.code, "Ann")
    invite = create_invites(store, info.id, 1)[0]
    start_queue(store, invite.rater_id)
    aid = queue_state(store, invite.rater_id).next_assignment_id
    set_status(store, info.id, "closed")
    with pytest.raises(StudyClosed):
        submit_answers(store, invite.rater_id, aid, {"overall": "left", "sync": "left"}, 1)
    with pytest.raises(StudyClosed):
        create_invites(store, info.id, 1)


def test_answers_are_checked_and_recorded_once(store: Store, make_study) -> None:
    info = make_study().info
    ann, bob = create_invites(store, info.id, 2)
    for r in (ann, bob):
        start_queue(store, r.rater_id)
    aid = queue_state(store, ann.rater_id).next_assignment_id
    with pytest.raises(AnswerError, match="missing"):
        submit_answers(store, ann.rater_id, aid, {"overall": "left"}, 1)
    with pytest.raises(AnswerError, match="not an answer"):
        submit_answers(store, ann.rater_id, aid, {"overall": "left", "sync": "'; DELETE FROM judgments; --"}, 1)
    with pytest.raises(AnswerError, match="unknown questions"):
        submit_answers(store, ann.rater_id, aid, {"overall": "left", "sync": "tie", "extra": "left"}, 1)
    with pytest.raises(AnswerError, match="seconds"):
        submit_answers(store, ann.rater_id, aid, {"overall": "left", "sync": "tie"}, -3)
    with pytest.raises(AccessError, match="not in your queue"):  # Bob cannot answer Ann's pair
        submit_answers(store, bob.rater_id, aid, {"overall": "left", "sync": "tie"}, 1)
    with pytest.raises(AccessError, match="not in your queue"):
        load_item(store, bob.rater_id, aid)
    assert submit_answers(store, ann.rater_id, aid, {"overall": "LEFT", "sync": "tie"}, 1.5) == 2
    with pytest.raises(DuplicateSubmission):
        submit_answers(store, ann.rater_id, aid, {"overall": "right", "sync": "right"}, 1)
    with store.session() as s:
        assert dict(s.execute(select(Judgment.question, Judgment.answer)).all()) == {"overall": "left", "sync": "tie"}


def test_a_known_prolific_id_does_not_take_over_the_rater(store: Store, make_study) -> None:
    """Someone who knows a participant id but not their Prolific session is refused; the first link works."""
    info = make_study().info
    first, token = join_with_code(store, info.code, None, prolific=ProlificParams(pid="5f1a2b3c4d", session_id="S1"))
    for other in (ProlificParams(pid="5f1a2b3c4d", session_id="S2"), ProlificParams(pid="5f1a2b3c4d")):
        with pytest.raises(AccessError, match="already joined this study from another session"):
            join_with_code(store, info.code, None, prolific=other)
        with pytest.raises(AccessError, match="another session"):  # a forged token is no proof either
            join_with_code(store, info.code, None, prolific=other, token="forged-but-well-formed-token-000")
    assert authenticate(store, token).rater_id == first.rater_id  # the first person's link keeps working

    # the same browser (it holds the token) resumes with its link unchanged
    again, same = join_with_code(store, info.code, None, prolific=ProlificParams(pid="5f1a2b3c4d", session_id="S2"),
                                 token=token)
    assert again.rater_id == first.rater_id and same == token and authenticate(store, token)

    # a token of another rater is no proof for this participant id
    _, other_token = join_with_code(store, info.code, "Bob")
    with pytest.raises(AccessError, match="another session"):
        join_with_code(store, info.code, None, prolific=ProlificParams(pid="5f1a2b3c4d", session_id="S9"),
                       token=other_token)


def test_prolific_participant_without_session_id_cannot_be_resumed_by_id(store: Store, make_study) -> None:
    info = make_study().info
    join_with_code(store, info.code, None, prolific=ProlificParams(pid="abc123"))
    with pytest.raises(AccessError, match="another session"):
        join_with_code(store, info.code, None, prolific=ProlificParams(pid="abc123"))
