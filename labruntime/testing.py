"""A fake RLMS for lab authors' own tests: it drives a lab the way WebLab-Deusto or LabsLand do.

::

    from labruntime.testing import FakeRLMS, serve_app

    def test_my_lab(app):
        rlms = FakeRLMS.for_app(app)                 # Flask test client, no network
        started = rlms.start({"code": "x"}, username="alice", assigned_time=60)
        client = rlms.client                         # the student's browser (cookies kept)
        assert client.get(started.url).status_code == 302
        assert rlms.status(started.session_id) > 0
        assert rlms.dispose(started.session_id)["message"] == "Deleted"

    def test_over_http(app):
        with serve_app(app, script_name="/lab1") as base_url:   # a real server on a free port
            rlms = FakeRLMS(base_url, "weblab", "password", style="labsland")
            ...

It fails loudly (:class:`ProtocolViolation`, an ``AssertionError``) where the real clients
break: a reply not served as ``application/json`` (LabsLand refuses it), a status other than
200, a falsy ``data`` in a dispose reply (WebLab-Deusto would resend dispose forever), a dispose
still asking to be called again after ``max_dispose_wait``. Pytest fixtures ``fake_rlms`` (test
client) and ``http_rlms`` (real HTTP) need an ``app`` fixture; ``throwaway_redis_url`` is a
Redis for the test session. Import the ones you use in your conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import importlib.metadata
import json
import logging
import selectors
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, Unpack

from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, make_server

from .errors import WebLabError

__all__ = [
    "FakeRLMS",
    "ProtocolViolation",
    "Reply",
    "Slot",
    "StartError",
    "StartedSession",
    "serve_app",
]

logger = logging.getLogger(__name__)
_WERKZEUG = tuple(int(p) for p in importlib.metadata.version("werkzeug").split(".")[:2])
_OLD_WERKZEUG = _WERKZEUG < (2, 3)  # its development server leaves unread bodies unread

_HTTPConnection = http.client.HTTPConnection
Style = Literal["weblabdeusto", "labsland"]
Encoding = Literal["json", "form", "api0"]


class ProtocolViolation(WebLabError, AssertionError):
    """The lab answered in a way the real RLMS client cannot handle."""


class StartError(WebLabError, RuntimeError):
    """The lab answered the start request with ``{"error": true, "message": ...}``."""

    def __init__(self, message: str, reply: dict[str, Any]) -> None:
        super().__init__(message)
        self.reply = reply


class Slot(TypedDict, total=False):
    """The student and the slot a start request describes (every key optional).

    ``start`` (default: now) is the slot start: one with ``microsecond=0`` gives
    WebLab-Deusto's short ``str(datetime)`` form. ``with_timestamp=False`` leaves out
    ``priority.queue.slot.start.timestamp`` so the lab must parse the start date.
    """

    username: str  # default "student"
    username_unique: str  # default "<username>@rlms.invalid"
    full_name: str  # LabsLand only: WebLab-Deusto sends the username here
    assigned_time: float  # seconds, default 300
    start: dt.datetime
    locale: str  # default "en"
    experiment_name: str  # default "lab"
    category_name: str  # default "Tests"
    style: Style  # default: the FakeRLMS's style
    with_timestamp: bool  # default True


@dataclass(frozen=True)
class StartedSession:
    """What the RLMS keeps from a start: the session id and the student's link."""

    session_id: str
    url: str


@dataclass
class Reply:
    """One HTTP reply as the RLMS saw it."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The JSON body; a ProtocolViolation unless it is served as application/json."""
        kind = self.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() != "application/json":
            raise ProtocolViolation(
                f"{self.method} {self.path} answered {self.status} with Content-Type {kind!r}, "
                f"not application/json (LabsLand refuses it): {self.body[:200]!r}"
            )
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ProtocolViolation(
                f"{self.method} {self.path}: invalid JSON {self.body!r}"
            ) from exc


