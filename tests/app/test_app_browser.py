"""A whole rater session in a real browser: the app runs on localhost (`streamlit run`), Playwright
drives Debian's headless Chromium through joining, playing both clips, answering, a reload that
resumes, the end with its completion link; then the dashboard shows the resulting net win rate.

Skips, saying why, when /usr/bin/chromium or Playwright is absent (the `browser` fixture and mark of
tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from eval.preference import net_win_rates
from human_eval_app.store import Store
from human_eval_app.studies import judgments_frame

APP = Path(__file__).resolve().parents[2] / "human_eval_app" / "app.py"
PASSWORD = "browser test password"
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(store: Store, tmp_path: Path) -> Iterator[str]:
    """The app on a free localhost port, as `avgen app` starts it."""
    port = _free_port()
    env = dict(os.environ, AVGEN_DB_URL=store.url, AVGEN_ADMIN_PASSWORD=PASSWORD)
    env.pop("AVGEN_ADMIN_PASSWORD_HASH", None)
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the app did not start:\n" + (tmp_path / "streamlit.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(45_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    page.context.close()


def _rate_current(page, answers: list[str], previous: str | None) -> str:
    """Play both clips through, check the answers open only then, answer, submit; returns the item id."""
    from playwright.sync_api import expect

    player = page.frame_locator("iframe[title*='av_pair']").last
    item = player.locator("body[data-item]" if previous is None else f"body[data-item]:not([data-item='{previous}'])")
    item.wait_for(state="attached")  # the player shows the next pair, not the one just answered
    current = item.get_attribute("data-item")
    submit = page.get_by_role("button", name="Submit and continue")
    expect(submit).to_be_disabled()
    player.get_by_role("button", name="Play both").click()
    player.locator("#left-badge.done").wait_for()
    player.locator("#right-badge.done").wait_for()
    radios = page.locator('[data-testid="stRadio"]')
    page.wait_for_function("() => { const i = [...document.querySelectorAll('[data-testid=stRadio] input')];"
                           " return i.length > 0 && i.every(x => !x.disabled); }")
    for k, answer in enumerate(answers):
        radios.nth(k).get_by_text(answer, exact=True).click()
    expect(submit).to_be_enabled()
    submit.click()
    return current


def test_rater_session_then_dashboard(server: str, page, store: Store, make_study) -> None:
    info = make_study(pairs_per_rater=2, raters_per_pair=1, gold={"count": 1, "per_rater": 1},
                      completion_url="https://app.prolific.com/submissions/complete?cc=BROWSER1").info
    # 1. Join with the study code; the name is hostile markup
    page.goto(f"{server}/?study={info.code}")
    page.get_by_label("Your name or a nickname").fill('<img src=x onerror="alert(1)">')
    page.get_by_role("button", name="Join the study").click()
    page.wait_for_url("**/?token=*")
    token_url = page.url
    # 2. First pair, then a reload resumes at the second
    page.get_by_text("Pair 1 of 3").wait_for()
    first = _rate_current(page, ["Left", "Right"], None)
    page.get_by_text("Pair 2 of 3").wait_for()
    page.reload()
    assert page.url == token_url
    page.get_by_text("Pair 2 of 3").wait_for()
    second = _rate_current(page, ["Left", "Tie / no difference"], first)
    page.get_by_text("Pair 3 of 3").wait_for()
    _rate_current(page, ["Right", "Left"], second)
    # 3. The end, with the completion link
    page.get_by_text("All done").wait_for()
    link = page.get_by_role("link", name="Finish and return")
    assert link.get_attribute("href") == "https://app.prolific.com/submissions/complete?cc=BROWSER1"
    assert page.dialogs == []  # type: ignore[attr-defined]

    # 4. The dashboard shows the net win rate of what was just answered
    frame = judgments_frame(store, info.id)
    assert len(frame) == 3 * 2 - 1  # gold pair: only its 'sync' answer is scored
    expected = net_win_rates(frame, n_boot=0).set_index("question").loc["overall", "net_win_rate"]
    page.goto(f"{server}/dashboard")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="overall vs base")
    metric.wait_for(timeout=90_000)
    assert f"{expected:+.1f}" in metric.inner_text()
    assert page.dialogs == []  # type: ignore[attr-defined]
