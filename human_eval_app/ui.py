"""What every page needs: the open store, the admin gate, escaping of user text, the app's address.

Pages only render; the work is done by `studies`, `raters`, `media` and `eval.preference`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

import streamlit as st

from .auth import SIGN_IN_THROTTLES, AccessError, admin_configured, check_admin
from .store import Store, StoreError, open_store
from .studies import admin_hashes

__all__ = ["escape_md", "get_store", "secrets_map", "require_admin", "base_url", "is_admin"]

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all
# means user text can produce no markup at all: no links, images, emphasis, HTML, LaTeX ($) or
# Streamlit directives (:red[...], :material/icon:).
_MD_SPECIAL = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def escape_md(text: object) -> str:
    """User text made safe to pass to `st.markdown` (shown literally, line breaks kept)."""
    lines = str(text).splitlines() or [""]
    return "  \n".join(_MD_SPECIAL.sub(r"\\\1", line) for line in lines)


@st.cache_resource(show_spinner=False)
def _open_store(url: str | None, media_dir: str | None) -> Store:
    return open_store(url, media_dir=media_dir)


def get_store() -> Store:
    """The app's database (``AVGEN_DB_URL`` / ``AVGEN_MEDIA_DIR``, or secrets ``db_url``/``media_dir``),
    opened once per server process. Stops the page with the reason if it cannot be opened."""
    secrets = secrets_map()
    url = os.environ.get("AVGEN_DB_URL") or secrets.get("db_url")
    media_dir = os.environ.get("AVGEN_MEDIA_DIR") or secrets.get("media_dir")
    try:
        return _open_store(url, media_dir)
    except StoreError as err:
        st.error(f"The study database cannot be opened: {err}")
        st.stop()
        raise  # unreachable: st.stop() raises


def secrets_map() -> Mapping[str, Any]:
    """Streamlit secrets, or an empty mapping when there is no secrets file."""
    try:
        return dict(st.secrets)
    except Exception:  # no secrets.toml: Streamlit raises its own FileNotFoundError subclass
        return {}


def is_admin() -> bool:
    """Whether this browser session has signed in as an admin."""
    return bool(st.session_state.get("admin_signed_in"))


def require_admin(store: Store) -> None:
    """Show the admin sign-in form and stop the page unless this session is signed in."""
    if is_admin():
        with st.sidebar:
            if st.button("Sign out", key="admin-sign-out"):
                st.session_state.pop("admin_signed_in", None)
                st.rerun()
        return
    extra = admin_hashes(store)
    try:
        configured = admin_configured(secrets_map(), extra_hashes=extra)
    except ValueError as err:  # e.g. AVGEN_ADMIN_PASSWORD is too short
        st.error(f"The admin password is not usable, so this page is closed: {err}. Set a longer one and restart "
                 "the app.")
        st.stop()
    if not configured:
        st.error(
            "No admin password is configured, so this page is closed. Set AVGEN_ADMIN_PASSWORD_HASH "
            "(make one with `avgen study hash-password`) or AVGEN_ADMIN_PASSWORD and restart the app, "
            "or add admin_password_hash to .streamlit/secrets.toml."
        )
        st.stop()
    st.info("This page is for the study's leads. Sign in with the admin password.")
    with st.form("admin-sign-in"):
        password = st.text_input("Admin password", type="password", key="admin-password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        # The wait is kept by the server, per client address and over all clients, so a new browser
        # session does not reset it (see auth.SignInThrottle).
        keys = {"client": f"address:{_client_address() or 'local'}", "all": "all"}
        wait = max(SIGN_IN_THROTTLES[name].wait_seconds(key) for name, key in keys.items())
        if wait > 0:
            st.error(f"Too many wrong passwords; try again in {math.ceil(wait)} s.")
            st.stop()
        try:
            ok = check_admin(password, secrets_map=secrets_map(), extra_hashes=extra)
        except (AccessError, ValueError) as err:
            st.error(str(err))
            st.stop()
        if ok:
            for name, key in keys.items():
                SIGN_IN_THROTTLES[name].succeeded(key)
            st.session_state["admin_signed_in"] = True
            st.rerun()
        wait = max(SIGN_IN_THROTTLES[name].failed(key) for name, key in keys.items())
        st.error(f"Wrong password. The next try is possible in {math.ceil(wait)} s." if wait else "Wrong password.")
    st.stop()


def _client_address() -> str | None:
    """The browser's network address as the server sees it (None for localhost and in AppTest)."""
    try:
        address = st.context.ip_address
    except Exception:  # no browser connection
        return None
    return address if isinstance(address, str) else None  # AppTest answers with a stand-in object


def base_url() -> str:
    """The address raters use: ``AVGEN_PUBLIC_URL`` if set, else the host this page was opened at."""
    public = os.environ.get("AVGEN_PUBLIC_URL")
    if public:
        return public.rstrip("/")
    try:
        host = st.context.headers.get("Host")
    except Exception:  # no browser (AppTest)
        host = None
    return f"http://{host}" if host else "http://localhost:8501"
