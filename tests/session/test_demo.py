"""The demo lab: as a Flask app, and served for real by `labruntime demo`."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labruntime.demo import DEMO_DEVICES, create_app
from labruntime.state import get_state
from labruntime.store.embedded import EmbeddedRedis, stop_embedded_redis
from labruntime.testing import FakeRLMS
from tests._processes import stop_processes


def test_demo_lab_flow(tmp_path, redis_url, redis_base):
    app = create_app(
        tmp_path / "demo",
        WEBLAB_REDIS_URL=redis_url,
        WEBLAB_REDIS_BASE=redis_base,
        WEBLAB_AUTOCLEAN_THREAD=False,
        WEBLAB_TASK_THREADS_PROCESS=2,  # the web process holds the demo's devices itself
        WEBLAB_DEVICES=dict(DEMO_DEVICES),  # the fallback board (the twin: test_demo_twin.py)
    )
    try:
        _demo_lab_flow(app, tmp_path)
    finally:
        get_state(app).shutdown(timeout=10)  # even when the flow fails: no thread left running


def _demo_lab_flow(app, tmp_path):
    rlms = FakeRLMS.for_app(app)
    started = rlms.start(username="ada", full_name="Ada L.", style="labsland")
    student = rlms.client
    assert student.get(started.url).status_code == 302
    page = student.get("/").data.decode()
    assert "Hello, Ada L." in page and "<script>" in page and "/poll" in page
    switched = student.post("/led", json={"on": True}).get_json()
    assert switched == {"led": True, "switches": 1}
    assert student.post("/led", json={"on": False}).get_json() == {"led": False, "switches": 2}
    assert student.post("/leave").get_json()["back"] == "http://rlms.invalid/back"
    assert rlms.status(started.session_id) == -1
    assert student.post("/led", json={"on": True}).status_code == 302  # back, not the LED
    assert rlms.dispose(started.session_id)["message"] == "Deleted"
    assert (tmp_path / "demo" / "secret_key").stat().st_mode & 0o077 == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_labruntime_demo_serves_and_prints_link(tmp_path):
    port = _free_port()
    instance = tmp_path / "d"
    command = [
        str(Path(sys.executable).parent / "labruntime"),
        "demo",
        "--port",
        str(port),
        "--instance",
        str(instance),
        "--dont-open-browser",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy()
    )
    try:
        link = None
        deadline = time.monotonic() + 30
        while link is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            found = re.search(r"(http://localhost:\d+/callback/\S+)", line)
            link = found.group(1) if found else None
        assert link, "no link printed"
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        for _ in range(100):  # the server may still be binding its port
            try:
                with opener.open(link.replace("localhost", "127.0.0.1")) as page:
                    body = page.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "Hello, Demo Student" in body
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/led",
            data=json.dumps({"on": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        if 'data-twin="true"' in body:  # the AVR twin runs here: the LED is the program's pin
            with pytest.raises(urllib.error.HTTPError) as refused:
                opener.open(request)
            assert refused.value.code == 409
            assert "pin 13" in json.loads(refused.value.read())["error"]
            refused.value.close()
            # the page's LED is read from the twin's pin by a task on the served demo's board
            # (None while the board is busy: the new student's board is being cleared)
            led = None
            deadline = time.monotonic() + 30
            while led is None and time.monotonic() < deadline:
                with opener.open(f"http://127.0.0.1:{port}/state") as reply:
                    led = json.loads(reply.read())["led"]
            assert led is not None and isinstance(led["on"], bool) and "edges" in led
        else:  # the fallback board (sim:arduino and a sim:gpio LED)
            with opener.open(request) as reply:
                assert json.loads(reply.read()) == {"led": True, "switches": 1}
    finally:
        stop_processes([process], signal.SIGINT, timeout=10)
        output = process.stdout.read()
        process.stdout.close()
        still_running = EmbeddedRedis(instance / "redis").running
        stop_embedded_redis(instance)
    assert "stopped" in output and not still_running
