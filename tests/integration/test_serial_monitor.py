"""The serial monitor: what the twin's program prints reaches its student's page, only theirs,
and stops at dispose. The board is held by a real worker process (``labruntime loop --device
board``); the web side reads the lines from Redis through the SSE route.

Skips (saying what to install) where the AVR twin cannot run.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import tty
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import render_template_string

from labruntime import WebLabError, serial_monitor
from labruntime.devices.holder import DeviceHolder
from labruntime.store.connection import Connection
from labruntime.store.devices import DeviceStore
from labruntime.store.monitor import MonitorStore
from labruntime.testing import FakeRLMS
from tests._helpers import wait_for
from tests._processes import stop_processes

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "tests" / "firmware" / "hello_uart.hex"  # "hello from the twin N" every 50 ms
BLINK = ROOT / "tests" / "firmware" / "blink.hex"  # prints nothing
TWIN = "sim:avr?mcu=atmega328p"
LABRUNTIME = str(Path(sys.executable).parent / "labruntime")

pytestmark = pytest.mark.slow


class Events:
    """An SSE response read event by event (the Flask test client streams it lazily)."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.chunks = reply.response  # the generator: each item is one event or comment
        self.seen: list[dict[str, str]] = []

    def next(self) -> dict[str, str] | None:
        """The next event or comment (None when the response ended)."""
        for chunk in self.chunks:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            event: dict[str, str] = {}
            for line in text.strip("\n").split("\n"):
                field, _, value = line.partition(": ")
                event[field] = value
            self.seen.append(event)
            return event
        return None

    def text_until(self, wanted: str, limit: int = 200) -> str:
        """The monitor's text, event after event, until it holds ``wanted``."""
        text = ""
        for _ in range(limit):
            event = self.next()
            assert event is not None, f"the stream ended before {wanted!r}: {text!r}"
            if "data" in event and event.get("event") is None:
                text += json.loads(event["data"])
            if wanted in text:
                return text
        raise AssertionError(f"{wanted!r} never came: {text!r}")

    def until_end(self, limit: int = 500) -> tuple[dict[str, str], str]:
        """Read to the ``end`` event: (it, the text before it)."""
        text = ""
        for _ in range(limit):
            event = self.next()
            assert event is not None, f"the stream ended with no end event: {self.seen[-3:]}"
            if event.get("event") == "end":
                return event, text
            if "data" in event:
                text += json.loads(event["data"])
        raise AssertionError(f"no end event: {self.seen[-3:]}")

    def close(self) -> None:
        self.reply.close()


def _student(lab: Any, name: str) -> tuple[str, Any]:
    started = lab.rlms.start(username=name, assigned_time=300)
    client = lab.app.test_client()
    assert client.get(started.url).status_code == 302
    return started.session_id, client


