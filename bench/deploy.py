"""A deployed benchmark lab (bench/lab_app.py): gunicorn web workers, the separate task worker,
students who got their cookie through the RLMS's link, and the wrk load generator.

Everything listens on 127.0.0.1 and lives as long as its ``with`` block.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import HERE, children, cpu_ms, labruntime_cli, library, side_environment, side_python
from session_workload import HEADERS, start_body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(side: str, url: str, base: str, **extra: str) -> dict[str, str]:
    return {
        **side_environment(side),
        "BENCH_SIDE": library(side),
        "BENCH_REDIS_URL": url,
        "BENCH_REDIS_BASE": base,
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        **extra,
    }


class _Process:
    """A subprocess in its own process group, stopped with SIGTERM (then SIGKILL)."""

    process: subprocess.Popen[bytes]

    def _start(self, command: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command, cwd=HERE, env=env, stdout=self.log, stderr=self.log, start_new_session=True
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def cpu_ms(self) -> float:
        return sum(cpu_ms(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Gunicorn(_Process):
    """``side``'s lab under gunicorn, 2 workers x 4 threads (config/gunicorn.conf.py)."""

    def __init__(self, side: str, url: str, base: str, workers: int = 2, threads: int = 4,
                 **env: str) -> None:  # fmt: skip
        self.side = side
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = [side_python(side), "-m", "gunicorn", "-b", f"127.0.0.1:{self.port}"]
        command += ["-w", str(workers), "-k", "gthread", "--threads", str(threads)]
        command += ["--keep-alive", "5", "--log-level", "warning", "lab_app:app"]
        self._start(command, _environment(side, url, base, **env))
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn ({self.side}) exited:\n{self.output()}")
            try:
                if self.get("/bare")[0] == 200 and len(self.worker_pids()) >= 2:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn ({self.side}) did not answer:\n{self.output()}")

    def worker_pids(self) -> list[int]:
        return children(self.process.pid)

    def get(self, path: str, cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
            reply = connection.getresponse()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
        finally:
            connection.close()

    def start_student(self, number: int, assigned_time: float = 3600) -> str:
        """Start a session as the RLMS does, follow the link as the student; their cookie."""
        body = start_body(number)
        body["server_initial_data"]["priority.queue.slot.length"] = str(assigned_time)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(
                "POST",
                "/weblab/sessions/",
                body=json.dumps(body),
                headers={**HEADERS, "Content-Type": "application/json"},
            )
            reply = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        link = reply["url"].split("://", 1)[-1]
        path = link[link.index("/") :] if "/" in link else "/"
        status, headers, _ = self.get(path)
        if status not in (301, 302) or "set-cookie" not in headers:
            raise RuntimeError(f"{self.side}: the student's link gave {status} {headers}")
        cookie = headers["set-cookie"].split(";", 1)[0]
        status, _, text = self.get("/lab/read", cookie)
        if status != 200:
            raise RuntimeError(f"{self.side}: the student view gave {status}: {text[:200]!r}")
        return cookie


class LoopWorker(_Process):
    """The lab's separate task worker: ``labruntime --app lab_app:app loop`` or weblablib's
    ``flask --app lab_app:app weblab loop``."""

    def __init__(self, side: str, url: str, base: str, threads: int = 5, **env: str) -> None:
        if library(side) == "labruntime":
            command = [*labruntime_cli(side_environment(side)), "--app", "lab_app:app", "loop"]
        else:
            flask = str(Path(side_python(side)).with_name("flask"))
            command = [flask, "--app", "lab_app:app", "weblab", "loop", "--no-reload"]
        command += ["--threads", str(threads)]
        self._start(command, _environment(side, url, base, **env))
        time.sleep(0.2)
        if self.process.poll() is not None:
            raise RuntimeError(f"{side} loop worker exited:\n{self.output()}")


# -- wrk ----------------------------------------------------------------------------------
_WRK_SCRIPT = """
local cookies = {}
for line in io.lines(os.getenv("BENCH_COOKIES")) do cookies[#cookies + 1] = line end
local path = os.getenv("BENCH_PATH")
local n = math.random(#cookies)
request = function()
  n = n % #cookies + 1
  return wrk.format("GET", path, {["Cookie"] = cookies[n]})
end
"""


def wrk_path() -> str:
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError(
            "wrk is not installed: apt-get install wrk (Debian/Raspberry Pi OS package), "
            "or skip the HTTP figures with BENCH_SKIP_HTTP=1"
        )
    return path


def wrk(base_url: str, path: str, cookies: list[str], seconds: float, connections: int):
    """Run wrk (2 threads, ``connections`` keep-alive connections, each request with the next
    student's cookie); {requests, requests_per_s, p50_ms, errors}."""
    with tempfile.TemporaryDirectory(prefix="lrwrk") as tmp:
        script = Path(tmp) / "students.lua"
        script.write_text(_WRK_SCRIPT)
        jar = Path(tmp) / "cookies.txt"
        jar.write_text("\n".join(cookies) + "\n")
        command = [wrk_path(), "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--latency"]
        command += ["-s", str(script), base_url]
        env = {**os.environ, "BENCH_COOKIES": str(jar), "BENCH_PATH": path}
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=True
        )
    text = done.stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    p50 = re.search(r"\s50%\s+([\d.]+)(us|ms|s)\b", text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests": requests,
        "requests_per_s": rate,
        "p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else 0.0,
        "errors": (int(bad.group(1)) if bad else 0)
        + (sum(int(x) for x in errors.groups()) if errors else 0),
    }
