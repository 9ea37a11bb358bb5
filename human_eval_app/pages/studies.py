"""Studies (admins): the list of studies, creating one, inviting raters, closing, exporting."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st
import yaml

from avio import MediaError
from human_eval_app.errors import StudyError
from human_eval_app.raters import create_invites
from human_eval_app.serving import media_problems
from human_eval_app.spec import DEFAULT_QUESTIONS, GOLD_KINDS, StudySpec
from human_eval_app.spreadsheet import neutralise_formulas
from human_eval_app.store import StoreError
from human_eval_app.studies import (
    create_study,
    judgments_frame,
    list_studies,
    set_status,
    study_progress,
)
from human_eval_app.ui import base_url, escape_md, get_store, require_admin

store = get_store()
st.title("Studies")
require_admin(store)


def _spec_from_form() -> StudySpec | None:
    st.caption("Paths are read on the server (relative paths from the folder the app was started in).")
    name = st.text_input("Study name", key="new-name")
    systems = st.data_editor(
        pd.DataFrame({"name": ["", ""], "path": ["", ""]}), num_rows="dynamic", key="new-systems",
        column_config={
            "name": st.column_config.TextColumn("System name", help="Shown to leads only"),
            "path": st.column_config.TextColumn("Sample folder or manifest", width="large"),
        },
    )
    names = [str(n).strip() for n in systems["name"] if isinstance(n, str) and n.strip()]
    model = st.selectbox("Model under test", names or ["(name the systems first)"], key="new-model")
    design = st.radio("Compare", ["vs_model", "all_pairs"], horizontal=True, key="new-design",
                      format_func={"vs_model": "the model against each other system",
                                   "all_pairs": "every two systems"}.get)
    keys = st.multiselect("Questions", list(DEFAULT_QUESTIONS), default=list(DEFAULT_QUESTIONS), key="new-questions",
                          format_func=lambda k: f"{k}: {DEFAULT_QUESTIONS[k]}")
    scale = st.radio("Answers", ["pairwise", "likert5"], horizontal=True, key="new-scale",
                     format_func={"pairwise": "left / tie / right", "likert5": "5-point scale"}.get)
    c1, c2, c3, c4 = st.columns(4)
    raters_per_pair = c1.number_input("Raters per pair", 1, 100, 3, key="new-rpp")
    pairs_per_rater = c2.number_input("Pairs per rater", 1, 1000, 20, key="new-ppr")
    gold_count = c3.number_input("Gold pairs", 0, 1000, 0, key="new-gold")
    gold_per_rater = c4.number_input("Gold pairs per rater", 0, 1000, 0, key="new-gold-pr")
    kinds = st.multiselect("Gold kinds", list(GOLD_KINDS), default=["audio_shift"], key="new-gold-kinds",
                           format_func=lambda k: f"{k} (known answer for '{GOLD_KINDS[k][0]}')")
    instructions = st.text_area("Instructions for raters", key="new-instructions")
    completion_url = st.text_input("Completion link (e.g. Prolific's), optional", key="new-completion")
    open_join = st.checkbox("Raters may join with the study code", value=True, key="new-open")
    if not st.button("Create study", type="primary", key="create-form"):
        return None
    return StudySpec.from_dict({
        "name": name,
        "systems": [{"name": str(r["name"] or ""), "path": str(r["path"] or "")} for r in systems.to_dict("records")
                    if str(r.get("name") or "").strip() or str(r.get("path") or "").strip()],
        "model": model if model in names else None, "design": design,
        "questions": [{"key": k, "scale": scale} for k in keys], "raters_per_pair": int(raters_per_pair),
        "pairs_per_rater": int(pairs_per_rater),
        "gold": {"count": int(gold_count), "per_rater": int(gold_per_rater), "kinds": kinds or ["audio_shift"]},
        "instructions": instructions, "completion_url": completion_url or None, "open_join": open_join,
    })


def _spec_from_yaml() -> StudySpec | None:
    st.caption("A spec as in configs/study/demo.yaml; relative paths are taken from the folder the app was "
               "started in. `avgen study create spec.yaml` does the same from a terminal.")
    text = st.text_area("Study spec (YAML)", height=260, key="new-yaml")
    if not st.button("Create study", type="primary", key="create-yaml"):
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StudyError(f"the spec is not valid YAML: {err}") from None
    return StudySpec.from_dict(data, base_dir=".")


def _create_tab() -> None:
    how = st.radio("Describe the study", ["form", "yaml"], horizontal=True, key="new-how",
                   format_func={"form": "with this form", "yaml": "as a YAML spec"}.get)
    try:
        spec = _spec_from_form() if how == "form" else _spec_from_yaml()
        if spec is None:
            return
        bar = st.progress(0.0, text="Reading the sample folders")

        def progress(done: int, total: int, message: str) -> None:
            bar.progress(done / total, text=escape_md(message))

        created = create_study(store, spec, progress=progress)
    except (StudyError, MediaError, StoreError) as err:
        st.error(str(err))
        return
    info = created.info
    bar.empty()
    st.success(f"Created {escape_md(info.name)}: {info.n_pairs} pairs over {info.n_prompts} prompts, {info.n_gold} gold "
               f"pairs, code **{info.code}**; about {info.raters_needed} raters are needed.")
    if created.skipped:
        st.warning(f"{len(created.skipped)} clips could not be used and their pairs were left out:\n\n"
                   + "\n".join(f"- {escape_md(str(x))}" for x in created.skipped))
    skipped = {k: v for k, v in created.unmatched.items() if v}
    if skipped:
        st.warning("Clips without a match in every system were left out: "
                   + ", ".join(f"{escape_md(k)}: {v}" for k, v in skipped.items()))


def _manage_tab(studies: list) -> None:
    if not studies:
        st.info("No studies yet.")
        return
    by_name = {s.name: s for s in studies}
    name = st.selectbox("Study", list(by_name), key="manage-study")
    info = by_name[name]
    problems = media_problems(store, info.id)
    if problems:  # raters were moved past these pairs; the server log says when and to whom
        st.warning(f"{len(problems)} registered clips of this study cannot be served (raters skip their pairs). "
                   "Restore the media folder, or recreate the study.")
        st.dataframe(pd.DataFrame([p.__dict__ for p in problems]), hide_index=True)
    base = base_url()
    st.markdown(f"Study code: **{info.code}**. Raters can join at")
    st.code(f"{base}/?study={info.code}", language=None)
    st.markdown("For Prolific, use this study link (Prolific fills in the parameters):")
    st.code(f"{base}/?study={info.code}&PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}"
            f"&SESSION_ID={{{{%SESSION_ID%}}}}", language=None)
    c1, c2 = st.columns([1, 3])
    n = c1.number_input("Personal invite links", 1, 1000, 5, key="invite-n")
    if c2.button("Create invite links", key="invite-go"):
        try:
            invites = create_invites(store, info.id, int(n))
        except StudyError as err:
            st.error(str(err))
        else:
            st.session_state["invites"] = (info.id, [(i.name, i.link(base), i.expires_at) for i in invites])
    made = st.session_state.get("invites")
    if made and made[0] == info.id:
        frame = pd.DataFrame(made[1], columns=["name", "link", "expires_at"])
        st.caption("Each link is shown only now; send one to each rater.")
        st.dataframe(frame, hide_index=True)
        st.download_button("Download the links (CSV)", neutralise_formulas(frame).to_csv(index=False), f"invites-{info.code}.csv",
                           mime="text/csv", key="invite-csv")
    status = st.toggle("Open for raters", value=info.status == "open", key=f"status-{info.id}")
    if status != (info.status == "open"):
        set_status(store, info.id, "open" if status else "closed")
        st.rerun()
    st.subheader("Export")
    frame = judgments_frame(store, info.id)
    st.write(f"{len(frame)} judgments.")
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    c1, c2 = st.columns(2)
    c1.download_button("Judgments as CSV", neutralise_formulas(frame).to_csv(index=False), f"judgments-{info.code}.csv", mime="text/csv",
                       key="export-csv")
    c2.download_button("Judgments as Parquet", parquet.getvalue(), f"judgments-{info.code}.parquet",
                       mime="application/octet-stream", key="export-parquet")


studies = list_studies(store)
tab_list, tab_create, tab_manage = st.tabs(["All studies", "Create", "Invite, close, export"])
with tab_list:
    if studies:
        rows = []
        for s in studies:
            p = study_progress(store, s.id)
            rows.append({"name": s.name, "code": s.code, "status": s.status, "systems": ", ".join(s.systems),
                         "model": s.model, "pairs": s.n_pairs, "gold": s.n_gold, "raters per pair": s.raters_per_pair,
                         "raters joined": len(p.raters), "progress": p.fraction})
        st.dataframe(pd.DataFrame(rows), hide_index=True,
                     column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1)})
    else:
        st.info("No studies yet: create one in the next tab, or with `avgen study create spec.yaml`.")
with tab_create:
    _create_tab()
with tab_manage:
    _manage_tab(studies)
