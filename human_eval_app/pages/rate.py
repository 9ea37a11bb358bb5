"""Rate: a rater's queue of pairs, two clips side by side, the study's questions, progress, resume.

A rater arrives with a personal link (``?token=...``), or joins with the study code and a name
(``?study=CODE`` fills the code in), or from Prolific (``?study=CODE&PROLIFIC_PID=..&STUDY_ID=..&
SESSION_ID=..`` joins at once; a participant id that joined before resumes only with the same
SESSION_ID or this session's token, see `raters.join_with_code`). After joining, the token is put
into the address, so a reload or coming back later resumes at the first unanswered pair.
"""

from __future__ import annotations

import time

import streamlit as st

from human_eval_app.auth import AccessError
from human_eval_app.errors import DuplicateSubmission, StudyError
from human_eval_app.player import av_pair
from human_eval_app.raters import (
    ProlificParams,
    RaterContext,
    authenticate,
    join_with_code,
    load_item,
    queue_state,
    start_queue,
    submit_answers,
)
from human_eval_app.serving import PairUnavailable, pair_media
from human_eval_app.spec import LIKERT_LABELS, Question
from human_eval_app.ui import escape_md, get_store

store = get_store()
params = st.query_params
_ANSWER_LABELS = {"left": "Left", "tie": "Tie / no difference", "right": "Right"}


def _enter(token: str) -> None:
    """Switch the address to the rater's token (so reloads resume) and render again."""
    for name in ("study", "PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "name"):
        params.pop(name, None)
    params["token"] = token
    st.session_state["rater_token"] = token  # proof of who this browser is, should Prolific's link be opened again
    st.rerun()


def _join_page() -> None:
    code = params.get("study", "")
    pid = params.get("PROLIFIC_PID")
    if pid and code:
        try:
            prolific = ProlificParams(pid=pid, study_id=params.get("STUDY_ID"), session_id=params.get("SESSION_ID"))
            _, token = join_with_code(store, code, None, prolific=prolific,
                                      token=st.session_state.get("rater_token"))
        except (AccessError, StudyError) as err:
            st.error(str(err))
            st.stop()
        _enter(token)
    st.title("Compare clips")
    st.write("You were given a personal link or a study code. With a code, join here:")
    with st.form("join"):
        code_in = st.text_input("Study code", value=code, max_chars=16, key="join-code")
        name_in = st.text_input("Your name or a nickname", max_chars=100, key="join-name")
        joined = st.form_submit_button("Join the study", type="primary")
    if joined:
        try:
            _, token = join_with_code(store, code_in, name_in)
        except (AccessError, StudyError) as err:
            st.error(str(err))
            st.stop()
        _enter(token)
    st.stop()


def _finished(ctx: RaterContext) -> None:
    st.success("All done. Thank you for your ratings!")
    if ctx.completion_url:
        st.write("Go back to confirm that you completed the study:")
        st.link_button("Finish and return", ctx.completion_url, type="primary")
    st.stop()


def _label(option: str) -> str:
    """What a rater reads for a stored answer ("left", or "1".."5" of a 5-point question)."""
    return _ANSWER_LABELS[option] if option in _ANSWER_LABELS else f"{option}: {LIKERT_LABELS[int(option)]}"


def _question(aid: int, question: Question, disabled: bool) -> str | None:
    return st.radio(escape_md(question.text), list(question.options), index=None, format_func=_label,
                    horizontal=True, key=f"q-{aid}-{question.key}", disabled=disabled)


# 1. Who is rating
token = params.get("token")
if not token:
    _join_page()
try:
    ctx = authenticate(store, token)
except AccessError as err:
    st.error(str(err))
    st.stop()
st.session_state["rater_token"] = token

# 2. Where they are in their queue
start_queue(store, ctx.rater_id)
state = queue_state(store, ctx.rater_id)
st.title(escape_md(ctx.study_name))
if state.total == 0:
    st.info("This study has all the ratings it needs right now, so there is nothing for you to rate. Thank you!")
    st.stop()
st.progress(state.done / state.total, text=f"Pair {min(state.done + 1, state.total)} of {state.total}")
if state.finished:
    _finished(ctx)
if ctx.instructions:
    with st.expander("Instructions", expanded=state.done == 0):
        st.markdown(escape_md(ctx.instructions))

# 3. The pair (one whose media are gone is logged for the lead and replaced; the rater reads a neutral note)
if notice := st.session_state.pop("pair-notice", None):
    st.info(notice)
item = load_item(store, ctx.rater_id, state.next_assignment_id)  # type: ignore[arg-type]
aid = item.assignment_id
try:
    left, right = pair_media(store, ctx.rater_id, item)
except PairUnavailable as err:
    if not err.released:
        st.warning(str(err))
        st.stop()
    st.session_state["pair-notice"] = str(err)
    st.rerun()
st.session_state.setdefault(f"shown-{aid}", time.monotonic())
st.markdown(f"**Description:** {escape_md(item.prompt)}")
play = av_pair(left, right, item=aid, key=f"player-{aid}")
played = play.both or st.session_state.get(f"played-{aid}", False)
if played:
    st.session_state[f"played-{aid}"] = True  # kept when the player reports nothing on a rerun
else:
    st.caption("Play both clips to the end once (use **Play both**); then the questions open.")

# 4. The questions
answers = {q.key: _question(aid, q, disabled=not played) for q in ctx.questions}
complete = all(v is not None for v in answers.values())
if st.button("Submit and continue", type="primary", disabled=not (played and complete), key=f"submit-{aid}"):
    seconds = time.monotonic() - st.session_state[f"shown-{aid}"]
    try:
        submit_answers(store, ctx.rater_id, aid, answers, seconds)  # type: ignore[arg-type]
    except DuplicateSubmission as err:
        st.toast(str(err))
    except (AccessError, StudyError) as err:
        st.error(str(err))
        st.stop()
    st.session_state.pop(f"shown-{aid}", None)
    st.rerun()