class MonitorWorker:
    """``labruntime --app monlab.py loop --device board``: the device lab (devlab.py) with the
    serial monitor on, as a lab author's module would be, in a worker process of its own."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        app_file = _monitor_lab(folder)
        self.log = folder / "worker.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [LABRUNTIME, "--app", str(app_file), "loop", "--device", "board"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_holding(self) -> None:
        def holding() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            return "holding device(s) board" in self.log.read_text()

        wait_for(holding, 60, lambda: f"the worker to hold the board:\n{self.log.read_text()}")


def _lab_env(redis_url: str, redis_base: str) -> dict[str, str]:
    return {
        **os.environ,
        "LAB_REDIS_URL": redis_url,
        "LAB_REDIS_BASE": redis_base,
        "LAB_THREADS": "0",
        "LAB_DEVICES": json.dumps({"board": TWIN}),
    }


@pytest.fixture
def monitored(
    twin_here: None, devlab_factory: Any, tmp_path: Path, redis_url: str, redis_base: str
) -> Iterator[tuple[Any, MonitorWorker]]:
    lab = devlab_factory(threads=0, start=False, devices={"board": TWIN})
    serial_monitor(lab.app)
    worker = MonitorWorker(tmp_path, _lab_env(redis_url, redis_base))
    try:
        worker.wait_holding()
        yield lab, worker
    finally:
        stop_processes([worker.proc])


def test_the_holders_student_sees_the_lines_live_and_the_stream_ends_at_dispose(monitored):
    lab, worker = monitored
    sid, client = _student(lab, "ada")
    other_sid, other = _student(lab, "bob")
    task = lab.delay(sid, "program_device", HELLO.read_text()).join(timeout=60)
    assert task.done and task.result["verified"], task.error

    mine = Events(client.get("/serial-monitor/board"))
    theirs = Events(other.get("/serial-monitor/board"))
    assert mine.reply.status_code == 200 and mine.reply.mimetype == "text/event-stream"
    assert mine.next() == {"retry": "2000"}
    text = mine.text_until("hello from the twin 3")
    assert "hello from the twin 2\r\nhello from the twin 3" in text, text
    assert all("id" in e for e in mine.seen if "data" in e)

    # bob has no task on the board: nothing of ada's output reaches him (only keepalive/retry)
    assert theirs.next() == {"retry": "2000"}
    lab.rlms.dispose(other_sid)
    end, leaked = theirs.until_end()
    assert leaked == "" and json.loads(end["data"]) == "the session is over"

    # ada's dispose: the worker ends her monitor; her stream says so and stops
    lab.rlms.dispose(sid)
    end, _ = mine.until_end()
    assert json.loads(end["data"]) == "the session ended"
    assert mine.next() is None
    mine.close()
    theirs.close()
    # after the dispose the page's EventSource gets 204 (stop retrying), not a stream
    assert client.get("/serial-monitor/board").status_code == 204
    assert worker.proc.poll() is None


def test_the_next_student_never_sees_the_previous_ones_lines(monitored):
    lab, _ = monitored
    first, client = _student(lab, "ada")
    assert lab.delay(first, "program_device", HELLO.read_text()).join(timeout=60).done
    Events(client.get("/serial-monitor/board")).text_until("hello from the twin 2")
    lab.rlms.dispose(first)

    second, client2 = _student(lab, "bob")
    # bob's own program prints nothing: the lines ada's program printed are not his
    assert lab.delay(second, "program_device", BLINK.read_text()).join(timeout=60).done
    stream = Events(client2.get("/serial-monitor/board"))
    assert stream.next() == {"retry": "2000"}
    lab.rlms.dispose(second)
    _, seen = stream.until_end()
    assert seen == "", seen


def test_reconnecting_with_the_last_event_id_loses_nothing(monitored):
    lab, _ = monitored
    sid, client = _student(lab, "ada")
    assert lab.delay(sid, "program_device", HELLO.read_text()).join(timeout=60).done
    first = Events(client.get("/serial-monitor/board"))
    first.text_until("hello from the twin 1")
    last = [e["id"] for e in first.seen if "id" in e][-1]
    first.close()
    again = Events(client.get("/serial-monitor/board", headers={"Last-Event-ID": last}))
    before = "".join(json.loads(e["data"]) for e in first.seen if "id" in e)
    after = again.text_until("hello from the twin 5")
    again.close()
    numbers = [int(n) for n in re.findall(r"hello from the twin (\d+)\r\n", before + after)]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    lab.rlms.dispose(sid)


def test_bad_requests_get_clear_answers(devlab_factory, monitored):
    lab, _ = monitored
    anonymous = lab.app.test_client()
    refused = anonymous.get("/serial-monitor/board")
    assert refused.status_code == 403 and "no laboratory session" in refused.get_data(True)
    sid, client = _student(lab, "ada")
    unknown = client.get("/serial-monitor/nope")
    assert unknown.status_code == 404
    assert "no device 'nope'" in unknown.get_data(True) and "board" in unknown.get_data(True)
    garbage = Events(client.get("/serial-monitor/board", headers={"Last-Event-ID": "0;DROP"}))
    assert garbage.reply.status_code == 200 and garbage.next() == {"retry": "2000"}
    garbage.close()
    assert client.get("/serial-monitor.js").mimetype == "text/javascript"
    with pytest.raises(WebLabError, match="already called"):
        serial_monitor(lab.app)
    other = devlab_factory(threads=0, start=False, devices={"board": TWIN})
    with pytest.raises(WebLabError, match=r"\['nope'\] not in WEBLAB_DEVICES"):
        serial_monitor(other.app, devices=["nope"])
    with pytest.raises(WebLabError, match="RLMS's /weblab/ routes"):
        serial_monitor(other.app, url_prefix="/weblab/monitor")
    lab.rlms.dispose(sid)


@pytest.fixture
def pty_console() -> Iterator[tuple[int, str]]:
    """(master fd, tty path) of a raw pseudo-terminal: the far end of a serial: console."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    os.close(master)


def _text(store: MonitorStore, session_id: str, wanted: str) -> tuple[str, list[str]]:
    """Read the console's stream for ``session_id`` until its text holds ``wanted``."""
    text, kinds, after = "", [], "0"

    def holds() -> bool:
        nonlocal text, after
        after, events = store.read("console", session_id, after, 0.2)
        for event in events:
            kinds.append(event.kind)
            text += event.text if event.kind == "out" else ""
        return wanted in text

    wait_for(holds, 10, lambda: f"{wanted!r} in {session_id}'s monitor (got {text!r})")
    return text, kinds


