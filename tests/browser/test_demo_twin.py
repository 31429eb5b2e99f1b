"""The demo lab on the AVR twin (``sim:avr``): the LED follows the student's program and the page
shows what the program prints (the serial monitor), from the RLMS start to dispose, in a real
headless chromium; and the fallback to ``sim:arduino`` where the twin cannot run.

The board is held by the demo's own runner threads, as in ``labruntime demo``. Tests that need
the twin skip, naming what to install, where simavr or avr-gcc is missing.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labruntime.demo import app as demo_app_module
from labruntime.drivers.sim.avr_build import cache_root
from labruntime.state import get_state
from labruntime.testing import FakeRLMS, serve_app
from tests._helpers import running_demo, wait_for

BACK = "http://rlms.invalid/back"


@pytest.fixture(autouse=True)
def cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo sets LABRUNTIME_CACHE_DIR only when unset: set it here (to the cache in use, so
    nothing is rebuilt) so that it does not leak into the tests that run after these."""
    monkeypatch.setenv("LABRUNTIME_CACHE_DIR", str(cache_root().parent))


@pytest.fixture
def twin_demo(twin_here: None, tmp_path: Path, redis_url: str, redis_base: str) -> Iterator[Any]:
    with running_demo(tmp_path, redis_url, redis_base, WEBLAB_AUTOCLEAN_THREAD=False) as app:
        assert app.config["WEBLAB_DEVICES"] == {"board": "sim:avr?mcu=atmega328p"}
        yield app


def _student(app: Any, name: str = "ada") -> tuple[FakeRLMS, Any, str]:
    rlms = FakeRLMS.for_app(app)
    started = rlms.start(username=name, style="labsland", assigned_time=300)
    assert rlms.client.get(started.url).status_code == 302
    return rlms, rlms.client, started.session_id


def _programmed(client: Any, example: str) -> dict[str, Any]:
    assert client.post("/program", data={"example": example}).status_code == 200

    def ended() -> dict[str, Any] | None:
        program = client.get("/state").get_json()["program"]
        return program if program["status"] in ("done", "failed") else None

    return wait_for(ended, 30, f"{example} to be programmed")


def test_the_twins_led_is_the_programs_pin_13(twin_demo):
    rlms, client, session_id = _student(twin_demo)
    page = client.get("/").get_data(as_text=True)
    assert 'data-twin="true"' in page and 'id="led-on"' not in page
    assert "data-weblab-monitor=" in page and "does not run AVR code" not in page
    assert page.index('value="blink_serial"') < page.index('value="blink"')
    refused = client.post("/led", json={"on": True})
    assert refused.status_code == 409 and "driven by your program" in refused.get_json()["error"]

    program = _programmed(client, "blink_serial")
    assert program["status"] == "done" and program["result"]["verified"], program

    def blinking() -> list[list[Any]] | None:
        # Optiboot flashes the LED every 62 ms at start-up; then the program's 500 ms blink
        edges = client.get("/state?after=0").get_json()["led"]["edges"]
        gaps = [b[0] - a[0] for a, b in zip(edges, edges[1:], strict=False)]
        return edges if len(gaps) >= 3 and all(abs(g - 0.5) < 0.01 for g in gaps[-3:]) else None

    edges = wait_for(blinking, 10, "pin 13 to blink every 500 ms")
    assert [level for _, level in edges[-4:]] in ([True, False] * 2, [False, True] * 2), edges
    newer = client.get(f"/state?after={edges[-1][0]}").get_json()["led"]
    assert all(t > edges[-1][0] for t, _ in newer["edges"]), newer
    assert client.get("/state?after=nan").get_json()["led"]["edges"]  # bad ?after: from 0
    assert rlms.dispose(session_id)["message"] == "Deleted"


def test_without_the_twin_the_demo_says_why_and_falls_back(
    tmp_path, redis_url, redis_base, monkeypatch, caplog
):
    why = "simavr is missing: apt-get install simavr libsimavr-dev gcc"
    monkeypatch.setattr(demo_app_module, "twin_available", lambda: (False, why))
    monkeypatch.delenv("LABRUNTIME_CACHE_DIR")  # restored after the test
    (tmp_path / "a-file").write_text("")  # ~/.cache cannot be written (ProtectHome, say)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file" / "cache"))
    caplog.set_level(logging.WARNING, logger="labruntime.demo.app")
    with running_demo(tmp_path, redis_url, redis_base, WEBLAB_AUTOCLEAN_THREAD=False) as app:
        assert app.config["WEBLAB_DEVICES"]["board"].startswith("sim:arduino")
        # the twin's builds would go to the instance folder (~/.cache is not writable)
        assert os.environ["LABRUNTIME_CACHE_DIR"] == str((tmp_path / "demo" / "cache").resolve())
        assert any(why in r.getMessage() for r in caplog.records), caplog.text
        _, client, _ = _student(app)
        page = client.get("/").get_data(as_text=True)
        assert 'id="board-note"' in page and "apt-get install simavr" in page
        assert 'id="led-on"' in page and "data-weblab-monitor" not in page


