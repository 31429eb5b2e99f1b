"""Several processes, one lab: the cleaner elsewhere, the embedded store shared and persistent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labruntime.state import get_state
from labruntime.store.embedded import stop_embedded_redis
from tests._helpers import load_module

LAB = """
import os
from flask import Flask
from labruntime import WebLab, weblab_user

app = Flask(__name__, instance_path=os.environ["LAB_INSTANCE"])
app.config.update(
    SECRET_KEY="k" * 16, WEBLAB_USERNAME="u", WEBLAB_PASSWORD="p" * 16,
    WEBLAB_REDIS_BASE=os.environ["LAB_BASE"], WEBLAB_AUTOCLEAN_THREAD=False,
    WEBLAB_TASK_THREADS_PROCESS=0,
)
if os.environ.get("LAB_REDIS_URL"):
    app.config["WEBLAB_REDIS_URL"] = os.environ["LAB_REDIS_URL"]
weblab = WebLab(app)

@weblab.on_dispose
def bye():
    with open(os.environ["LAB_LOG"], "a") as log:
        log.write(f"{os.getpid()} {weblab_user.session_id}\\n")

@weblab.initial_url
def initial():
    return "/"
"""
BIN = Path(sys.executable).parent


@pytest.fixture
def crosslab(tmp_path, redis_base, monkeypatch):
    """The lab as a module file, imported here and importable by subprocesses."""
    (tmp_path / "crosslab.py").write_text(LAB)
    env = {
        "LAB_INSTANCE": str(tmp_path / "inst"),
        "LAB_BASE": redis_base,
        "LAB_LOG": str(tmp_path / "disposed.log"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def load(redis_url: str | None):
        if redis_url:
            monkeypatch.setenv("LAB_REDIS_URL", redis_url)
        else:
            monkeypatch.delenv("LAB_REDIS_URL", raising=False)
        return load_module(tmp_path / "crosslab.py", f"crosslab_{id(env)}", fresh=True)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, cwd=tmp_path, env=os.environ.copy(), capture_output=True, text=True, timeout=60
        )

    yield load, run, tmp_path
    stop_embedded_redis(tmp_path / "inst")


def _start(app, length=300):
    reply = app.test_client().post(
        "/weblab/sessions/",
        json={
            "client_initial_data": {},
            "server_initial_data": {
                "priority.queue.slot.length": length,
                "request.username": "ann",
            },
        },
        auth=("u", "p" * 16),
    )
    return reply.get_json()["session_id"]


@pytest.mark.slow
def test_cleaner_in_another_process(crosslab, redis_url):
    load, run, folder = crosslab
    lab = load(redis_url)
    sid = _start(lab.app, length=0.2)
    time.sleep(0.3)
    done = run(str(BIN / "labruntime"), "--app", "crosslab", "clean-expired-users")
    assert done.returncode == 0, done.stderr
    assert "1 session(s) ended" in done.stdout
    pid, disposed = (folder / "disposed.log").read_text().split()
    assert disposed == sid and int(pid) != os.getpid()
    with lab.app.app_context():
        assert lab.weblab.clean_expired_users() == 0
    reply = lab.app.test_client().post(
        f"/weblab/sessions/{sid}", json={"action": "delete"}, auth=("u", "p" * 16)
    )
    assert reply.get_json() == {"message": "Deleted"}  # idempotent: on_dispose not run again
    assert (folder / "disposed.log").read_text().count(sid) == 1
    lab.weblab.shutdown(lab.app)


@pytest.mark.slow
def test_embedded_store_shared_between_processes_and_restarts(crosslab):
    load, run, folder = crosslab
    lab = load(None)
    sid = _start(lab.app)
    code = (
        "import sys, crosslab\n"
        "from labruntime.state import get_state\n"
        "with crosslab.app.app_context():\n"
        "    user = get_state().load_user(sys.argv[1])\n"
        "    print(type(user).__name__, user.username)\n"
    )
    seen = run(sys.executable, "-c", code, sid)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.split() == ["CurrentUser", "ann"]
    made = run(
        str(BIN / "flask"),
        "--app",
        "crosslab",
        "weblab",
        "fake",
        "new",
        "--dont-open-browser",
        "--username",
        "bob",
    )
    assert made.returncode == 0, made.stderr
    fake_id = made.stdout.split()[1]
    get_state(lab.app).connection.close()
    assert stop_embedded_redis(folder / "inst")  # a restart of the machine's Redis
    with lab.app.app_context():
        assert get_state(lab.app).load_user(fake_id).username == "bob"  # started again, from disk
        assert get_state(lab.app).load_user(sid).username == "ann"
    lab.weblab.shutdown(lab.app)


@pytest.mark.slow
def test_embedded_server_restarted_after_crash(crosslab):
    load, run, folder = crosslab
    lab = load(None)
    sid = _start(lab.app)
    pid = int((folder / "inst" / "redis" / "redis.pid").read_text())
    os.kill(pid, 9)
    time.sleep(0.2)
    status = lab.app.test_client().get(f"/weblab/sessions/{sid}/status", auth=("u", "p" * 16))
    assert status.status_code == 200
    assert status.get_json()["should_finish"] in (5, -1)  # -1 if the last write was lost
    lab.weblab.shutdown(lab.app)


def test_cli_errors_are_one_line(crosslab, redis_url, monkeypatch):
    load, run, folder = crosslab
    monkeypatch.setenv("LAB_REDIS_URL", redis_url)
    missing = run(str(BIN / "labruntime"), "--app", "crosslab", "fake", "status")
    assert missing.returncode == 1 and "fake new" in missing.stderr
    bad_app = run(str(BIN / "labruntime"), "--app", "nope_nothing", "fake", "status")
    assert bad_app.returncode != 0 and "nope_nothing" in bad_app.stderr
    monkeypatch.setenv("LAB_BASE", "two words")
    bad_config = run(str(BIN / "labruntime"), "--app", "crosslab", "clean-expired-users")
    assert bad_config.returncode == 1 and "WEBLAB_REDIS_BASE" in bad_config.stderr
    for done in (missing, bad_app, bad_config):
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_redis_start_status_stop_commands(crosslab):
    load, run, folder = crosslab
    labruntime = str(BIN / "labruntime")
    assert run(labruntime, "--app", "crosslab", "redis", "status").returncode == 1
    started = run(labruntime, "--app", "crosslab", "redis", "start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"unix://{folder / 'inst' / 'redis' / 'redis.sock'}"
    status = run(labruntime, "--app", "crosslab", "redis", "status")
    assert status.returncode == 0 and status.stdout.startswith("running, pid ")
    stopped = run(labruntime, "--app", "crosslab", "redis", "stop")
    assert stopped.stdout.strip() == "stopped"
    assert run(labruntime, "--app", "crosslab", "redis", "status").returncode == 1


def test_redis_commands_refuse_an_external_server(crosslab, redis_url, monkeypatch):
    load, run, folder = crosslab
    monkeypatch.setenv("LAB_REDIS_URL", redis_url)
    refused = run(str(BIN / "labruntime"), "--app", "crosslab", "redis", "stop")
    assert refused.returncode == 1 and "WEBLAB_REDIS_URL is set" in refused.stderr
