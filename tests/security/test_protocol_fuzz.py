"""A seeded protocol fuzz against a lab under real gunicorn (2 workers x 4 threads): a few
thousand hostile requests of every kind of issue 11, sent as raw bytes over sockets.

What must hold for every request:

- no 5xx, and an answer within a deadline (no hang);
- every reply the lab gives under ``/weblab/`` is JSON (replies gunicorn itself gives to bytes
  that are not HTTP, before the lab sees them, are only checked for no 5xx);
- no request without the RLMS's valid credentials is admitted to a protected RLMS route (a
  401 each time), and no session is started without them;
- no state change from another site: the lab's POST route is never reached cross-site, and a
  logout by ``GET`` (an ``<img>``) or from another site ends no session.

``FUZZ_SEED`` (environment) replays a run; ``FUZZ_REQUESTS`` and ``FUZZ_SECONDS`` bound it
(defaults 10,000 requests, 60 s, whichever comes first). The figures are printed (``-s``).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import wait_for
from tests._processes import stop_processes

HERE = Path(__file__).parent
S = "/weblab/sessions/"
USER = "rlms"
PASSWORD = "fuzz-rlms-password-" + uuid.uuid4().hex[:8]
GOOD_AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SEED = int(os.environ.get("FUZZ_SEED", "11"))
MAX_REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "10000"))
MAX_SECONDS = float(os.environ.get("FUZZ_SECONDS", "60"))
REQUEST_TIMEOUT = 20.0  # seconds for one exchange: longer is a hang
CLIENTS = 6
BACK = "https://rlms.example/back"
EVIL = "https://evil.example"


@dataclass
class Case:
    """One request and what its reply must be."""

    kind: str
    method: str
    path: str
    raw: bytes
    json_reply: bool = True  # the lab answers it, under /weblab/ or a JSON student route
    expect: Callable[[int], bool] = lambda status: status < 500
    admitted_only_with_credentials: bool = False  # a protected RLMS route, bad credentials
    half_close: bool = False  # shut our side after sending (a body the server may wait on)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Tally:
    kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    closed: int = 0  # connections gunicorn closed without a reply (garbage bytes only)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, case: Case, why: str) -> None:
        with self.lock:
            self.failures.append(f"[{case.kind}] {case.method} {case.path[:80]}: {why}")


# -- building raw requests ---------------------------------------------------------------------
def _raw(
    method: str,
    path: str,
    headers: list[tuple[str, bytes | str]] | None = None,
    body: bytes | None = None,
    *,
    chunked: bytes | None = None,
    port: int = 0,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode()]
    lines.append(b"Connection: close")
    for name, value in headers or []:
        lines.append(name.encode() + b": " + (value.encode() if isinstance(value, str) else value))
    if chunked is not None:
        lines.append(b"Transfer-Encoding: chunked")
        return b"\r\n".join(lines) + b"\r\n\r\n" + chunked
    if body is not None:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _server_data(rng: random.Random) -> dict[str, Any]:
    return {
        "priority.queue.slot.length": str(rng.choice([60, 300, 600])),
        "request.username": f"student{rng.randrange(1000)}",
        "request.username.unique": f"s{rng.randrange(1000)}@uni",
        "request.full_name": "Student",
        "request.locale": rng.choice(["es", "en"]),
    }


def _start_body(rng: random.Random, **fields: Any) -> bytes:
    body = {"client_initial_data": {}, "server_initial_data": _server_data(rng), "back": BACK}
    body.update(fields)
    return json.dumps(body).encode()


def _bad_auth(rng: random.Random) -> bytes | None:
    b64 = lambda data: base64.b64encode(data)  # noqa: E731
    right = f"{USER}:{PASSWORD}".encode()
    return rng.choice(
        [
            None,
            b"",
            b"Basic",
            b"Basic \xe9\xe9",
            b"Basic " + bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(1, 30))),
            b"Basic " + b64(f"{USER}:wrong-{rng.randrange(10**6)}".encode()),
            b"Basic " + b64(f"intruder:{PASSWORD}".encode()),
            b"Basic " + b64(right + b"x"),
            b"Basic " + b64(right)[:-3],
            b"Basic " + b64(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))),
            b"Basic " + b64(b"\xe9\xe9:" + PASSWORD.encode()),
            b"Basic " + b64(USER.encode() + b":" + PASSWORD.encode()[:-1] + b"\xe9"),
            f'Digest username="{USER}", password="{PASSWORD}"'.encode(),
            f'Digest username="{USER}", realm="labruntime", response="x"'.encode(),
            b"Bearer " + b64(right),
            b"Basic " + b"A" * rng.choice([100, 3000]),
            b"Basic " + b64(b"no-colon-here"),
            b"Negotiate " + b64(right),
        ]
    )


def _deep(depth: int) -> bytes:
    """JSON text nested ``depth`` deep (lists or objects), built as text."""
    if depth % 2:
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"{}" + b"}" * depth


HOSTILE_BACKS = [
    "javascript:alert(document.cookie)",
    "JAVASCRIPT:alert(1)",
    " javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=",
    "vbscript:msgbox(1)",
    "//evil.example/x",
    "/relative",
    "evil.example",
    "http:evil.example",
    "https:/evil.example",
    "http://",
    "ftp://rlms.example/back",
    "http://rlms.example/\r\nSet-Cookie: x=1",
    "http://rlms.example/\nLocation: //evil",
    "http://rlms.example/\x00",
    "http://rlms.example/\x7f",
    "http://rlms.example/\u2028",
    "http://rlms.example/\u202egnp.exe",
    "http://rlms.example/a b",
    "http:\\\\evil.example",
    "http://[::1",
    "https://" + "a" * 5000,
]


class Fuzzer:
    """Builds the seeded cases; needs the port and the student cookies made beforehand."""

    def __init__(self, rng: random.Random, port: int, students: list[tuple[str, str]]) -> None:
        self.rng = rng
        self.port = port
        self.students = students  # (session id, cookie header value)

    def raw(self, *args: Any, **kwargs: Any) -> bytes:
        return _raw(*args, port=self.port, **kwargs)

    def case(self) -> Case:
        kinds: list[tuple[Callable[[], Case], int]] = [
            (self.auth, 24),
            (self.body, 16),
            (self.chunked, 9),
            (self.multipart, 6),
            (self.back, 8),
            (self.depth, 5),
            (self.method_path, 12),
            (self.student, 15),
            (self.garbage, 5),
        ]
        make = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return make()

    # -- the RLMS's routes ------------------------------------------------------------------
    def auth(self) -> Case:
        rng = self.rng
        method, path, body = rng.choice(
            [
                ("GET", S + "test", None),
                ("POST", S, _start_body(rng)),
                ("POST", S.rstrip("/"), _start_body(rng)),
                ("GET", S + "some-id/status", None),
                ("POST", S + "some-id", b'{"action": "delete"}'),
                ("POST", S + "status/multiple", b'{"session_ids": ["a", "b"]}'),
            ]
        )
        header = _bad_auth(rng)
        headers: list[tuple[str, bytes | str]] = [("Content-Type", "application/json")]
        if header is not None:
            headers.append(("Authorization", header))
        return Case(
            "auth",
            method,
            path,
            self.raw(method, path, headers, body),
            expect=lambda status: status == 401,
            admitted_only_with_credentials=True,
        )

    def _authed(self, kind: str, method: str, path: str, body: bytes, **kw: Any) -> Case:
        content_type = kw.pop("content_type", "application/json")
        headers = [("Authorization", GOOD_AUTH), ("Content-Type", content_type)]
        return Case(kind, method, path, self.raw(method, path, headers, body), **kw)

    def body(self) -> Case:
        rng = self.rng
        path = rng.choice([S, S + "status/multiple", S + "some-id", S.rstrip("/")])
        valid = _start_body(rng)
        body = rng.choice(
            [
                b"",
                bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))),
                valid[: rng.randrange(1, len(valid))],
                b"\xff\xfe" + valid,
                json.dumps(rng.choice([[], 1, "x", None, True, 1e308, {"a": [1, {}]}])).encode(),
                b'{"server_initial_data": ' + _deep(rng.randrange(2, 3000)) + b"}",
                b'{"session_ids": ' + _deep(rng.randrange(2, 3000)) + b"}",
                json.dumps({"session_ids": [rng.random() for _ in range(5)]}).encode(),
                json.dumps({"session_ids": ["x" * 100] * rng.randrange(1, 700)}).encode(),
                json.dumps({"action": rng.choice(["delete", ["delete"], {"a": 1}, None])}).encode(),
                _start_body(rng, client_initial_data=rng.choice(["{x", "[]", 5, "null", '"s"'])),
                _start_body(
                    rng,
                    server_initial_data={
                        "priority.queue.slot.length": rng.choice(
                            ["nan", "inf", "-1", 1e308, [], {}, "", "1e999"]
                        ),
                        "priority.queue.slot.start": rng.choice(["soon", "2026-13-45", 5, []]),
                        "priority.queue.slot.start.timestamp": rng.choice([None, "nan", 1e20]),
                    },
                ),
            ]
        )
        content_type = rng.choice(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", "x/y"]
        )
        return self._authed("body", "POST", path, body, content_type=content_type)

    def chunked(self) -> Case:
        rng = self.rng
        valid = _start_body(rng)
        good = b"%x\r\n%s\r\n0\r\n\r\n" % (len(valid), valid)
        bad = [
            b"zz\r\n{}\r\n0\r\n\r\n",
            b"-1\r\n{}\r\n0\r\n\r\n",
            b"0x10\r\n{}\r\n0\r\n\r\n",
            b"1 2\r\n{}\r\n0\r\n\r\n",
            b"ffffffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
            b"5\r\n{}\r\n0\r\n\r\n",
            b"2\r\n{}XX0\r\n\r\n",
            b"2;ext=\xff\r\n{}\r\n0\r\n\r\n",
            b"\r\n\r\n",
            b"2\r\n{}\r\n",  # no last chunk: we close our side
        ]
        is_good = rng.random() < 0.15
        stream = good if is_good else rng.choice(bad)
        headers = [("Authorization", GOOD_AUTH), ("Content-Type", "application/json")]
        raw = self.raw("POST", S, headers, chunked=stream)
        return Case(
            "chunked",
            "POST",
            S,
            raw,
            expect=(lambda s: s == 200) if is_good else (lambda s: 400 <= s < 500),
            half_close=True,
        )

    def multipart(self) -> Case:
        rng = self.rng
        boundary = "b" + uuid.UUID(int=rng.getrandbits(128)).hex
        choice = rng.randrange(4)
        if choice == 0:  # a field over Werkzeug's 500 kB
            fields = [("client_initial_data", b"a" * rng.randrange(520_000, 900_000))]
        elif choice == 1:  # more than 1,000 parts
            fields = [(f"f{i}", b"1") for i in range(rng.randrange(1_001, 1_500))]
        elif choice == 2:  # a normal form start
            fields = [
                ("server_initial_data", json.dumps(_server_data(rng)).encode()),
                ("back", BACK.encode()),
            ]
        else:  # a broken multipart body
            fields = [("x", bytes(rng.randrange(256) for _ in range(200)))]
            boundary = "--" + boundary
        body = b"".join(
            b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
            % (boundary.encode(), name.encode(), value)
            for name, value in fields
        ) + (b"--%s--\r\n" % boundary.encode() if choice != 3 else b"--trunc")
        expect: Callable[[int], bool] = {
            0: lambda s: s == 413,
            1: lambda s: s == 413,
            2: lambda s: s == 200,
        }.get(choice, lambda s: s < 500)
        return self._authed(
            "multipart",
            "POST",
            S,
            body,
            content_type=f"multipart/form-data; boundary={boundary}",
            expect=expect,
        )

    def back(self) -> Case:
        rng = self.rng
        if rng.random() < 0.3:  # a good URL with a control character somewhere
            url = list(BACK)
            url.insert(rng.randrange(8, len(url)), chr(rng.choice([0, 9, 10, 13, 27, 127])))
            back: Any = "".join(url)
        else:
            back = rng.choice(HOSTILE_BACKS + [{"a": 1}, [BACK], 5, True])
        return self._authed(
            "back", "POST", S, _start_body(rng, back=back), expect=lambda s: s == 400
        )

    def depth(self) -> Case:
        rng = self.rng
        depth = rng.choice([rng.randrange(1, 101), rng.randrange(101, 900)])
        field_name = rng.choice(["client_initial_data", "server_initial_data"])
        nested = '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)
        if field_name == "server_initial_data":
            sd = json.dumps(_server_data(rng))[:-1] + ', "deep": ' + nested + "}"
            body = '{"client_initial_data": {}, "server_initial_data": ' + sd
        else:
            sd = json.dumps(_server_data(rng))
            body = '{"client_initial_data": ' + nested + ', "server_initial_data": ' + sd
        body += f', "back": "{BACK}"}}'
        too_deep = depth + (1 if field_name == "server_initial_data" else 0) > 100
        return self._authed(
            "depth",
            "POST",
            S,
            body.encode(),
            expect=(lambda s: s == 400) if too_deep else (lambda s: s == 200),
        )

    def method_path(self) -> Case:
        rng = self.rng
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"])
        path = rng.choice(
            [
                "/weblab/",
                "/weblab/sessions",
                S,
                S + "api",
                S + "api/",
                S + "test/",
                S + "status",
                S + "status/multiple/",
                S + "x/y/z",
                S + "%FF%FE/status",
                S + "%E2%9C%93%20%3C%3E",
                S + "a" * rng.choice([100, 3000]),
                S + "x/status?next=/api",
                "/weblab/other",
                "/weblab/sessions/..%2ftest",
                S + "api/../test",
            ]
        )
        headers: list[tuple[str, bytes | str]] = []
        if rng.random() < 0.6:
            headers.append(("Authorization", GOOD_AUTH))
        body = b'{"action": "delete"}' if method in ("POST", "PUT", "PATCH") else None
        return Case("method/path", method, path, self.raw(method, path, headers, body))

    # -- the student's routes ----------------------------------------------------------------
    def student(self) -> Case:
        rng = self.rng
        session_id, cookie = rng.choice(self.students)
        other_id, _ = rng.choice(self.students)
        garbage_cookie = "session=" + rng.choice(
            ["x", "a" * 3000, "eyJ3ZWJsYWJfc2Vzc2lvbl9pZCI6ImEifQ.bad.sig", "%01%02;;=="]
        )
        jar = rng.choice([cookie, cookie, garbage_cookie, ""])
        evil = rng.choice(
            [
                [("Origin", EVIL)],
                [("Origin", "null")],
                [("Sec-Fetch-Site", "cross-site")],
                [("Sec-Fetch-Site", "same-site"), ("Origin", EVIL)],
                [("Referer", EVIL + "/page")],
                [("Origin", "http://127.0.0.1.evil.example")],
            ]
        )
        own = [("Origin", f"http://127.0.0.1:{self.port}"), ("Sec-Fetch-Site", "same-origin")]
        cookie_header: list[tuple[str, bytes | str]] = [("Cookie", jar)] if jar else []
        choice = rng.randrange(8)
        if choice == 0:
            path = rng.choice([f"/callback/{other_id}", f"/callback/{uuid.uuid4().hex}"])
            return Case("student", "GET", path, self.raw("GET", path, cookie_header), False)
        if choice == 1:
            method, path = rng.choice(["GET", "POST"]), f"/callback/{session_id}/poll"
            raw = self.raw(method, path, cookie_header, b"" if method == "POST" else None)
            return Case("student", method, path, raw, True)
        if choice == 2:  # an <img> logout, or a page of another site posting one
            path = f"/callback/{session_id}/logout"
            if rng.random() < 0.5:
                raw = self.raw("GET", path, cookie_header)
                return Case("student", "GET", path, raw, True, expect=lambda s: s == 405)
            raw = self.raw("POST", path, cookie_header + evil, b"")
            return Case("student", "POST", path, raw, False, expect=lambda s: s == 403)
        if choice == 3:  # another site's form posting to the lab
            raw = self.raw("POST", "/lab/change", cookie_header + evil, b"x=1")
            return Case("student", "POST", "/lab/change", raw, False, expect=lambda s: s == 403)
        if choice == 4:  # another site confirming a session switch for the student
            path = f"/callback/{other_id}"
            raw = self.raw("POST", path, cookie_header + evil, b"")
            return Case("student", "POST", path, raw, False, expect=lambda s: s == 403)
        if choice == 5:  # the lab's own page
            raw = self.raw("POST", "/lab/change", cookie_header + own, b"x=1")
            return Case("student", "POST", "/lab/change", raw, False)
        method = rng.choice(["GET", "POST", "PUT", "DELETE"])
        path = rng.choice(["/lab/", "/", "/callback/", "/callback/%FF", "/lab/change"])
        body = b"" if method != "GET" else None
        raw = self.raw(method, path, cookie_header + rng.choice([own, evil, []]), body)
        return Case("student", method, path, raw, False)

    def garbage(self) -> Case:
        rng = self.rng
        raw = rng.choice(
            [
                bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) + b"\r\n\r\n",
                b"GET " + b"/weblab/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /weblab/sessions/test HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
                b"POST /weblab/sessions/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                b"GET /weblab/sessions/test HTTP/9.9\r\nHost: x\r\n\r\n",
                b"GET /weblab/sessions/test\r\n\r\n",
                b"\r\n\r\n",
            ]
        )
        return Case("garbage", "?", "(raw)", raw, False, half_close=True)


# -- sending -------------------------------------------------------------------------------------
def exchange(port: int, case: Case) -> Reply | None:
    """Send the case's bytes, read the whole reply; None if the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        try:
            sock.sendall(case.raw)
            if case.half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before reading it all
        reply = http.client.HTTPResponse(sock, method=case.method)
        try:
            reply.begin()
            body = reply.read()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None
        except http.client.IncompleteRead as error:
            body = error.partial
        finally:
            reply.close()
        return Reply(reply.status, {k.lower(): v for k, v in reply.getheaders()}, body)


