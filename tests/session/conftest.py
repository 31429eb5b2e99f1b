"""Fixtures for the session layer: a lab app on the test's Redis prefix, RLMS helpers."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, url_for

from labruntime import CurrentUser, ExpiredUser, WebLab, weblab_user
from labruntime.state import LabState, get_state
from tests._labs import PASSWORD, USER, lab_app


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    """HTTP Basic header for the RLMS."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def server_data(length: Any = 300, **extra: Any) -> dict[str, Any]:
    """A WebLab-Deusto-like server_initial_data."""
    data = {
        "priority.queue.slot.length": length,
        "request.username": "jdoe",
        "request.username.unique": "jdoe@deusto",
        "request.full_name": "jdoe",
        "request.locale": "es",
        "request.experiment_id.experiment_name": "led",
        "request.experiment_id.category_name": "arduino",
    }
    data.update(extra)
    return data


class Lab:
    """An app + its WebLab + the calls its hooks received."""

    def __init__(self, app: Flask, weblab: WebLab) -> None:
        self.app = app
        self.weblab = weblab
        self.started: list[tuple[dict, dict]] = []
        self.disposed: list[str] = []
        self.client = app.test_client()

    def start(self, client_data: Any = None, sd: Any = None, back: str = "http://rlms/back"):
        body = {
            "client_initial_data": client_data if client_data is not None else {},
            "server_initial_data": sd if sd is not None else server_data(),
            "back": back,
        }
        return self.client.post("/weblab/sessions/", json=body, headers=basic())

    def new_session(self, **kw: Any) -> str:
        reply = self.start(**kw)
        assert reply.status_code == 200, reply.data
        return reply.get_json()["session_id"]

    def status(self, session_id: str) -> int:
        reply = self.client.get(f"/weblab/sessions/{session_id}/status", headers=basic())
        return reply.get_json()["should_finish"]

    def dispose(self, session_id: str) -> dict[str, Any]:
        reply = self.client.post(
            f"/weblab/sessions/{session_id}", json={"action": "delete"}, headers=basic()
        )
        assert reply.status_code == 200
        return reply.get_json()

    def enter(self, session_id: str):
        """The student opens the link."""
        return self.client.get(f"/callback/{session_id}")

    def replace_hook(self, name: str):
        """Decorator: swap one of the default hooks (a lab may register each hook once)."""

        def decorator(func):
            setattr(self.state.hooks, name, None)
            return getattr(self.weblab, name)(func)

        return decorator

    basic = staticmethod(basic)
    server_data = staticmethod(server_data)

    @property
    def state(self) -> LabState:
        return get_state(self.app)

    def user(self, session_id: str) -> CurrentUser | ExpiredUser | None:
        """The session's user as the lab would load it (None: no such session)."""
        with self.app.app_context():
            return self.state.load_user(session_id)


@pytest.fixture
def make_lab(redis_url: str, redis_base: str, tmp_path) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def factory(**config: Any) -> Lab:
        instance = str(tmp_path / f"instance{len(labs)}")
        app = lab_app(f"lab{len(labs)}", redis_url, redis_base, instance, **config)
        weblab = WebLab(app)
        lab = Lab(app, weblab)

        @weblab.on_start
        def start(client_data, server_data):
            lab.started.append((client_data, server_data))
            return {"started": True}

        @weblab.on_dispose
        def dispose():
            lab.disposed.append(weblab_user.session_id)

        @weblab.initial_url
        def initial():
            return url_for("index")

        @app.route("/lab/")
        def index():
            from labruntime import requires_active

            @requires_active
            def view():
                weblab_user.data["visits"] = weblab_user.data.get("visits", 0) + 1
                return f"hello {weblab_user.username} {weblab_user.data['visits']}"

            return view()

        labs.append(lab)
        return lab

    yield factory
    for lab in labs:
        lab.weblab.shutdown(lab.app)


class _Trips:
    count = 0


CACHE_LISTENER = "labruntime-session-cache"  # the thread of labruntime.store.session_cache


@pytest.fixture
def count_round_trips(monkeypatch):
    """Count Redis round trips (packed sends) made while the block runs (but the session
    cache's listener connecting: its thread is not a request's)."""
    import threading
    from contextlib import contextmanager

    from redis.connection import AbstractConnection

    original = AbstractConnection.send_packed_command

    @contextmanager
    def counting(lab: Lab):
        trips = _Trips()

        def send(self, command, check_health=True):
            if threading.current_thread().name != CACHE_LISTENER:  # not a request's
                trips.count += 1
            return original(self, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
        try:
            yield trips
        finally:
            monkeypatch.setattr(AbstractConnection, "send_packed_command", original)

    return counting


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Every test stops the background threads it started (cleaner, task runners, servers)."""
    import threading
    import time

    before = set(threading.enumerate())
    yield

    def leftovers():
        return [
            t
            for t in threading.enumerate()
            if t not in before and t.name.startswith(("labruntime", "weblab-"))
        ]

    deadline = time.monotonic() + 3
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not leftovers(), f"threads left running: {[t.name for t in leftovers()]}"