class _HTTPTransport:
    """Real HTTP with the standard library (a new connection per call, like the real clients)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"FakeRLMS needs an http(s) base URL, got {base_url!r}")
        self.parts, self.timeout = parts, timeout

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        kind = {"https": http.client.HTTPSConnection}.get(self.parts.scheme, _HTTPConnection)
        conn = kind(self.parts.hostname or "", self.parts.port, timeout=self.timeout)
        try:
            conn.request(method, self.parts.path + path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            head = {key.lower(): value for key, value in response.getheaders()}
            return Reply(method, path, response.status, head, data)
        finally:
            conn.close()


class _FlaskTransport:
    """Flask's test client; ``script_name`` plays a WSGI SCRIPT_NAME, ``prefix`` a base URL."""

    def __init__(self, app: Flask, script_name: str, prefix: str) -> None:
        self.client = app.test_client()
        self.base_url = "http://localhost" + script_name.rstrip("/")
        self.prefix = prefix.rstrip("/")

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        response = self.client.open(
            self.prefix + path, method=method, data=body, headers=headers, base_url=self.base_url
        )
        head = {key.lower(): value for key, value in response.headers.items()}
        return Reply(method, path, response.status_code, head, response.get_data())


class FakeRLMS:
    """Speaks docs/protocol.md to one lab like WebLab-Deusto's HttpExperiment (or LabsLand).

    ``target`` is the URL the RLMS is configured with (everything before ``/weblab/sessions``)
    or a Flask app (then ``script_name`` and ``prefix`` place the lab, no network).
    """

    def __init__(
        self,
        target: str | Flask,
        username: str,
        password: str,
        *,
        style: Style = "weblabdeusto",
        script_name: str = "",
        prefix: str = "",
        timeout: float = 30.0,
        max_dispose_wait: float = 90.0,
    ) -> None:
        if style not in ("weblabdeusto", "labsland"):
            raise ValueError(f"style must be 'weblabdeusto' or 'labsland', not {style!r}")
        if isinstance(target, Flask):
            self._transport: _HTTPTransport | _FlaskTransport = _FlaskTransport(
                target, script_name, prefix
            )
        else:
            self._transport = _HTTPTransport(target, timeout)
        self.username, self.password = username, password
        self.style: Style = style
        self.max_dispose_wait = max_dispose_wait
        self.calls: list[Reply] = []

    @classmethod
    def for_app(cls, app: Flask, **kwargs: Any) -> FakeRLMS:
        """A fake RLMS on the app's test client, with the app's credentials and base URL."""
        kwargs.setdefault("prefix", _base_url(app))
        return cls(app, app.config["WEBLAB_USERNAME"], app.config["WEBLAB_PASSWORD"], **kwargs)

    @property
    def client(self) -> Any:
        """The Flask test client (the student's browser) when the target is an app."""
        if not isinstance(self._transport, _FlaskTransport):
            raise TypeError("FakeRLMS.client exists only for a Flask app target")
        return self._transport.client

    # -- the calls --------------------------------------------------------------------------

    def request(self, method: str, path: str, payload: Any = None, *, form: bool = False) -> Reply:
        """Send one call to ``<base>/weblab/sessions/<path>`` with the RLMS's credentials."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        body = None
        if payload is not None and form:
            body = urllib.parse.urlencode(payload).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        reply = self._transport.send(method, "/weblab/sessions/" + path, body, headers)
        self.calls.append(reply)
        logger.debug("fake RLMS %s %s -> %s %r", method, path, reply.status, reply.body[:200])
        return reply

    def _ok(self, method: str, path: str, payload: Any = None, **kwargs: Any) -> Any:
        reply = self.request(method, path, payload, **kwargs)
        if reply.status != 200:
            if reply.status == 401 and "www-authenticate" not in reply.headers:
                raise ProtocolViolation(f"{method} {path}: 401 without WWW-Authenticate")
            raise ProtocolViolation(
                f"{method} {path} answered HTTP {reply.status} (the RLMS client counts anything "
                f"but 200 as a transport error): {reply.body[:200]!r}"
            )
        return reply.json()

    def api(self) -> dict[str, Any]:
        """``GET /weblab/sessions/api``: ``{"api_version": "1"}``."""
        return self._ok("GET", "api")

    def test(self) -> dict[str, Any]:
        """``GET /weblab/sessions/test``: ``{"valid": true}``, or the 401's JSON body."""
        reply = self.request("GET", "test")
        if reply.status == 401 and "www-authenticate" not in reply.headers:
            raise ProtocolViolation("GET test: 401 without a WWW-Authenticate header")
        if reply.status not in (200, 401):
            raise ProtocolViolation(f"GET test answered HTTP {reply.status}: {reply.body[:200]!r}")
        return reply.json()

    def start(
        self,
        client_initial_data: dict[str, Any] | None = None,
        *,
        back: str = "http://rlms.invalid/back",
        encoding: Encoding = "json",
        **slot: Unpack[Slot],
    ) -> StartedSession:
        """Start a session the way the RLMS does; raise StartError when the lab refuses it.

        ``slot`` describes the student and the slot (:class:`Slot`: username, assigned_time,
        start, locale, style...). ``encoding`` "api0" sends both initial data as JSON strings,
        "form" as an urlencoded form (WebLab-Deusto's older forms).
        """
        options: Slot = {"style": self.style, **slot}
        server_data = self.server_initial_data(**options)
        client_data = client_initial_data or {}
        if encoding == "json":
            body: dict[str, Any] = {"client_initial_data": client_data}
            body["server_initial_data"] = server_data
        elif encoding in ("api0", "form"):
            body = {"client_initial_data": json.dumps(client_data)}
            body["server_initial_data"] = json.dumps(server_data)
        else:
            raise ValueError(f"encoding must be 'json', 'form' or 'api0', not {encoding!r}")
        body["back"] = back
        reply = self._ok("POST", "", body, form=encoding == "form")
        if not isinstance(reply, dict):
            raise ProtocolViolation(f"start answered {reply!r}, not a JSON object")
        if reply.get("error"):
            raise StartError(f"the lab refused the start: {reply.get('message')!r}", reply)
        if not reply.get("url") or not reply.get("session_id"):
            raise ProtocolViolation(f"start answered {reply!r}: 'url' and 'session_id' expected")
        return StartedSession(str(reply["session_id"]), str(reply["url"]))

    @staticmethod
    def server_initial_data(**slot: Unpack[Slot]) -> dict[str, Any]:
        """``server_initial_data`` in the exact forms of WebLab-Deusto or LabsLand."""
        username = slot.get("username", "student")
        assigned_time = slot.get("assigned_time", 300)
        full_name = slot.get("full_name") or username
        moment = (slot.get("start") or dt.datetime.now().astimezone()).astimezone()
        offset = moment.utcoffset() or dt.timedelta(0)
        unique = slot.get("username_unique") or f"{username}@rlms.invalid"
        data: dict[str, Any] = {
            "request.experiment_id.experiment_name": slot.get("experiment_name", "lab"),
            "request.experiment_id.category_name": slot.get("category_name", "Tests"),
            "request.username": username,
            "request.username.unique": unique,
            "request.locale": slot.get("locale", "en"),
            "weblab_reservation_id": uuid.uuid4().hex,
        }
        if slot.get("style", "weblabdeusto") == "labsland":
            data["priority.queue.slot.length"] = assigned_time
            data["priority.queue.slot.start"] = moment.isoformat()
            data["priority.queue.slot.start.timestamp"] = moment.timestamp()
            data["request.full_name"] = full_name
        else:
            length = assigned_time
            data["priority.queue.slot.length"] = str(
                int(length) if length == int(length) else length
            )
            data["priority.queue.slot.start"] = str(moment.replace(tzinfo=None))
            utc = moment.astimezone(dt.UTC).replace(tzinfo=None)
            data["priority.queue.slot.start.utc"] = str(utc)
            data["priority.queue.slot.start.timestamp"] = str(moment.timestamp())
            data["priority.queue.slot.start.timezone"] = str(int(offset.total_seconds()))
            data["priority.queue.slot.initialization_in_accounting"] = False
            data["request.full_name"] = username  # what WebLab-Deusto really sends here
        if not slot.get("with_timestamp", True):
            del data["priority.queue.slot.start.timestamp"]
        return data

    def status(self, session_id: str) -> int:
        """``should_finish`` of one session (-1 finish, 0 do not ask, N ask in N s)."""
        reply = self._ok("GET", f"{urllib.parse.quote(session_id, safe='')}/status")
        return self._should_finish(reply, "status")

    def bulk_status(self, session_ids: list[str], timeout: float | None = None) -> dict[str, int]:
        """``POST status/multiple``: ``{session_id: should_finish}`` for the ids answered."""
        payload: dict[str, Any] = {"session_ids": list(session_ids)}
        if timeout is not None:
            payload["timeout"] = timeout
        reply = self._ok("POST", "status/multiple", payload)
        if not isinstance(reply, dict) or not isinstance(reply.get("status"), dict):
            raise ProtocolViolation(f"status/multiple answered {reply!r}: 'status' object expected")
        return {
            sid: self._should_finish({"should_finish": value}, sid)
            for sid, value in reply["status"].items()
        }

    @staticmethod
    def _should_finish(reply: Any, what: str) -> int:
        value = reply.get("should_finish") if isinstance(reply, dict) else None
        return int(_number(value, f"{what}: should_finish in {reply!r}"))

    def dispose(self, session_id: str) -> dict[str, Any]:
        """Dispose as the client does, calling again while the lab asks; return the last reply."""
        path = urllib.parse.quote(session_id, safe="")
        deadline = time.monotonic() + self.max_dispose_wait
        while True:
            reply = self._ok("POST", path, {"action": "delete"})
            if not isinstance(reply, dict):
                raise ProtocolViolation(f"dispose answered {reply!r}, not a JSON object")
            if "data" in reply and not reply["data"]:
                raise ProtocolViolation(
                    f"dispose answered {reply!r}: a falsy 'data' makes WebLab-Deusto resend "
                    "dispose every 0.5 s forever"
                )
            again = self._dispose_again(reply)
            if again is None:
                return reply
            if time.monotonic() + again > deadline:
                raise ProtocolViolation(
                    f"dispose of {session_id} still asks to be called again after "
                    f"{self.max_dispose_wait:g} s (last reply {reply!r})"
                )
            time.sleep(again)

    def _dispose_again(self, reply: dict[str, Any]) -> float | None:
        """Seconds until the client calls dispose again, None when it considers it finished."""
        if self.style == "labsland":  # LabsLand: should_finish >= 0 means "call again"
            value = _number(reply.get("should_finish", -1), f"dispose: should_finish in {reply!r}")
            return None if value < 0 else max(value, 0.05)
        if reply.get("finished") is False and "ask_again" in reply:
            return max(_number(reply["ask_again"], f"dispose: ask_again in {reply!r}"), 0.05)
        return None


