"""Fixtures of the fault tests: real processes, a private Redis a test may kill or starve.

- ``private_redis``: an EmbeddedRedis of this test alone (the session's one is never harmed);
- ``spawn(*flask_args, url=..., base=...)``: ``flask --app tests/tasks/labapp.py ...`` worker
  processes of the task test lab, output in a file (``proc.log_path``), ended at the end;
- ``lab_on(url, base)``: that lab in this process (no thread started), closed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import session

from labruntime.store.embedded import EmbeddedRedis
from labruntime.testing import FakeRLMS
from tests._helpers import load_module
from tests._processes import stop_processes

ROOT = Path(__file__).resolve().parents[2]
LABAPP = ROOT / "tests" / "tasks" / "labapp.py"
FLASK = [sys.executable, "-m", "flask", "--app", str(LABAPP)]


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A Redis server for this test only (short folder: unix socket paths are short)."""
    folder = Path(tempfile.mkdtemp(prefix="lr-fault-"))
    server = EmbeddedRedis(folder / "redis")
    server.ensure_running()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def base() -> str:
    return f"f{uuid.uuid4().hex[:10]}"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, url: str, base: str, **env: str) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"proc-{len(procs)}.log"
        environ = dict(os.environ, LAB_REDIS_URL=url, LAB_REDIS_BASE=base, LAB_THREADS="0")
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [*FLASK, *args], env={**environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        proc.log_path = log_path  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        stop_processes(procs)


def output(proc: Any) -> str:
    return Path(proc.log_path).read_text(errors="replace")


class Lab:
    """The task test lab in this process: app, weblab, tasks, a fake RLMS (no thread)."""

    def __init__(self, url: str, base: str, **kw: Any) -> None:
        module = load_module(LABAPP, "labruntime_tests_tasks_labapp")
        self.app, self.weblab, self.tasks = module.create_app(url, base, threads=0, **kw)
        self.rlms = FakeRLMS.for_app(self.app, max_dispose_wait=30)

    @contextmanager
    def as_session(self, session_id: str | None) -> Iterator[None]:
        with self.app.test_request_context("/lab"):
            if session_id:
                session["weblab_session_id"] = session_id
            yield

    def close(self) -> None:
        self.weblab.shutdown(self.app, timeout=5)


@pytest.fixture
def lab_on() -> Iterator[Callable[..., Lab]]:
    """``lab_on(url, base)``: the task test lab on that Redis, closed at the end."""
    labs: list[Lab] = []

    def make(url: str, base: str, **kw: Any) -> Lab:
        labs.append(Lab(url, base, **kw))
        return labs[-1]

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()
