"""The human evaluation app (Streamlit entry point): `avgen app --db URL` runs it.

Pages: Rate (the home page; raters arrive with a personal link or the study code), Studies
(create, invite, export; admins) and Dashboard (net win rates and rater statistics; admins).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    import human_eval_app  # noqa: F401
except ImportError:  # run from a source checkout that is not installed: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from human_eval_app.ui import is_admin

st.set_page_config(page_title="Clip comparison", page_icon=":material/compare:", layout="wide")

_HERE = Path(__file__).parent
pages = [
    st.Page(_HERE / "pages" / "rate.py", title="Rate", icon=":material/thumbs_up_down:", default=True),
    st.Page(_HERE / "pages" / "studies.py", title="Studies", icon=":material/science:", url_path="studies"),
    st.Page(_HERE / "pages" / "dashboard.py", title="Dashboard", icon=":material/monitoring:", url_path="dashboard"),
]
# Raters (a token in the address) see no menu: nothing should distract from or hint at the study.
is_rater = bool(st.query_params.get("token") or st.query_params.get("study")) and not is_admin()
st.navigation(pages, position="hidden" if is_rater else "sidebar").run()