def _base_url(app: Flask) -> str:
    """The app's WEBLAB_BASE_URL (or WEBLAB_BASE), the path in front of /weblab/sessions."""
    return (app.config.get("WEBLAB_BASE_URL") or app.config.get("WEBLAB_BASE") or "").rstrip("/")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolViolation(f"{what} must be a number, got {value!r}")
    return float(value)


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to this module's logger at DEBUG, not to stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s -> %s", self.command, self.path, code)

    def run_wsgi(self) -> None:
        super().run_wsgi()
        if _OLD_WERKZEUG:  # Werkzeug >= 2.3 drains itself
            self._drain()

    def _drain(self) -> None:
        """Read what the client still sends of a body the app did not read (a refused huge
        upload), so it reads the reply (413) instead of a broken pipe (10 MB a pass)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            total = 0
            while total < 100_000_000 and selector.select(timeout=0.01):
                data = self.rfile.read1(10_000_000) if hasattr(self.rfile, "read1") else b""
                if not data:
                    break
                total += len(data)


@contextlib.contextmanager
def serve_app(
    app: Any, *, script_name: str | None = None, host: str = "127.0.0.1"
) -> Iterator[str]:
    """Serve a WSGI app on a free port in a thread; yield its base URL; shut it down after."""
    wsgi = app
    if script_name:
        script_name = "/" + script_name.strip("/")
        wsgi = DispatcherMiddleware(NotFound(), {script_name: app})
    server = make_server(host, 0, wsgi, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="labruntime-serve_app", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}{script_name or ''}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


try:  # fixtures for lab authors' tests, when pytest is installed
    import pytest
except ImportError:  # pragma: no cover - pytest is a test dependency only
    pass
else:

    @pytest.fixture
    def fake_rlms(app: Flask) -> FakeRLMS:
        """A WebLab-Deusto-like RLMS on the ``app`` fixture's test client."""
        return FakeRLMS.for_app(app)

    @pytest.fixture
    def http_rlms(app: Flask) -> Iterator[FakeRLMS]:
        """A WebLab-Deusto-like RLMS talking real HTTP to ``app`` served on a free port."""
        with serve_app(app) as base_url:
            config = app.config
            url = base_url + _base_url(app)
            yield FakeRLMS(url, config["WEBLAB_USERNAME"], config["WEBLAB_PASSWORD"])

    @pytest.fixture(scope="session")
    def throwaway_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        """A real Redis for the test session only (set WEBLAB_REDIS_URL to it), then stopped.

        Without it a lab under test uses its embedded Redis in the instance folder, which
        keeps the tests' sessions after they end.
        """
        from .store.embedded import EmbeddedRedis

        server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
        try:
            yield server.ensure_running()
        finally:
            server.stop()
