"""Page logic with Streamlit's AppTest (headless, no browser: the player reports nothing here, so
tests set the "played" flag the player would set)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from human_eval_app.raters import create_invites, queue_state, start_queue, submit_answers
from human_eval_app.store import Rater, Store

APP = str(Path(__file__).resolve().parents[2] / "human_eval_app" / "app.py")
PASSWORD = "correct horse battery"


@pytest.fixture
def app_env(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("AVGEN_DB_URL", store.url)
    monkeypatch.setenv("AVGEN_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("AVGEN_ADMIN_PASSWORD_HASH", raising=False)
    monkeypatch.delenv("AVGEN_MEDIA_DIR", raising=False)
    return store


def _app(page: str | None = None, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    if page:
        at.switch_page(page)
    return at.run()


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts + [s.value for s in at.success] + [t.value for t in at.title])


def _answer_current(at: AppTest, answer: str = "left") -> AppTest:
    aid = at.radio[0].key.split("-")[1]
    at.session_state[f"played-{aid}"] = True  # what the player reports once both clips played through
    at.run()
    for radio in at.radio:
        radio.set_value(answer)
    at.run()
    return at.button(key=f"submit-{aid}").click().run()


def test_rater_joins_answers_resumes_and_finishes(app_env: Store, make_study) -> None:
    info = make_study(completion_url="https://app.prolific.com/submissions/complete?cc=ABC123").info
    at = _app(study=info.code)
    assert not at.exception and at.text_input(key="join-code").value == info.code
    at.text_input(key="join-name").set_value("Ann <script>alert(1)</script>")
    at.button(key="FormSubmitter:join-Join the study").click().run()
    token = at.query_params["token"]
    assert token and "study" not in at.query_params

    # the answers stay closed until both clips played through
    assert all(r.disabled for r in at.radio) and at.button(key=f"submit-{at.radio[0].key.split('-')[1]}").disabled
    at = _answer_current(at, "right")
    assert "Pair 2 of 2" in at.get("progress")[0].proto.text

    resumed = _app(token=token)  # a reload: the same rater, at the first unanswered pair
    assert "Pair 2 of 2" in resumed.get("progress")[0].proto.text
    resumed = _answer_current(resumed, "tie")
    assert "All done" in _texts(resumed)
    assert resumed.get("link_button")[0].proto.url.endswith("cc=ABC123")


def test_prompt_markup_is_shown_escaped(app_env: Store, make_study) -> None:
    info = make_study(pairs_per_rater=4, raters_per_pair=1).info
    invite = create_invites(app_env, info.id, 1)[0]
    seen = []
    at = _app(token=invite.token)
    for _ in range(4):
        seen += [m.value for m in at.markdown if m.value.startswith("**Description:**")]
        at = _answer_current(at)
    hostile = [s for s in seen if "bold" in s][0]
    assert r"\<b\>bold\<\/b\>" in hostile and r"\[link\]\(http\:\/\/evil\.example\)" in hostile and r"\$x\$" in hostile


@pytest.mark.parametrize("token, message", [
    ("forged-but-well-formed-token-000", "not valid"),
    ("<script>alert(1)</script>", "not valid"),
    ("' OR 1=1 --", "not valid"),
])
def test_forged_tokens_are_refused(app_env: Store, make_study, token: str, message: str) -> None:
    make_study()
    at = _app(token=token)
    assert message in _texts(at) and not at.radio and not at.exception


def test_expired_token(app_env: Store, make_study) -> None:
    info = make_study().info
    invite = create_invites(app_env, info.id, 1)[0]
    with app_env.write() as s:
        s.get(Rater, invite.rater_id).expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert "expired" in _texts(_app(token=invite.token))


def test_prolific_participant_joins_without_a_form(app_env: Store, make_study) -> None:
    info = make_study().info
    at = _app(study=info.code, PROLIFIC_PID="60a1b2c3d4", STUDY_ID="st1", SESSION_ID="se1")
    assert at.query_params["token"] and "PROLIFIC_PID" not in at.query_params
    assert at.radio and "Pair 1 of 2" in at.get("progress")[0].proto.text


def test_wrong_study_code(app_env: Store, make_study) -> None:
    make_study()
    at = _app()
    at.text_input(key="join-code").set_value("'; DROP TABLE studies; --")
    at.text_input(key="join-name").set_value("Ann")
    at.button(key="FormSubmitter:join-Join the study").click().run()
    assert "not a study code" in _texts(at) and "token" not in at.query_params


@pytest.mark.parametrize("page", ["pages/studies.py", "pages/dashboard.py"])
def test_admin_pages_need_the_password(app_env: Store, make_study, page: str) -> None:
    make_study(name="secret study")
    at = _app(page)
    assert "Sign in" in _texts(at) and "secret study" not in _texts(at) and not at.dataframe
    at.text_input(key="admin-password").set_value("wrong password")
    at.button(key="FormSubmitter:admin-sign-in-Sign in").click().run()
    assert "Wrong password" in _texts(at) and not at.dataframe and not at.selectbox


def test_admin_pages_closed_without_a_configured_password(app_env: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AVGEN_ADMIN_PASSWORD")
    at = _app("pages/studies.py")
    assert "No admin password is configured" in _texts(at) and not at.text_input


def _signed_in(page: str, **state: object) -> AppTest:
    at = _app(page)
    for key, value in state.items():
        at.session_state[key] = value
    at.text_input(key="admin-password").set_value(PASSWORD)
    return at.button(key="FormSubmitter:admin-sign-in-Sign in").click().run()


def test_studies_page_creates_from_yaml_and_invites(app_env: Store, systems: dict[str, Path]) -> None:
    at = _signed_in("pages/studies.py")
    assert "No studies yet" in _texts(at)
    at.radio(key="new-how").set_value("yaml").run()
    spec = {"name": "from the page", "systems": [{"name": n, "path": str(systems[n])} for n in ("ours", "base")],
            "questions": ["overall"], "raters_per_pair": 1, "pairs_per_rater": 4}
    at.text_area(key="new-yaml").set_value(yaml.safe_dump(spec))
    at.button(key="create-yaml").click().run()
    assert not at.exception and "Created from the page" in _texts(at)
    at.run()
    assert "from the page" in at.dataframe[0].value["name"].tolist()
    at.button(key="invite-go").click().run()
    links = at.dataframe[-1].value["link"].tolist()
    assert len(links) == 5 and all("/?token=" in link for link in links)
    assert len(at.get("download_button")) == 3  # invites CSV, judgments CSV and Parquet


def test_studies_page_reports_bad_specs(app_env: Store) -> None:
    at = _signed_in("pages/studies.py")
    at.radio(key="new-how").set_value("yaml").run()
    at.text_area(key="new-yaml").set_value("name: x\nsystems:\n  - {name: a, path: ../../../etc}\n  - {name: b, path: /nope}\n")
    at.button(key="create-yaml").click().run()
    assert not at.exception and at.error and "no clips" in at.error[0].value


def test_dashboard_shows_net_win_rates(app_env: Store, make_study) -> None:
    info = make_study().info
    for invite in create_invites(app_env, info.id, 2):
        start_queue(app_env, invite.rater_id)
        while (state := queue_state(app_env, invite.rater_id)).next_assignment_id:
            submit_answers(app_env, invite.rater_id, state.next_assignment_id, {"overall": "tie", "sync": "tie"}, 2)
    at = _signed_in("pages/dashboard.py", **{"dash-nboot": 0})  # no bootstrap: keeps the test fast
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Judgments"] == "8" and metrics["Ratings"] == "4 / 8"
    net = at.dataframe[0].value
    assert set(net["question"]) == {"overall", "sync"} and (net["net_win_rate"] == 0).all()


def test_dashboard_without_judgments(app_env: Store, make_study) -> None:
    make_study()
    at = _signed_in("pages/dashboard.py")
    assert "No judgments yet" in _texts(at) and not at.exception