@pytest.mark.slow
def test_student_sees_the_led_follow_the_program_and_the_serial_monitor(
    twin_demo, browser_page, artifacts
):
    page = browser_page
    with serve_app(twin_demo) as base_url:
        rlms = FakeRLMS(base_url, "demo", twin_demo.config["WEBLAB_PASSWORD"])
        started = rlms.start(username="ada", assigned_time=300, back=BACK)
        page.goto(started.url)
        assert page.inner_text("#student") == "Hello, ada"
        assert page.is_visible("#monitor-card") and not page.query_selector("#led-on")
        page.wait_for_selector("pre.monitor[data-state=open]")

        # the example that blinks and prints: programmed through stk500 into the twin's Optiboot
        page.check("input[name=source][value=blink_serial]")
        page.click("#program-button")
        page.wait_for_selector("#program-message:has-text('verified')")
        assert "blink_serial.hex: 500 bytes written and verified" in page.inner_text(
            "#program-message"
        )

        # the LED on the page follows pin 13 as the program drives it: on, off, on again
        page.wait_for_selector("#led[data-on=true]", timeout=10_000)
        page.wait_for_selector("#led[data-on=false]", timeout=5_000)
        page.wait_for_selector("#led[data-on=true]", timeout=5_000)
        page.wait_for_function(
            "parseInt(document.getElementById('led').dataset.toggles, 10) >= 4", timeout=10_000
        )
        # the serial monitor shows what the program prints, live
        page.wait_for_function(
            "document.querySelector('pre.weblab-monitor').textContent.includes('LED on, blink 3')",
            timeout=10_000,
        )
        text = page.inner_text("pre.weblab-monitor")
        assert "blink_serial: hello" in text and "LED off" in text, text
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "demo-twin-1-running.png"), full_page=True)

        # the RLMS disposes while the page is open: the monitor stream ends (the page logs it)
        disposing = time.time()
        with page.expect_console_message(
            lambda message: message.text.startswith("serial monitor ended"), timeout=10_000
        ) as ended:
            assert rlms.dispose(started.session_id)["message"] == "Deleted"
        assert ended.value.text == "serial monitor ended: the session ended"
        page.wait_for_selector("text=Your session is over")
        page.screenshot(path=str(artifacts / "demo-twin-2-over.png"), full_page=True)
        report = get_state(twin_demo).devices.store.last_safe("board")
        assert report["ok"] and report["at"] >= disposing, report

        # the next student: nothing ada's program printed for her reaches bob. Her program
        # runs on until bob's session clears the board (an idle program, at its start); only
        # a line it prints in the few ms between bob's clearing task taking the board and the
        # reset could show, and it would be numbered after every line ada saw
        store = get_state(twin_demo).devices.monitor_store
        adas = "".join(e.text for e in store.read("board", started.session_id, "0", 0.1)[1])
        seen_by_ada = max(int(n) for n in re.findall(r"LED on, blink (\d+)", adas))
        second = rlms.start(username="bob", assigned_time=60, back=BACK, style="labsland")
        page.goto(second.url)
        page.wait_for_selector("pre.monitor[data-state=open]")
        page.wait_for_timeout(1500)  # the board cleared meanwhile; bob's monitor stays quiet
        bobs = page.inner_text("pre.weblab-monitor")
        assert "blink_serial: hello" not in bobs, bobs
        assert all(int(n) > seen_by_ada for n in re.findall(r"blink (\d+)", bobs)), bobs
        assert len(bobs.splitlines()) <= 1, bobs
        assert rlms.dispose(second.session_id)["message"] == "Deleted"


def test_the_monitor_streams_nothing_to_a_student_without_a_session(twin_demo):
    reply = twin_demo.test_client().get("/serial-monitor/board")
    assert reply.status_code == 403 and "open the lab from the RLMS" in reply.get_data(True)
    _, client, session_id = _student(twin_demo)
    stream = client.get("/serial-monitor/board")
    assert stream.status_code == 200 and next(iter(stream.response)) == b"retry: 2000\n\n"
    stream.close()


def test_the_demo_leaves_a_writable_default_cache_alone(
    tmp_path, redis_url, redis_base, monkeypatch
):
    monkeypatch.setattr(demo_app_module, "twin_available", lambda: (False, "no simavr"))
    monkeypatch.delenv("LABRUNTIME_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with running_demo(tmp_path, redis_url, redis_base):
        assert "LABRUNTIME_CACHE_DIR" not in os.environ  # ~/.cache/labruntime serves