def check(case: Case, reply: Reply | None, tally: Tally) -> None:
    if reply is None:
        if case.kind == "garbage":
            with tally.lock:
                tally.closed += 1
            return
        tally.fail(case, "connection closed without a reply")
        return
    with tally.lock:
        tally.statuses[reply.status] += 1
    if reply.status >= 500:
        tally.fail(case, f"HTTP {reply.status}: {reply.body[:200]!r}")
        return
    if not case.expect(reply.status):
        tally.fail(case, f"unexpected HTTP {reply.status}: {reply.body[:200]!r}")
    if case.admitted_only_with_credentials and reply.status != 401:
        tally.fail(case, f"admitted without valid credentials: HTTP {reply.status}")
    if b"session_id" in reply.body and case.admitted_only_with_credentials:
        tally.fail(case, "a session started without valid credentials")
    if case.json_reply or case.path.startswith("/weblab/"):
        kind = reply.headers.get("content-type", "").split(";")[0]
        if kind != "application/json":
            tally.fail(case, f"HTTP {reply.status} {kind or 'no type'}: {reply.body[:120]!r}")
        elif case.method != "HEAD":
            try:
                json.loads(reply.body)
            except ValueError:
                tally.fail(case, f"body is not JSON: {reply.body[:120]!r}")


