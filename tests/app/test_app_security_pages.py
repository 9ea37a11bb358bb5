"""Pages under attack: Prolific take-over, admin sign-in (throttle, password length), names shown literally."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest
from test_app_pages import PASSWORD, _answer_current, _app, _texts, app_env  # noqa: F401 (app_env: the pages' fixture)

from human_eval_app.auth import SIGN_IN_THROTTLES
from human_eval_app.raters import join_with_code, queue_state, start_queue, submit_answers
from human_eval_app.spec import StudySpec
from human_eval_app.store import Rater, Store
from human_eval_app.studies import create_study
from human_eval_app.ui import escape_md

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


def _sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="admin-password").set_value(password)
    return at.button(key="FormSubmitter:admin-sign-in-Sign in").click().run()


def test_wrong_password_wait_is_not_reset_by_a_new_session(store: Store, make_study,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    make_study(name="secret study")
    clock = [1000.0]
    for throttle in SIGN_IN_THROTTLES.values():
        monkeypatch.setattr(throttle, "clock", lambda: clock[0])
    first = _sign_in(_app("pages/studies.py"), "wrong password!")
    assert "Wrong password. The next try is possible in 1 s" in _texts(first)

    # a fresh browser session (what an attacker opens for each guess) still has to wait,
    # and is refused even with the right password: nothing is checked during the wait
    fresh = _sign_in(_app("pages/studies.py"), PASSWORD)
    assert "Too many wrong passwords; try again in 1 s" in _texts(fresh) and "secret study" not in _texts(fresh)
    assert not fresh.dataframe

    # the waits double per wrong password, and the real admin gets in once the wait is over
    clock[0] += 1.0
    assert "next try is possible in 2 s" in _texts(_sign_in(_app("pages/studies.py"), "still wrong!!"))
    clock[0] += 2.0
    admin = _sign_in(_app("pages/studies.py"), PASSWORD)
    assert not admin.exception and "secret study" in admin.dataframe[0].value["name"].tolist()
    assert SIGN_IN_THROTTLES["client"].wait_seconds("address:local") == 0  # a right password starts afresh


def test_too_short_admin_password_closes_the_lead_pages(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVGEN_ADMIN_PASSWORD", "x")
    at = _app("pages/dashboard.py")
    assert "AVGEN_ADMIN_PASSWORD has 1 characters; an admin password needs at least 12" in _texts(at)
    assert not at.text_input and not at.exception


def test_dashboard_shows_system_names_literally(store: Store, systems: dict[str, Path]) -> None:
    model, baseline = "**ours** :red[x]", "[base](http://evil.example) $x$"
    spec = StudySpec(name="markup", systems=[{"name": model, "path": str(systems["ours"])},  # type: ignore[list-item]
                                             {"name": baseline, "path": str(systems["base"])}],
                     questions=["overall"], raters_per_pair=1, pairs_per_rater=4)
    info = create_study(store, spec).info
    rater, _ = join_with_code(store, info.code, "Ann")
    start_queue(store, rater.rater_id)
    while (state := queue_state(store, rater.rater_id)).next_assignment_id:
        submit_answers(store, rater.rater_id, state.next_assignment_id, {"overall": "left"}, 2)
    at = _app("pages/dashboard.py")
    at.session_state["dash-nboot"] = 0
    at = _sign_in(at, PASSWORD)
    assert not at.exception
    labels = [m.label for m in at.metric if " vs " in m.label]
    assert labels == [escape_md(f"overall vs {baseline}")]
    assert r"\[base\]\(http\:\/\/evil\.example\) \$x\$" in labels[0]
    headline = [m.value for m in at.markdown if " vs " in m.value]
    assert headline == [f"**{escape_md(model)}** vs **{escape_md(baseline)}**"]
