"""The gaps a reviewer found in the session layer and the CLI, now closed (issues 2 and 3)."""

from __future__ import annotations

import math
import threading
import time

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo

from labruntime import WebLab
from labruntime.cli.main import weblab_group
from labruntime.errors import InvalidConfigError
from labruntime.sessions.http_guard import MAX_RLMS_BODY

from .conftest import basic

S = "/weblab/sessions/"


# -- RLMS routes: body cap, JSON errors ------------------------------------------------------
def test_rlms_body_over_the_cap_is_a_json_413_but_the_lab_routes_are_not_capped(make_lab):
    lab = make_lab()

    @lab.app.post("/upload")
    def upload():
        from flask import request

        return {"size": len(request.get_data())}

    big = b'{"client_initial_data": "' + b"x" * MAX_RLMS_BODY + b'"}'
    reply = lab.client.post(S, data=big, headers=basic(), content_type="application/json")
    assert reply.status_code == 413 and reply.is_json
    assert reply.get_json()["error"] is True and "larger than" in reply.get_json()["message"]
    assert lab.started == []
    own = lab.client.post("/upload", data=big)
    assert own.status_code == 200 and own.get_json()["size"] == len(big)


def test_deep_json_as_a_string_field_is_refused_naming_it(make_lab):
    lab = make_lab()
    deep = "[" * 100_000 + "]" * 100_000
    reply = lab.client.post(
        S, json={"client_initial_data": deep, "server_initial_data": lab.server_data()},
        headers=basic(),
    )  # fmt: skip
    body = reply.get_json()
    assert reply.status_code == 200 and body["error"] is True
    assert "client_initial_data" in body["message"] and "nested" in body["message"]


@pytest.mark.parametrize("name", ["api", "test", "status"])
def test_post_on_reserved_names_is_405_json(make_lab, name):
    lab = make_lab()
    reply = lab.client.post(S + name, json={"action": "delete"}, headers=basic())
    assert reply.status_code == 405 and reply.get_json()["error"] is True
    assert lab.disposed == []


def test_rlms_404_405_are_json_the_lab_keeps_its_own(make_lab):
    lab = make_lab()
    missing = lab.client.get(S + "a/b/c", headers=basic())
    assert missing.status_code == 404 and missing.get_json()["error"] is True
    wrong = lab.client.put(S, headers=basic())
    assert wrong.status_code == 405 and "POST" in wrong.get_json()["message"]
    assert "POST" in wrong.headers["Allow"]
    assert not lab.client.get("/nowhere").is_json  # the lab's own 404 page


@pytest.mark.parametrize(
    "field,value,ok",
    [("priority.queue.slot.length", 366 * 24 * 3600 + 1, False),
     ("priority.queue.slot.length", 3600, True),
     ("priority.queue.slot.start.timestamp", -1, False),
     ("priority.queue.slot.start.timestamp", 10**400, False),
     ("priority.queue.slot.start", "9999-01-01 00:00:00", False),
     ("priority.queue.slot.start.timestamp", 1.0, True)],
)  # fmt: skip
def test_slot_numbers_range(make_lab, field, value, ok):
    lab = make_lab()
    body = lab.start(sd=lab.server_data(**{field: value})).get_json()
    if ok:
        assert "session_id" in body
    else:
        assert body["error"] is True and field in body["message"]


# -- settable settings, run_tasks, loop --------------------------------------------------------
def test_settings_are_settable_after_init_app(make_lab):
    lab = make_lab(WEBLAB_TIMEOUT=15)
    weblab = lab.weblab
    weblab.poll_interval = 2
    assert weblab.poll_interval == 2.0
    sid = lab.new_session()
    assert lab.status(sid) == 2
    weblab.poll_interval = 0
    assert lab.status(sid) == 0
    weblab.timeout = 0.2  # a student who does not poll is gone after 0.2 s
    time.sleep(0.4)
    assert weblab.timeout == 0.2 and lab.status(sid) == -1
    weblab.cleaner_thread_interval = 1
    assert lab.state.config.cleaner_interval == 1.0
    weblab.join_step_time = 0.1
    assert weblab.join_step_time == 0.1
    for name, bad in (("timeout", math.nan), ("poll_interval", -1),
                      ("cleaner_thread_interval", 0), ("join_step_time", "x")):  # fmt: skip
        with pytest.raises(InvalidConfigError, match=name):
            setattr(weblab, name, bad)


def test_settings_cannot_be_set_before_init_app():
    with pytest.raises(RuntimeError, match="init_app"):
        WebLab().timeout = 3


def test_run_tasks_runs_what_is_queued_here_and_returns(make_lab):
    lab = make_lab()
    ran: list[tuple[int, str]] = []

    @lab.weblab.task()
    def work(x):
        ran.append((threading.get_ident(), x))
        return x * 2

    with lab.app.app_context():
        tasks = [work.delay(i) for i in range(3)]
        lab.weblab.run_tasks(threads=2)
        assert sorted(x for _, x in ran) == [0, 1, 2]
        assert [t.retrieve().result for t in tasks] == [0, 2, 4]
        assert threading.get_ident() not in {ident for ident, _ in ran}
        assert [t.name for t in threading.enumerate() if t.name.startswith("weblab-")] == []


def test_loop_runs_tasks_and_cleans_until_stopped(make_lab):
    lab = make_lab(WEBLAB_CLEANER_INTERVAL=0.2)
    done = threading.Event()

    @lab.weblab.task()
    def work():
        done.set()

    sid = lab.new_session(sd=lab.server_data(length=0.3))
    stop = threading.Event()
    with lab.app.app_context():
        work.delay()
    runner = threading.Thread(target=lab.weblab.loop, kwargs={"app": lab.app, "stop": stop})
    runner.start()
    try:
        assert done.wait(10)
        deadline = time.monotonic() + 10
        while lab.disposed != [sid] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lab.disposed == [sid]
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()


# -- CLI -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["notaurl", "ftp://host", "http://", "http://host:port"])
def test_fake_new_refuses_a_bad_url_base(make_lab, url):
    lab = make_lab()
    result = CliRunner().invoke(
        weblab_group, ["fake", "new", "--dont-open-browser", "--url-base", url],
        obj=ScriptInfo(create_app=lambda: lab.app),
    )  # fmt: skip
    assert result.exit_code == 2 and "--url-base" in result.output, result.output
    assert lab.started == []


def test_fake_new_marks_the_app_no_background(make_lab):
    lab = make_lab(WEBLAB_TASK_THREADS_PROCESS=2)
    result = CliRunner().invoke(
        weblab_group, ["fake", "new", "--dont-open-browser"],
        obj=ScriptInfo(create_app=lambda: lab.app),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert lab.state.no_background is True and lab.state.background_pid is None
    assert [t.name for t in threading.enumerate() if t.name.startswith("weblab-")] == []