# -- the served lab -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", S + "api")
        reply = conn.getresponse()
        reply.read()
        return reply.status == 200
    except OSError:
        return False
    finally:
        conn.close()


@pytest.fixture
def gunicorn_lab(tmp_path: Path, redis_url: str, redis_base: str) -> Iterator[tuple[int, Path]]:
    """The fuzz lab under gunicorn, 2 workers x 4 threads: (port, log of state changes)."""
    port = _free_port()
    log = tmp_path / "changes.log"
    log.touch()
    env = {
        **os.environ,
        "FUZZ_INSTANCE": str(tmp_path / "instance"),
        "FUZZ_SECRET": uuid.uuid4().hex,
        "FUZZ_PASSWORD": PASSWORD,
        "FUZZ_REDIS_URL": redis_url,
        "FUZZ_REDIS_BASE": redis_base,
        "FUZZ_LOG": str(log),
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with open(tmp_path / "gunicorn.log", "wb") as stderr:
        server = subprocess.Popen(
            [
                str(gunicorn),
                "--workers", "2", "--worker-class", "gthread", "--threads", "4",
                "--timeout", "60", "--graceful-timeout", "5",
                "--bind", f"127.0.0.1:{port}", "--chdir", str(HERE), "fuzz_lab:app",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip
    try:
        wait_for(lambda: _answers(port), 30, "gunicorn serving the fuzz lab", interval=0.1)
        yield port, log
    finally:
        stop_processes([server])
    errors = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert "Traceback" not in errors, errors[-3000:]


def _student(port: int, rng: random.Random) -> tuple[str, str]:
    """A session started with the right credentials and entered: (id, cookie header)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        headers = {"Authorization": GOOD_AUTH, "Content-Type": "application/json"}
        conn.request("POST", S, body=_start_body(rng), headers=headers)
        reply = conn.getresponse()
        session_id = json.loads(reply.read())["session_id"]
        conn.request("GET", f"/callback/{session_id}")
        entered = conn.getresponse()
        entered.read()
        assert entered.status == 302, entered.status
        cookie = entered.getheader("Set-Cookie", "").split(";")[0]
        assert cookie, "the callback set no cookie"
        return session_id, cookie
    finally:
        conn.close()


def _still_active(port: int, cookie: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", "/lab/", headers={"Cookie": cookie})
        reply = conn.getresponse()
        reply.read()
        return reply.status == 200
    finally:
        conn.close()


@pytest.mark.slow
def test_seeded_protocol_fuzz_under_gunicorn(gunicorn_lab: tuple[int, Path]) -> None:
    port, change_log = gunicorn_lab
    rng = random.Random(SEED)
    students = [_student(port, rng) for _ in range(4)]
    fuzzer = Fuzzer(rng, port, students)
    cases = [fuzzer.case() for _ in range(MAX_REQUESTS)]  # built first: the seed decides all
    tally = Tally()
    deadline = time.monotonic() + MAX_SECONDS
    sent = 0
    began = time.monotonic()

    def run(case: Case) -> None:
        if time.monotonic() > deadline:
            return
        with tally.lock:
            tally.kinds[case.kind] += 1
        try:
            reply = exchange(port, case)
        except TimeoutError:
            tally.fail(case, f"no reply within {REQUEST_TIMEOUT:g} s (a hang)")
            return
        check(case, reply, tally)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(run, cases))
    sent = sum(tally.kinds.values())
    elapsed = time.monotonic() - began
    print(
        f"\nprotocol fuzz (seed {SEED}): {sent} requests in {elapsed:.1f} s; "
        f"5xx: {sum(n for s, n in tally.statuses.items() if s >= 500)}; "
        f"closed by gunicorn without reply (garbage bytes): {tally.closed}; "
        f"kinds {dict(tally.kinds)}; statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert not tally.failures, f"{len(tally.failures)} failures:\n" + "\n".join(tally.failures[:25])
    assert sent >= min(MAX_REQUESTS, 500), f"only {sent} requests ran: the fuzz proved little"
    assert all(_still_active(port, cookie) for _, cookie in students), (
        "a GET or cross-site logout ended a student's session"
    )
    own = {f"http://127.0.0.1:{port}", "-"}  # "-": no such header (not a browser)
    changes = [line.split() for line in change_log.read_text().splitlines()]
    cross_site = [c for c in changes if c[1] not in own or c[2] not in ("same-origin", "-")]
    assert changes and not cross_site, cross_site[:5]
