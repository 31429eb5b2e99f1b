"""Fixtures of the cost tests: Redis round trips and commands counted at the client.

``redis_calls()`` counts, while its block runs, every round trip (one packed send: a single
command, a pipeline or an EVALSHA) and every command sent, with its arguments, made by any
client of this process (redis-py, with or without hiredis).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.connection import AbstractConnection


@dataclass
class RedisCalls:
    """What was sent to Redis in a block."""

    round_trips: int = 0
    commands: list[tuple[str, ...]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [command[0].upper() for command in self.commands]

    def mention(self, text: str) -> list[tuple[str, ...]]:
        """The commands with an argument equal to ``text``."""
        return [c for c in self.commands if text in c]


def _words(args: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(a.decode() if isinstance(a, bytes) else str(a) for a in args)


@pytest.fixture
def redis_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., AbstractContextManager[RedisCalls]]:
    send, send_one, pack_many = (
        AbstractConnection.send_packed_command,
        AbstractConnection.send_command,
        AbstractConnection.pack_commands,
    )

    @contextmanager
    def counting(*, this_thread_only: bool = False) -> Iterator[RedisCalls]:
        """Count what is sent to Redis; ``this_thread_only``: leave out other threads' calls
        (a cleaner or runner of the same process working meanwhile). The session cache's
        listener is never counted (it connects once per process, in its own thread)."""
        calls = RedisCalls()
        me = threading.get_ident()

        def counts() -> bool:
            if threading.current_thread().name == "labruntime-session-cache":
                return False  # the session cache's listener (connecting): no request's
            return not this_thread_only or threading.get_ident() == me

        def counted_send(self: Any, command: Any, check_health: bool = True) -> Any:
            if counts():
                calls.round_trips += 1
            return send(self, command, check_health)

        def counted_send_one(self: Any, *args: Any, **kwargs: Any) -> Any:
            if counts():
                calls.commands.append(_words(args))
            return send_one(self, *args, **kwargs)

        def counted_pack_many(self: Any, commands: Any) -> Any:
            commands = list(commands)
            if counts():
                calls.commands.extend(_words(tuple(c)) for c in commands)
            return pack_many(self, commands)

        with monkeypatch.context() as patch:
            patch.setattr(AbstractConnection, "send_packed_command", counted_send)
            patch.setattr(AbstractConnection, "send_command", counted_send_one)
            patch.setattr(AbstractConnection, "pack_commands", counted_pack_many)
            yield calls

    return counting


@dataclass
class PerfLab:
    """A lab with a student view, its task ``add`` (no runner: tasks stay queued) and a fake
    RLMS."""

    app: Any
    weblab: Any
    add: Any
    rlms: Any
    disposed: list[str] = field(default_factory=list)  # on_dispose's sessions, in order

    def student(self, session_id: str) -> Any:
        """A test client holding the student's cookie (the callback was followed)."""
        client = self.app.test_client()
        reply = client.get(f"/callback/{session_id}")
        assert reply.status_code in (302, 303), reply.data
        return client


@pytest.fixture
def perf_lab(redis_url: str, redis_base: str, tmp_path: Any) -> Iterator[PerfLab]:
    from flask import jsonify

    from labruntime import WebLab, requires_active, weblab_user
    from labruntime.testing import FakeRLMS
    from tests._labs import lab_app

    app = lab_app("perf", redis_url, redis_base, str(tmp_path / "instance"))
    weblab = WebLab(app)

    @weblab.initial_url
    def initial_url() -> str:
        return "/lab"

    @weblab.task()
    def add(a: int, b: int) -> int:
        return a + b

    disposed: list[str] = []

    @weblab.on_dispose
    def on_dispose() -> None:
        disposed.append(str(weblab_user.session_id))

    @app.route("/lab")
    @requires_active
    def lab() -> str:
        return f"hello {weblab_user.username} {weblab_user.time_left:.0f}"

    @app.route("/lab/initial")
    @requires_active
    def initial() -> Any:
        return jsonify(
            client=weblab_user.request_client_data,
            server_keys=sorted(weblab_user.request_server_data),
            again=weblab_user.request_client_data == weblab_user.request_client_data,
        )

    @app.route("/lab/data")
    @requires_active
    def data() -> Any:
        weblab_user.data["visits"] = weblab_user.data.get("visits", 0) + 1
        return jsonify(weblab_user.data)

    try:
        yield PerfLab(app, weblab, add, FakeRLMS.for_app(app), disposed)
    finally:
        weblab.shutdown(app)
