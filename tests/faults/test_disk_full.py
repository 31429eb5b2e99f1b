"""Redis out of disk (a small tmpfs): 503 JSON naming the cause, bounded worker logs, and
recovery by itself once there is space again. Needs root (to mount the tmpfs)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from labruntime.store.embedded import EmbeddedRedis
from tests._helpers import wait_for
from tests._labs import PASSWORD, USER

from .conftest import output


@pytest.fixture
def small_disk() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (run the suite as root to include it)")
    folder = Path(tempfile.mkdtemp(prefix="lr-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=30, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_disk_full_is_a_503_naming_the_folder_and_heals_by_itself(
    small_disk, base, spawn, lab_on
) -> None:
    server = EmbeddedRedis(small_disk / "redis")
    url = server.ensure_running()
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        lab = lab_on(url, base)
        worker = spawn("loop", "--threads", "2", url=url, base=base)
        wait_for(lambda: client.smembers(f"{base}:workers"), 30, "the worker to register")
        filler = _fill(small_disk)

        def misconf() -> bool:
            try:
                client.set(f"{base}:probe", "x" * 4096)
            except redis.ResponseError as error:
                return "MISCONF" in str(error)
            return False

        wait_for(misconf, 10, "Redis to refuse writes")
        full_at = time.monotonic()
        web = lab.app.test_client()
        auth = {
            "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        }
        start = {
            "client_initial_data": {},
            "server_initial_data": {},
            "back": "https://rlms.example/",
        }
        start["server_initial_data"] = {
            "request.username": "alice",
            "priority.queue.slot.length": 300,
            "priority.queue.slot.start": "2026-01-01 00:00:00",
        }
        replies = [
            web.post("/weblab/sessions/", json=start, headers=auth),
            web.post("/weblab/sessions/some-session", json={"action": "delete"}, headers=auth),
        ]
        for reply in replies:
            assert reply.status_code == 503, reply.data
            assert reply.is_json, reply.data
            text = str(reply.get_json())
            assert "Redis cannot write its data: disk full in" in text, text
            assert str(small_disk / "redis") in text, text
        time.sleep(5)  # the worker keeps running against a full disk meanwhile
        assert worker.poll() is None
        logs = output(worker)
        assert "Traceback" not in logs, logs
        lines = [line for line in logs.splitlines() if "disk full" in line]
        assert 1 <= len(lines) <= 6, logs  # one line per loop, then one per interval
        filler.unlink()
        freed_at = time.monotonic()
        wait_for(lambda: not misconf(), 15, "Redis to accept writes again")
        recovered = wait_for(
            lambda: web.post("/weblab/sessions/", json=start, headers=auth).status_code == 200,
            15,
            "the start to work again",
        )
        assert recovered
        print(
            f"full for {freed_at - full_at:.1f} s, {len(lines)} worker log line(s), "
            f"starts work again {time.monotonic() - freed_at:.2f} s after space returned"
        )
        wait_for(lambda: "Redis is reachable again" in output(worker), 15, "the worker's recovery")
    finally:
        client.close()
        server.stop()
