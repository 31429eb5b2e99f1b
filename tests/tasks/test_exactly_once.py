"""Exactly once under contention: 8 gunicorn workers with 2 runner threads each plus two
`loop` processes take 1000 tasks from 50 sessions; every task runs once and ends done."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests._helpers import wait_for
from tests._processes import stop_processes

HERE = Path(__file__).parent
SESSIONS, PER_SESSION = 50, 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_1000_tasks_run_exactly_once(lab_factory, redis_url, redis_base) -> None:
    lab = lab_factory(threads=0, start=False)
    sessions = [lab.start_session(f"user{i}") for i in range(SESSIONS)]
    port = _free_port()
    env = dict(os.environ, LAB_REDIS_URL=redis_url, LAB_REDIS_BASE=redis_base, LAB_THREADS="2")
    gunicorn = [sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-w", "8"]
    gunicorn += ["--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5", "labapp:app"]
    loop = [sys.executable, "-m", "flask", "--app", str(HERE / "labapp.py"), "loop"]
    loop_env = dict(env, LAB_THREADS="0")
    procs = [
        subprocess.Popen(gunicorn, env=env, stderr=subprocess.DEVNULL),
        subprocess.Popen([*loop, "--threads", "3"], env=loop_env, stdout=subprocess.DEVNULL),
        subprocess.Popen([*loop, "--threads", "3"], env=loop_env, stdout=subprocess.DEVNULL),
    ]
    try:
        wait_for(lambda: _listening(port), 20, f"gunicorn to listen on {port}")

        def enqueue(session_id: str) -> list[str]:
            url = f"http://127.0.0.1:{port}/test/enqueue/{session_id}/{PER_SESSION}"
            with urllib.request.urlopen(url, timeout=30) as reply:
                return json.loads(reply.read())

        with ThreadPoolExecutor(8) as pool:
            ids = [i for batch in pool.map(enqueue, sessions) for i in batch]
        assert len(set(ids)) == SESSIONS * PER_SESSION
        runs_key = f"{redis_base}:test:runs"
        deadline = time.monotonic() + 60
        while lab.redis.hlen(runs_key) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # a duplicate run, if any, would show up now
        runs = lab.redis.hgetall(runs_key)
        assert set(runs) == set(ids)
        assert {int(n) for n in runs.values()} == {1}
        with lab.app.app_context():
            store = lab.state.tasks.store
            for session_id in sessions:
                records = store.session_tasks(session_id)
                assert len(records) == PER_SESSION
                assert {r.status for r in records} == {"done"}
                assert store.unfinished_ids(session_id) == []
        workers = {r.worker for s in sessions for r in store.session_tasks(s)}
        assert len(workers) >= 3  # gunicorn workers and loop processes shared the work
    finally:
        stop_processes(procs)
