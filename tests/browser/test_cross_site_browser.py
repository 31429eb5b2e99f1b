"""Issue 11's student side in a real browser (chromium): what another site's page can no longer
do to a student, and what the lab's own pages still do.

The lab is served on ``http://127.0.0.1:P``; the attacker's pages on another port of the same
host (``127.0.0.1:Q``: another origin of the same *site*, so the ``SameSite=Lax`` cookie is
sent and only the Origin check stands in the way) and as ``http://localhost:Q`` (another
site: the browser keeps the cookie back).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from labruntime.testing import serve_app
from tests._helpers import wait_for
from tests.security.conftest import S, SecLab, basic, build_lab

pytestmark = pytest.mark.slow


@dataclass
class Served:
    lab: SecLab
    base: str  # the lab's base URL
    evil_port: int  # the attacker's server
    pages: dict[str, str]  # what the attacker's server answers at /<name>

    def status(self, session_id: str) -> int:
        reply = self.lab.client.get(f"{S}{session_id}/status", headers={"Authorization": basic()})
        return int(reply.get_json()["should_finish"])


@pytest.fixture
def served(redis_url: str, redis_base: str, tmp_path: Path) -> Iterator[Served]:
    lab = build_lab(redis_url, redis_base, str(tmp_path / "instance"))
    attacker = Flask("attacker")
    pages: dict[str, str] = {}
    attacker.add_url_rule("/<name>", "page", lambda name: pages[name])
    try:
        with serve_app(lab.app) as base, serve_app(attacker) as evil:
            yield Served(lab, base, int(evil.rsplit(":", 1)[1]), pages)
    finally:
        lab.weblab.shutdown(lab.app)


def test_another_sites_page_changes_nothing(served: Served, browser_page) -> None:
    lab, base, page = served.lab, served.base, browser_page
    session_id = lab.new_session("ana")
    page.goto(f"{base}/callback/{session_id}")
    assert page.inner_text("body").startswith("hello ana")
    cookie = [c for c in page.context.cookies() if c["name"] == "session"][0]
    assert cookie["sameSite"] == "Lax" and cookie["httpOnly"]
    change = f"{base}/lab/change"
    served.pages.update(
        form=f"<form id=f method=post action='{change}'><input name=x value=1></form>"
        "<script>document.getElementById('f').submit()</script>",
        fetch=f"<script>fetch('{change}', {{method: 'POST', credentials: 'include', "
        "mode: 'no-cors'}).finally(() => { document.title = 'sent'; })</script>",
        img=f"<img src='{base}/callback/{session_id}/logout' "
        "onerror=\"document.title = 'sent'\" onload=\"document.title = 'sent'\">",
    )
    for site in (f"http://127.0.0.1:{served.evil_port}", f"http://localhost:{served.evil_port}"):
        page.goto(f"{site}/form")  # a forged form: the browser lands on the lab's answer
        page.wait_for_url(change)
        text = page.inner_text("body")
        assert "Refused" in text or "Access forbidden" in text, (site, text)
        for name in ("fetch", "img"):
            page.goto(f"{site}/{name}")
            page.wait_for_function("document.title === 'sent'")
    assert lab.changes == []  # the state-changing view was never reached
    assert served.status(session_id) > 0  # the <img> logout did not end the session
    page.goto(f"{base}/lab/?bare=1")
    assert page.inner_text("body") == "hello ana"
    # the lab's own page still changes state (a same-origin fetch POST)
    status = page.evaluate("fetch('/lab/change', {method: 'POST'}).then(r => r.status)")
    assert status == 200 and lab.changes == ["ana"]


def test_a_second_link_asks_before_switching(served: Served, browser_page) -> None:
    lab, base, page = served.lab, served.base, browser_page
    mine, theirs = lab.new_session("ana"), lab.new_session("mallory")
    page.goto(f"{base}/callback/{mine}")
    assert page.inner_text("body").startswith("hello ana")
    page.goto(f"{base}/callback/{theirs}")
    assert "already in this laboratory" in page.inner_text("h1")
    with page.expect_navigation():
        page.click("#keep")
    assert page.url == f"{base}/lab/"
    assert page.inner_text("body").startswith("hello ana")
    page.goto(f"{base}/callback/{theirs}")
    with page.expect_navigation():
        page.click("#switch")  # the page's own POST form
    assert page.url == f"{base}/lab/"
    assert page.inner_text("body").startswith("hello mallory")


def test_the_poll_script_logs_out_on_close_with_a_post(served: Served, browser_page) -> None:
    page = browser_page
    session_id = served.lab.new_session("ana")
    page.goto(f"{served.base}/callback/{session_id}")
    assert page.inner_text("body").startswith("hello ana")
    page.goto(f"{served.base}/lab/?close=1")
    assert served.status(session_id) > 0
    page.goto("about:blank")  # pagehide: navigator.sendBeacon(logout), a POST
    wait_for(lambda: served.status(session_id) == -1, 10, "the beacon's logout")
