"""Fixtures of the task tests: a TaskStore on the session's real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
from flask import Flask, session

from labruntime.state import LabState, get_state
from labruntime.store.connection import Connection
from labruntime.store.tasks import TaskStore
from labruntime.testing import FakeRLMS
from tests._helpers import load_module

HERE = Path(__file__).parent
LABAPP = HERE / "labapp.py"


@pytest.fixture
def task_store(redis_url: str, redis_base: str) -> Iterator[TaskStore]:
    connection = Connection(redis_url, redis_base)
    try:
        yield TaskStore(connection, expires=60)
    finally:
        connection.close()


def load_labapp() -> ModuleType:
    """tests/tasks/labapp.py as a module (the test folder is not a package)."""
    return load_module(LABAPP, "labruntime_tests_tasks_labapp")


class Lab:
    """The test lab: app, weblab, its tasks, a fake RLMS and helpers."""

    def __init__(self, app: Flask, weblab: Any, tasks: dict[str, Any], redis_url: str) -> None:
        self.app, self.weblab, self.tasks = app, weblab, tasks
        self.rlms = FakeRLMS.for_app(app, max_dispose_wait=30)
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.base = app.config["WEBLAB_REDIS_BASE"]

    def start_session(self, username: str = "alice", assigned_time: float = 300) -> str:
        return self.rlms.start(username=username, assigned_time=assigned_time).session_id

    @contextmanager
    def as_session(self, session_id: str | None) -> Iterator[None]:
        """``with lab.as_session(sid):`` a request context whose Flask session holds
        ``session_id`` (None: no session)."""
        with self.app.test_request_context("/lab"):
            if session_id:
                session["weblab_session_id"] = session_id
            yield

    def runs(self, task_id: str) -> int:
        return int(self.redis.hget(f"{self.base}:test:runs", task_id) or 0)

    @property
    def state(self) -> LabState:
        return get_state(self.app)

    def start_workers(self) -> None:
        self.state.start_task_threads()

    def close(self) -> None:
        self.weblab.shutdown(self.app, timeout=5)
        self.redis.close()


def make_lab(redis_url: str, redis_base: str, threads: int = 2, **kw: Any) -> Lab:
    module = load_labapp()
    app, weblab, tasks = module.create_app(redis_url, redis_base, threads=threads, **kw)
    return Lab(app, weblab, tasks, redis_url)


@pytest.fixture
def lab(redis_url: str, redis_base: str) -> Iterator[Lab]:
    """The lab with 3 runner threads in this process (started)."""
    lab = make_lab(redis_url, redis_base, threads=3)
    lab.start_workers()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def lab_factory(redis_url: str, redis_base: str) -> Iterator[Any]:
    """``lab_factory(threads=1, dispose_timeout=2, start=True)``: labs closed at the end."""
    labs: list[Lab] = []

    def factory(threads: int = 1, start: bool = True, **kw: Any) -> Lab:
        lab = make_lab(redis_url, redis_base, threads=threads, **kw)
        labs.append(lab)
        if start:
            lab.start_workers()
        return lab

    try:
        yield factory
    finally:
        for lab in labs:
            lab.close()
