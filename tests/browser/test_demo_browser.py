"""The demo lab as a student meets it, in a real headless chromium, from the RLMS start to dispose.

The lab is served for real (HTTP on a free port, its devices held by the web process's runner
threads), a FakeRLMS plays WebLab-Deusto/LabsLand starting and disposing the session, and the
browser clicks what a student clicks. Screenshots at each step go to ``artifacts/``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from labruntime.demo import DEMO_DEVICES
from labruntime.demo.lab_tasks import LED_OUT
from labruntime.state import get_state
from labruntime.testing import FakeRLMS, serve_app
from tests._helpers import running_demo

pytestmark = pytest.mark.slow

BACK = "http://rlms.invalid/back"
GOOD_LINE = ":10000000259A1D9A80E09AE6A8E181509040A04090\n"
BAD_HEX = GOOD_LINE + ":04001000E1F7F7CF4F\n:00000001FF\n"  # line 2: checksum off by one


@pytest.fixture
def demo_app(tmp_path: Path, redis_url: str, redis_base: str) -> Any:
    with running_demo(
        tmp_path,
        redis_url,
        redis_base,
        WEBLAB_DEVICES=dict(DEMO_DEVICES),  # the fallback board; the twin: test_demo_twin.py
    ) as app:
        yield app


def _fraction(page: Any) -> float:
    return float(page.get_attribute("#progress-fill", "data-fraction") or 0)


def _seen(page: Any) -> list[float]:
    text = page.get_attribute("#progress-fill", "data-seen") or ""
    return [float(x) for x in text.split(",") if x]


def _shot(page: Any, artifacts: Path, name: str) -> None:
    page.wait_for_timeout(350)  # let the LED's and the bar's CSS transitions end
    page.screenshot(path=str(artifacts / f"demo-{name}.png"), full_page=True)


def _program(page: Any, source: str) -> None:
    page.check(f"input[name=source][value={source}]")
    page.click("#program-button")


def test_student_session_in_a_browser(demo_app, browser_page, artifacts):
    page = browser_page
    with serve_app(demo_app) as base_url:
        # WebLab-Deusto starts the session (it sends the username as the full name)
        rlms = FakeRLMS(base_url, "demo", demo_app.config["WEBLAB_PASSWORD"])
        started = rlms.start(username="ada", assigned_time=300, back=BACK)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(started.url)

        # the student's page: name, a clock counting down from the slot's time left
        assert page.inner_text("#student") == "Hello, ada"
        clock = page.inner_text("#time-left")
        minutes, seconds = map(int, re.fullmatch(r"(\d+):(\d\d)", clock).groups())
        assert 280 <= minutes * 60 + seconds <= 300
        page.wait_for_function(f"document.getElementById('time-left').textContent !== '{clock}'")
        _shot(page, artifacts, "1-start")

        # the bundled blink example: programmed and verified
        _program(page, "blink")
        page.wait_for_selector("#program-message:has-text('verified')")
        assert "blink.hex: 20 bytes written and verified" in page.inner_text("#program-message")
        assert _fraction(page) == 1.0 and "done" in page.get_attribute("#progress-fill", "class")

        # a longer image: the bar moves through intermediate values to done
        _program(page, "pattern")
        page.wait_for_function(
            "parseFloat(document.getElementById('progress-fill').dataset.fraction) > 0.2"
        )
        assert 0.2 < _fraction(page) < 1.0
        assert re.search(r"(Writing|Verifying) page \d+ of 64", page.inner_text("#progress-text"))
        page.click("#led-on")
        page.wait_for_selector("#led[data-on=true]")
        _shot(page, artifacts, "2-programming")
        page.wait_for_selector("#program-message:has-text('8192 bytes written and verified')")
        seen = _seen(page)
        assert seen[-1] == 1.0 and len([f for f in seen if 0 < f < 1]) >= 3, seen
        assert seen == sorted(seen), seen
        _shot(page, artifacts, "3-programmed")

        # cancel mid-programming: the task stops at the next page
        _program(page, "pattern")
        page.wait_for_function(
            "parseFloat(document.getElementById('progress-fill').dataset.fraction) > 0.1"
        )
        page.click("#cancel-button")
        page.wait_for_selector("#program-message.warn:has-text('Cancelled during')")
        assert page.inner_text("#progress-text") == "Cancelled"
        assert _fraction(page) < 1.0
        _shot(page, artifacts, "4-cancelled")

        # the LED: switched by small tasks, its state read back from the wired input
        page.click("#led-off")
        page.wait_for_selector("#led[data-on=false]")
        assert page.inner_text("#led-state") == "off"
        page.click("#led-on")
        page.wait_for_selector("#led[data-on=true]")
        assert page.inner_text("#led-state") == "on"
        assert page.inner_text("#switches") == "3"

        # a corrupt upload: a clear message naming the file and the line, nothing programmed
        page.set_input_files(
            "#firmware-file",
            files=[{"name": "mine.hex", "mimeType": "text/plain", "buffer": BAD_HEX.encode()}],
        )
        page.click("#program-button")
        page.wait_for_selector("#program-message.error:has-text('mine.hex line 2')")
        assert "checksum" in page.inner_text("#program-message")
        _shot(page, artifacts, "5-bad-hex")

        # everything the page loaded came from the lab itself (no CDN: labs run offline)
        foreign = [u for u in requested if not u.startswith((base_url + "/", "data:"))]
        assert not foreign and len(requested) > 10, foreign

        # logout: the expired page with the RLMS's back link (the session ends here: the
        # cleaner may dispose it before the RLMS does)
        ended = time.time()
        page.click("#leave-button")
        page.wait_for_selector("text=Your session is over")
        assert page.get_attribute("#back-link", "href") == BACK
        _shot(page, artifacts, "6-logged-out")
        assert rlms.status(started.session_id) == -1

        # the RLMS disposes (or the cleaner did, after the logout); the LED the student left
        # on is driven safe (off) for the next one
        assert rlms.dispose(started.session_id)["message"] == "Deleted"
        _assert_devices_safe(demo_app, ended)
        second = rlms.start(
            username="bob", full_name="Bob Example", assigned_time=60, back=BACK, style="labsland"
        )
        page.goto(second.url)
        assert page.inner_text("#student") == "Hello, Bob Example"
        assert page.inner_text("#led-state") == "off"
        assert rlms.dispose(second.session_id)["message"] == "Deleted"


def _assert_devices_safe(app: Any, since: float) -> None:
    """The web process holds the devices: each was driven safe (and checked) after ``since``."""
    devices = get_state(app).devices
    for name in ("board", "led"):
        report = devices.store.last_safe(name)
        assert report is not None and report["ok"], (name, report)
        assert report["at"] >= since, (name, report)
    assert devices.store.last_safe("board")["state"]["progmode"] is False
    assert devices.holder is not None
    assert devices.holder.devices["led"].output(LED_OUT).value is False
