"""Pages under attack: Prolific take-over, throttled admin sign-in, system names shown literally."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest
from test_app_pages import _answer_current, _app, _texts, app_env  # noqa: F401 (app_env: the pages' fixture)

from human_eval_app.store import Rater, Store

pytestmark = pytest.mark.usefixtures("app_env")  # the app opens `store` (its database and admin password)


def _progress(at: AppTest) -> str:
    return at.get("progress")[0].proto.text


def test_prolific_id_alone_does_not_take_over_a_rater(store: Store, make_study) -> None:
    info = make_study().info
    first = _app(study=info.code, PROLIFIC_PID="60a1b2c3d4", STUDY_ID="st1", SESSION_ID="se1")
    token = first.query_params["token"]
    first = _answer_current(first, "left")
    assert "Pair 2 of 2" in _progress(first)

    # a second browser with the same participant id and another Prolific session is refused
    intruder = _app(study=info.code, PROLIFIC_PID="60a1b2c3d4", STUDY_ID="st1", SESSION_ID="other")
    assert "already joined this study from another session" in _texts(intruder)
    assert "token" not in intruder.query_params and not intruder.radio and not intruder.exception

    # the first person's link keeps working, at their place in the queue
    back = _app(token=token)
    assert not back.exception and "Pair 2 of 2" in _progress(back)

    # the participant reopening the study from Prolific (same session id) resumes their own queue
    resumed = _app(study=info.code, PROLIFIC_PID="60a1b2c3d4", STUDY_ID="st1", SESSION_ID="se1")
    assert resumed.query_params["token"] and "Pair 2 of 2" in _progress(resumed)


def test_same_browser_session_resumes_with_its_token(store: Store, make_study) -> None:
    """A browser that holds the rater's token may open Prolific's link again, whatever its session id."""
    info = make_study().info
    at = _app(study=info.code, PROLIFIC_PID="60a1b2c3d4", SESSION_ID="se1")
    token = at.query_params["token"]
    at.query_params.clear()
    at.query_params.update({"study": info.code, "PROLIFIC_PID": "60a1b2c3d4", "SESSION_ID": "se2"})
    at.run()
    assert not at.exception and at.query_params["token"] == token and at.radio
    with store.session() as s:
        assert s.scalar(select(func.count(Rater.id))) == 1
