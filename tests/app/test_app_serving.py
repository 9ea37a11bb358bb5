"""A registered file gone after the study was created: the rater learns nothing and moves on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from human_eval_app.raters import create_invites, load_item, queue_state, start_queue, submit_answers
from human_eval_app.serving import RATER_MESSAGE, PairUnavailable, media_problems, pair_media
from human_eval_app.store import Assignment, Judgment, Pair, Sample, Store

APP = str(Path(__file__).resolve().parents[2] / "human_eval_app" / "app.py")


def _delete_media_of(store: Store, assignment_id: int) -> Path:
    """Delete the baseline's file of an assignment's pair; returns its path."""
    with store.session() as s:
        pair = s.get(Pair, s.get(Assignment, assignment_id).pair_id)
        path = store.media_dir / s.get(Sample, pair.sample_b_id).media_path
    path.unlink()
    return path


def _pairs_of(store: Store, rater_id: int) -> list[int]:
    with store.session() as s:
        return list(s.scalars(select(Assignment.pair_id).where(Assignment.rater_id == rater_id)
                              .order_by(Assignment.position)))


def test_missing_file_is_logged_and_the_queue_moves_on(store: Store, make_study,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    info = make_study(raters_per_pair=1, pairs_per_rater=2).info  # 4 pairs: 2 left for a replacement
    rater = create_invites(store, info.id, 1)[0].rater_id
    start_queue(store, rater)
    first = load_item(store, rater, queue_state(store, rater).next_assignment_id)
    submit_answers(store, rater, first.assignment_id, {"overall": "left", "sync": "tie"}, 3.0)
    state = queue_state(store, rater)
    broken = load_item(store, rater, state.next_assignment_id)
    before = _pairs_of(store, rater)
    gone = _delete_media_of(store, broken.assignment_id)

    with caplog.at_level(logging.WARNING, logger="human_eval_app.serving"):
        with pytest.raises(PairUnavailable) as err:
            pair_media(store, rater, broken)
    message = str(err.value)
    assert err.value.released and message == RATER_MESSAGE
    for secret in (str(store.media_dir), gone.name, info.code, "-s1", "base", "ours"):
        assert secret not in message
    assert gone.name in caplog.text and "cannot be served" in caplog.text  # for the lead

    after = queue_state(store, rater)
    assert (after.done, after.total) == (1, 2)  # the answered pair stays; a new pair took the broken one's place
    pairs = _pairs_of(store, rater)
    assert pairs[0] == before[0] and before[1] not in pairs and len(set(pairs)) == 2
    nxt = load_item(store, rater, after.next_assignment_id)
    left, right = pair_media(store, rater, nxt)
    assert left[4:8] == b"ftyp" and right[4:8] == b"ftyp"
    with store.session() as s:
        assert s.scalar(select(func.count(Judgment.id))) == 2  # nothing stored was lost

    problems = media_problems(store, info.code)
    assert [(p.system, Path(p.media_path).name) for p in problems] == [("base", gone.name)]


def test_no_replacement_left_still_moves_on(store: Store, make_study) -> None:
    info = make_study(raters_per_pair=1, pairs_per_rater=4).info  # the rater holds every pair
    rater = create_invites(store, info.id, 1)[0].rater_id
    start_queue(store, rater)
    broken = load_item(store, rater, queue_state(store, rater).next_assignment_id)
    _delete_media_of(store, broken.assignment_id)
    with pytest.raises(PairUnavailable):
        pair_media(store, rater, broken)
    state = queue_state(store, rater)
    assert (state.done, state.total) == (0, 3) and state.next_assignment_id != broken.assignment_id


def test_rate_page_shows_a_neutral_note_and_the_next_pair(store: Store, make_study,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVGEN_DB_URL", store.url)
    monkeypatch.delenv("AVGEN_MEDIA_DIR", raising=False)
    info = make_study(raters_per_pair=1, pairs_per_rater=2).info
    invite = create_invites(store, info.id, 1)[0]
    start_queue(store, invite.rater_id)
    broken = queue_state(store, invite.rater_id).next_assignment_id
    gone = _delete_media_of(store, broken)

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["token"] = invite.token
    at.run()
    assert not at.exception and not at.error
    shown = "\n".join(str(x.value) for x in [*at.info, *at.warning, *at.markdown])
    assert RATER_MESSAGE in shown
    for secret in (str(store.media_dir), gone.name, info.code, "base"):
        assert secret not in shown
    assert at.radio and at.radio[0].key.split("-")[1] != str(broken)  # the questions of another pair
    assert "Pair 1 of 2" in at.get("progress")[0].proto.text


def test_studies_page_lists_unservable_clips_for_the_lead(store: Store, make_study,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVGEN_DB_URL", store.url)
    monkeypatch.setenv("AVGEN_ADMIN_PASSWORD", "correct horse battery")
    monkeypatch.delenv("AVGEN_ADMIN_PASSWORD_HASH", raising=False)
    monkeypatch.delenv("AVGEN_MEDIA_DIR", raising=False)
    info = make_study().info
    invite = create_invites(store, info.id, 1)[0]
    start_queue(store, invite.rater_id)
    gone = _delete_media_of(store, queue_state(store, invite.rater_id).next_assignment_id)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/studies.py")
    at.run()
    at.text_input(key="admin-password").set_value("correct horse battery")
    at.button(key="FormSubmitter:admin-sign-in-Sign in").click().run()
    assert not at.exception
    assert any("1 registered clips of this study cannot be served" in w.value for w in at.warning)
    table = next(d.value for d in at.dataframe if "media_path" in d.value.columns)
    assert table["system"].tolist() == ["base"] and table["media_path"].iloc[0].endswith(gone.name)