def test_a_serial_console_is_read_between_tasks_and_reaches_only_its_owner(
    pty_console, redis_url, redis_base
):
    master, path = pty_console
    conn = Connection(redis_url, redis_base)
    store = MonitorStore(conn)
    holder = DeviceHolder(
        DeviceStore(conn), {"console": f"serial:{path}?timeout=0.2"}, "w1", store, ["console"]
    ).open()
    try:
        assert holder.monitor.watched == ["console"]
        os.write(master, b"printed before any session\n")  # read and dropped: nobody owns it
        wait_for(lambda: holder.monitor.ownerless_bytes("console") == 27, 5, "the reader")
        with holder.using(["console"], "session-a"):  # a task of session a takes the board
            pass
        os.write(master, b"hello a\n")
        text, _ = _text(store, "session-a", "hello a\n")
        assert "before any session" not in text, text
        # a task reading the port itself gets its bytes: the monitor's reader stays away
        with holder.using(["console"], "session-a") as devices:
            os.write(master, b"for the task\n")
            assert devices["console"].readline(timeout=2) == b"for the task\n"
        with holder.using(["console"], "session-b"):
            pass
        os.write(master, b"hello b\n")
        text_b, _ = _text(store, "session-b", "hello b\n")
        assert "hello a" not in text_b and "for the task" not in text_b, text_b
        holder.safe_after_session("console", "session-b")  # b's dispose: the end entry
        _, kinds = _text(store, "session-b", "hello b\n")
        assert kinds[-1] == "end"
        os.write(master, b"after the dispose\n")
        with holder.using(["console"], "session-c"):
            pass
        os.write(master, b"hello c\n")
        text_c, _ = _text(store, "session-c", "hello c\n")
        every = store.read("console", "session-b", "0", 0.2)[1]
        assert not any("after the dispose" in e.text for e in every), every
        assert "hello a" not in text_c and "hello b" not in text_c, text_c
    finally:
        holder.close()
        conn.close()


def test_an_unmonitored_console_is_left_alone(pty_console, redis_url, redis_base):
    master, path = pty_console
    conn = Connection(redis_url, redis_base)
    holder = DeviceHolder(
        DeviceStore(conn), {"console": f"serial:{path}?timeout=0.2"}, "w1", MonitorStore(conn)
    ).open()
    try:
        assert holder.monitor.watched == []  # the lab did not call serial_monitor(app)
        with holder.using(["console"], "session-a"):
            pass
        os.write(master, b"kept for the next task\n")
        with holder.using(["console"], "session-a") as devices:
            assert devices["console"].readline(timeout=2) == b"kept for the next task\n"
    finally:
        holder.close()
        conn.close()


MONITOR_LAB = """
import sys
sys.path.insert(0, {root!r})
from labruntime import serial_monitor
from tests._helpers import load_module

app = load_module({devlab!r}, "labruntime_tests_devlab").app
serial_monitor(app)
"""


def test_under_gunicorns_threaded_worker_a_stream_runs_beside_other_requests(
    monitored, tmp_path, redis_url, redis_base
):
    lab, _ = monitored
    port = _free_port()
    env = _lab_env(redis_url, redis_base)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen(
        [str(gunicorn), "-w", "1", "-k", "gthread", "--threads", "4"]
        + ["-b", f"127.0.0.1:{port}", "monlab:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/weblab/sessions/api"), 30, "gunicorn", interval=0.1)
        rlms = FakeRLMS(base, lab.app.config["WEBLAB_USERNAME"], lab.app.config["WEBLAB_PASSWORD"])
        started = rlms.start(username="ada", assigned_time=300)
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        with browser.open(started.url) as page:
            assert page.read() == b"lab"
        task = lab.delay(started.session_id, "program_device", HELLO.read_text()).join(60)
        assert task.done, task.error
        with browser.open(f"{base}/serial-monitor/board", timeout=20) as stream:
            ctype = stream.headers["Content-Type"]
            assert ctype.startswith("text/event-stream"), (ctype, stream.read(300))
            text = ""
            while "hello from the twin 3" not in text:
                line = stream.readline().decode()
                assert line, f"the stream ended early: {text!r}"
                if line.startswith("data: "):
                    text += json.loads(line[6:])
                    # the one worker process answers other requests while this stream is open
                    with browser.open(f"{base}/lab", timeout=5) as page:
                        assert page.read() == b"lab"
            rlms.dispose(started.session_id)
            rest = stream.read().decode()  # the response ends after the end event
        assert "event: end" in rest and '"the session ended"' in rest, rest
    finally:
        stop_processes([server])


def _monitor_lab(folder: Path) -> Path:
    path = folder / "monlab.py"
    path.write_text(
        MONITOR_LAB.format(root=str(ROOT), devlab=str(ROOT / "tests/integration/devlab.py"))
    )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            reply.read()
            return True
    except OSError:
        return False


def test_the_readmes_two_lines_add_the_monitor(devlab_factory):
    """README.md's serial monitor lines, run as written: the Python block on a lab, the
    template line rendered in one of its pages."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The serial monitor") :]
    python = re.search(r"```python\n(.*?)```", section, re.S)
    html = re.search(r"```html\n(.*?)```", section, re.S)
    assert python and html, "README.md's serial monitor section lost its code blocks"
    lab = devlab_factory(start=False, devices={"board": TWIN})
    exec(compile(python.group(1), "README.md", "exec"), {"app": lab.app})  # noqa: S102
    template = html.group(1).split("<!--")[0].strip()
    with lab.app.test_request_context("/lab"):
        markup = str(render_template_string(template))
    assert 'data-weblab-monitor="/serial-monitor/board"' in markup, markup
    assert '<script src="/serial-monitor.js" defer></script>' in markup
    assert lab.state.devices.monitored == ["board"]
