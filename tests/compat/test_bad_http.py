"""Bad input on the RLMS endpoints, over real HTTP: never a 500, never a traceback.

Each request is sent with the RLMS's valid credentials (so the body, not the password, is
what is wrong) unless the case is about the credentials.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
import uuid

import pytest
import redis

from labruntime.testing import FakeRLMS, serve_app

from .conftest import RLMS_PASSWORD, RLMS_USER, ServedLab, forget_lab, import_lab

AUTH = "Basic " + base64.b64encode(f"{RLMS_USER}:{RLMS_PASSWORD}".encode()).decode()
JSON = "application/json"


def _server_data(**extra):
    data = {
        "priority.queue.slot.length": "300",
        "request.username": "ana",
        "request.username.unique": "ana@uni",
        "request.full_name": "ana",
        "request.locale": "es",
        "request.experiment_id.experiment_name": "lab",
        "request.experiment_id.category_name": "Tests",
    }
    data.update(extra)
    return data


def _start(**extra):
    return json.dumps({"server_initial_data": _server_data(**extra), "back": "http://b"}).encode()


def _send(base_url, method, path, body=None, content_type=JSON, auth=AUTH):
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": content_type} if body is not None else {}
    if auth is not None:
        headers["Authorization"] = auth
    try:
        conn.request(method, parts.path + path, body=body, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type") or "", reply.read()
    finally:
        conn.close()


def _assert_clean(status, kind, body, *, json_reply=True):
    assert status < 500, (status, body[:300])
    assert b"Traceback" not in body and b"Internal Server Error" not in body, body[:300]
    if json_reply:
        assert kind.split(";")[0] == JSON, (status, kind, body[:200])
        json.loads(body)


@pytest.fixture(scope="module")
def lab(redis_url, tmp_path_factory):
    """One served minimal lab for the whole module (starting a server per case is slow)."""
    base = f"fuzz{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAB_REDIS_URL", redis_url)
        env.setenv("LAB_REDIS_BASE", base)
        env.setenv("LAB_INSTANCE", str(tmp_path_factory.mktemp("fuzz")))
        env.setenv("LAB_SECRET", uuid.uuid4().hex)
        module = import_lab("minimal_lab")
    with serve_app(module.app) as base_url:
        yield ServedLab(module, base_url, FakeRLMS(base_url, RLMS_USER, RLMS_PASSWORD))
    module.weblab.shutdown(module.app)
    forget_lab(module)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{base}:*"))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


S = "/weblab/sessions/"

# (label, method, path, body, content type) -> a JSON reply under 500
WRONG_BODIES = [
    ("start: empty body", "POST", S, b"", JSON),
    ("start: not JSON", "POST", S, b"{nope", JSON),
    ("start: non-UTF-8", "POST", S, b"\xff\xfe\x00{\x80", JSON),
    ("start: a JSON list", "POST", S, b"[1, 2]", JSON),
    ("start: a JSON string", "POST", S, b'"start"', JSON),
    ("start: server data a list", "POST", S, b'{"server_initial_data": [1]}', JSON),
    ("start: client data a number", "POST", S,
     _start()[:-1] + b', "client_initial_data": 5}', JSON),
    ("start: client data bad JSON text", "POST", S,
     json.dumps({"server_initial_data": _server_data(), "client_initial_data": "{x"}).encode(),
     JSON),
    ("start: length missing", "POST", S,
     json.dumps({"server_initial_data": {"request.username": "a"}}).encode(), JSON),
    ("start: length text", "POST", S, _start(**{"priority.queue.slot.length": "long"}), JSON),
    ("start: length negative", "POST", S, _start(**{"priority.queue.slot.length": -5}), JSON),
    ("start: length an object", "POST", S, _start(**{"priority.queue.slot.length": {}}), JSON),
    ("start: start date garbage", "POST", S, _start(**{"priority.queue.slot.start": "soon"}), JSON),
    ("start: timestamp a list", "POST", S,
     _start(**{"priority.queue.slot.start.timestamp": [1]}), JSON),
    ("start: username an object", "POST", S, _start(**{"request.username": {"a": 1}}), JSON),
    ("start: back an object", "POST", S,
     json.dumps({"server_initial_data": _server_data(), "back": {"a": 1}}).encode(), JSON),
    ("start: form, bad JSON fields", "POST", S, b"server_initial_data=%7Bx&client_initial_data=1",
     "application/x-www-form-urlencoded"),
    ("bulk: empty body", "POST", S + "status/multiple", b"", JSON),
    ("bulk: ids a string", "POST", S + "status/multiple", b'{"session_ids": "abc"}', JSON),
    ("bulk: ids numbers", "POST", S + "status/multiple", b'{"session_ids": [1, 2]}', JSON),
    ("bulk: timeout text", "POST", S + "status/multiple",
     b'{"session_ids": ["a"], "timeout": "x"}', JSON),
    ("bulk: non-UTF-8", "POST", S + "status/multiple", b"\xff\xfe", JSON),
    ("bulk: a JSON list", "POST", S + "status/multiple", b"[]", JSON),
    ("dispose: empty body", "POST", S + "unknown-id", b"", JSON),
    ("dispose: a JSON list", "POST", S + "unknown-id", b'["delete"]', JSON),
    ("dispose: action a list", "POST", S + "unknown-id", b'{"action": ["delete"]}', JSON),
    ("dispose: action an object", "POST", S + "unknown-id", b'{"action": {"a": 1}}', JSON),
    ("dispose: non-UTF-8", "POST", S + "unknown-id", b"\xff\xfe", JSON),
    ("dispose: unknown id", "POST", S + "unknown-id", b'{"action": "delete"}', JSON),
    ("dispose: very long id", "POST", S + "x" * 20000, b'{"action": "delete"}', JSON),
    ("status: unknown id", "GET", S + "unknown-id/status", None, JSON),
    ("status: very long id", "GET", S + "y" * 20000 + "/status", None, JSON),
    ("status: odd characters", "GET", S + "%E2%9C%93%20%3C%3E/status", None, JSON),
]  # fmt: skip


@pytest.mark.parametrize(
    "label,method,path,body,kind", WRONG_BODIES, ids=[case[0] for case in WRONG_BODIES]
)
def test_wrong_bodies_get_a_clean_json_reply(lab, label, method, path, body, kind):
    _assert_clean(*_send(lab.base_url, method, path, body, kind))


def test_huge_bodies_are_refused_or_handled_cleanly(lab):
    huge = b'{"client_initial_data": {"x": "' + b"a" * 30_000_000 + b'"}}'
    for path in (S, S + "status/multiple", S + "some-id"):
        status, kind, body = _send(lab.base_url, "POST", path, huge)
        assert status < 500 and b"Traceback" not in body, (path, status, body[:200])


@pytest.mark.parametrize(
    "method,path",
    [("GET", S), ("PUT", S), ("DELETE", S + "abc"), ("GET", S + "abc"),
     ("POST", S + "abc/status"), ("GET", S + "status/multiple"), ("PATCH", S + "test")],
)  # fmt: skip
def test_wrong_methods_are_4xx_not_500(lab, method, path):
    status, _, body = _send(lab.base_url, method, path)
    assert 400 <= status < 500, (status, body[:200])
    assert b"Traceback" not in body


@pytest.mark.parametrize(
    "auth",
    [None, "Basic ###", "Bearer token", "Basic " + "A" * 20000,
     "Basic " + base64.b64encode("weblabdeusto:sécret".encode()).decode(),
     "Basic " + base64.b64encode(b"weblabdeusto:s\xe9cret").decode(),
     "Basic " + base64.b64encode(b"no-colon").decode()],
)  # fmt: skip
def test_bad_credentials_get_401_json(lab, auth):
    for method, path, body in (
        ("GET", S + "test", None),
        ("POST", S, _start()),
        ("GET", S + "abc/status", None),
        ("POST", S + "abc", b'{"action": "delete"}'),
        ("POST", S + "status/multiple", b'{"session_ids": []}'),
    ):
        status, kind, reply = _send(lab.base_url, method, path, body, auth=auth)
        assert status == 401, (method, path, status, reply[:200])
        _assert_clean(status, kind, reply)


@pytest.mark.parametrize(
    "label,extra",
    [("length 1e308", {"priority.queue.slot.length": 1e308}),
     ("timestamp NaN", {"priority.queue.slot.start.timestamp": "nan"}),
     ("timestamp infinite", {"priority.queue.slot.start.timestamp": "inf"}),
     ("timestamp far future", {"priority.queue.slot.start.timestamp": 1e20})],
)  # fmt: skip
def test_absurd_slot_numbers_are_refused_not_500(lab, label, extra):
    _assert_clean(*_send(lab.base_url, "POST", S, _start(**extra)))


def test_deeply_nested_json_is_not_a_500(lab):
    body = b'{"client_initial_data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _assert_clean(*_send(lab.base_url, "POST", S, body))


def test_student_side_bad_input(lab):
    browser = lab.browser()
    for path in ("/callback/unknown", "/callback/" + "z" * 5000, "/callback/%FF%FE"):
        page = browser.get(path)
        assert page.status == 403, (path, page.status)
    for path in ("/callback/unknown/poll", "/callback/unknown/logout"):
        page = browser.post(path)
        assert page.status == 200 and page.json()["success"] is False
    assert browser.get("/").status == 403


@pytest.mark.parametrize(
    "method,path,body",
    [("GET", S + "abc/status?next=/api", None),
     ("GET", S + "abc/status?/api", None),
     ("POST", S + "api", b'{"action": "delete"}'),
     ("POST", S + "status/multiple?x=/weblab/sessions/api", b'{"session_ids": ["a"]}')],
)  # fmt: skip
def test_paths_ending_in_api_still_need_credentials(lab, method, path, body):
    status, kind, reply = _send(lab.base_url, method, path, body, auth=None)
    assert status == 401, (status, reply[:200])
    _assert_clean(status, kind, reply)


def _send_chunked(base_url, path, chunks):
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": JSON, "Authorization": AUTH, "Transfer-Encoding": "chunked"}
    try:
        conn.request("POST", parts.path + path, body=iter(chunks), headers=headers,
                     encode_chunked=True)  # fmt: skip
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type") or "", reply.read()
    except (BrokenPipeError, ConnectionResetError):  # the server may answer before reading all
        return 413, JSON, b'{"error": true, "message": "connection closed early"}'
    finally:
        conn.close()


def test_chunked_body_over_the_rlms_cap_is_a_json_413(lab):
    """No Content-Length (chunked): the 1 MB cap of the RLMS routes is checked while reading."""
    from labruntime.sessions.http_guard import MAX_RLMS_BODY

    chunks = [b" " * 65536] * (MAX_RLMS_BODY // 65536 + 2)
    status, kind, body = _send_chunked(lab.base_url, S, chunks)
    assert status == 413, (status, body[:200])
    _assert_clean(status, kind, body)
    small = _send_chunked(lab.base_url, S, [_start()])  # chunked under the cap: accepted
    assert small[0] == 200 and b"session_id" in small[2], small
