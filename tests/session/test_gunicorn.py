"""A lab under gunicorn with several worker processes on the embedded store, over real HTTP."""

from __future__ import annotations

import http.cookiejar
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from labruntime.store.embedded import stop_embedded_redis
from labruntime.testing import FakeRLMS
from tests._helpers import wait_for
from tests._processes import stop_processes

LAB = """
import os
import time
from flask import Flask, url_for
from labruntime import WebLab, weblab_user, requires_active

app = Flask(__name__, instance_path=os.environ["LAB_INSTANCE"])
app.config.update(SECRET_KEY="k" * 16, WEBLAB_USERNAME="u", WEBLAB_PASSWORD="p" * 16,
                  WEBLAB_TASK_THREADS_PROCESS=0, WEBLAB_CLEANER_INTERVAL=0.2,
                  WEBLAB_TIMEOUT=2)
weblab = WebLab(app)

@weblab.on_start
def start(client_data, server_data):
    return {"pids": []}

@weblab.on_dispose
def dispose():
    with open(os.environ["LAB_LOG"], "a") as log:
        log.write(f"{weblab_user.session_id} {len(weblab_user.data['pids'])}\\n")

@weblab.initial_url
def initial():
    return url_for("lab")

@app.route("/lab")
@requires_active
def lab():
    time.sleep(0.02)
    weblab_user.data["pids"].append(os.getpid())
    return str(os.getpid())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url) as reply:
            reply.read()
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_sessions_shared_by_gunicorn_workers(tmp_path):
    (tmp_path / "gunilab.py").write_text(LAB)
    env = {
        **os.environ,
        "LAB_INSTANCE": str(tmp_path / "i"),
        "LAB_LOG": str(tmp_path / "disposed.log"),
    }
    port = _free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen(
        [str(gunicorn), "-w", "3", "-b", f"127.0.0.1:{port}", "gunilab:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        api = f"{base}/weblab/sessions/api"
        wait_for(lambda: _answers(api), 30, f"{api} to answer", interval=0.1)
        rlms = FakeRLMS(base, "u", "p" * 16)
        pids: set[int] = set()
        errors: list[BaseException] = []

        def student(i: int) -> None:
            try:
                session = rlms.start(username=f"s{i}", assigned_time=60)
                sessions.append(session.session_id)
                browser = urllib.request.build_opener(
                    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
                )
                with browser.open(session.url) as page:
                    pids.add(int(page.read()))
                for _ in range(8):
                    with browser.open(f"{base}/lab") as page:
                        pids.add(int(page.read()))
                assert rlms.bulk_status([session.session_id]) == {session.session_id: 5}
                if i < 2:  # the RLMS ends two; the other two stop polling and time out
                    assert rlms.dispose(session.session_id) == {"message": "Deleted"}
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        sessions: list[str] = []
        students = [threading.Thread(target=student, args=(i,)) for i in range(4)]
        for thread in students:
            thread.start()
        for thread in students:
            thread.join(30)
        assert not errors, errors
        assert len(pids) >= 2, "one worker answered everything: the test would prove nothing"
        log = tmp_path / "disposed.log"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_text().split()) >= 8:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # a second on_dispose of the same session would show up by now
        lines = log.read_text().split()
        ended = lines[::2]
        assert sorted(ended) == sorted(sessions)  # each session ended exactly once
        assert set(lines[1::2]) == {"9"}  # every request's write kept, whichever worker served it
        assert all(rlms.status(sid) == -1 for sid in sessions)
    finally:
        stop_processes([server])
        server.stderr.close()
        stop_embedded_redis(tmp_path / "i")
