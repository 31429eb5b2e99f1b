"""Issue 11, "Protocol and HTTP": what a hostile client sends to the RLMS routes gets a JSON
4xx, never a 500 or an HTML page, and never lets it in without the credentials."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import urllib.parse

import pytest

from labruntime.sessions.start_request import MAX_INITIAL_DATA_DEPTH, json_depth, safe_back
from labruntime.testing import serve_app

from .conftest import BACK, S, SecLab, basic, server_data

JSON = "application/json"


def _is_json(reply) -> dict:
    assert reply.mimetype == JSON, (reply.status_code, reply.mimetype, reply.data[:200])
    return json.loads(reply.data)


@pytest.mark.parametrize(
    "header",
    [
        "Basic \xe9\xe9",  # non-ASCII bytes in the header: Werkzeug's b64decode raises
        "Basic " + base64.b64encode(b"rlms:\xe9\xe9").decode(),  # not UTF-8 once decoded
        "Basic \xe9" + basic()[6:],
        'Digest username="rlms", password="s3cret-but-not-basic"',
        "Bearer " + basic()[6:],
    ],
)
def test_undecodable_or_non_basic_authorization_is_a_401_json(lab: SecLab, header: str) -> None:
    for method, path in (("GET", S + "test"), ("POST", S), ("GET", S + "x/status")):
        reply = lab.client.open(path, method=method, headers={"Authorization": header})
        assert reply.status_code == 401, (header, path, reply.status_code, reply.data[:200])
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="labruntime"'
        _is_json(reply)


def test_digest_with_the_right_username_and_password_params_is_refused(lab: SecLab) -> None:
    from tests._labs import PASSWORD, USER

    header = f'Digest username="{USER}", password="{PASSWORD}"'
    reply = lab.client.get(S + "test", headers={"Authorization": header})
    assert reply.status_code == 401 and _is_json(reply)["valid"] is False
    assert lab.client.get(S + "test", headers={"Authorization": basic()}).status_code == 200


def test_post_sessions_without_the_trailing_slash_starts_a_session(lab: SecLab) -> None:
    body = {"server_initial_data": server_data(), "back": BACK}
    reply = lab.client.post(S.rstrip("/"), json=body, headers={"Authorization": basic()})
    assert reply.status_code == 200 and "session_id" in _is_json(reply)
    refused = lab.client.post(S.rstrip("/"), json=body)  # still needs the credentials
    assert refused.status_code == 401 and _is_json(refused)["error"] is True


def test_a_redirect_under_weblab_is_json(lab: SecLab) -> None:
    lab.app.add_url_rule("/weblab/extra/", "extra", lambda: "x")  # a rule with a slash
    reply = lab.client.get("/weblab/extra", headers={"Authorization": basic()})
    assert reply.status_code == 308 and reply.headers["Location"].endswith("/weblab/extra/")
    _is_json(reply)


def _multipart(fields: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "xXx-boundary-xXx"
    parts = [
        b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (boundary.encode(), name.encode(), value)
        for name, value in fields
    ]
    body = b"".join(parts) + b"--%s--\r\n" % boundary.encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    "fields",
    [
        [("client_initial_data", b"a" * 600_000)],  # a field over 500 kB
        [(f"f{i}", b"1") for i in range(1_100)],  # over 1,000 parts
    ],
    ids=["field over 500 kB", "over 1000 parts"],
)
def test_multipart_bodies_over_werkzeugs_limits_are_a_json_413(lab: SecLab, fields) -> None:
    body, kind = _multipart(fields)
    reply = lab.client.post(S, data=body, headers={"Authorization": basic(), "Content-Type": kind})
    assert reply.status_code == 413, (reply.status_code, reply.data[:200])
    assert "500 kB" in _is_json(reply)["message"]


def test_a_multipart_start_under_the_limits_works(lab: SecLab) -> None:
    body, kind = _multipart(
        [("server_initial_data", json.dumps(server_data()).encode()), ("back", BACK.encode())]
    )
    reply = lab.client.post(S, data=body, headers={"Authorization": basic(), "Content-Type": kind})
    assert reply.status_code == 200 and "session_id" in _is_json(reply), reply.data


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_json_depth_is_measured_without_recursion() -> None:
    assert json_depth(1) == 0 and json_depth({}) == 1 and json_depth([[], {"a": [1]}]) == 3
    deep: list = []
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    assert json_depth(deep) == 5001


def _nested_text(depth: int, inner: str = "") -> str:
    """JSON text of objects nested ``depth`` deep (built as text: json.dumps would recurse)."""
    return '{"a": ' * (depth - 1) + "{" + inner + "}" + "}" * (depth - 1)


@pytest.mark.parametrize("as_text", [False, True], ids=["object", "JSON text"])
def test_initial_data_nested_deeper_than_the_cap_is_a_json_400_naming_it(
    lab: SecLab, as_text: bool
) -> None:
    for field in ("client_initial_data", "server_initial_data"):
        inner = json.dumps(server_data())[1:-1] if field == "server_initial_data" else ""
        deep = _nested_text(500, inner)  # parses (976 does under gunicorn), cannot be kept
        if field == "server_initial_data":
            deep = "{" + inner + ', "deep": ' + _nested_text(500) + "}"
        others = {"client_initial_data": "{}", "server_initial_data": json.dumps(server_data())}
        others[field] = json.dumps(deep) if as_text else deep
        body = "{" + ", ".join(f'"{k}": {v}' for k, v in others.items()) + f', "back": "{BACK}"}}'
        reply = lab.client.post(S, data=body, content_type=JSON, headers={"Authorization": basic()})
        assert reply.status_code == 400, (field, reply.status_code, reply.data[:200])
        message = _is_json(reply)["message"]
        assert field in message and str(MAX_INITIAL_DATA_DEPTH) in message, message
    at_cap = lab.start(client_initial_data=_nested(MAX_INITIAL_DATA_DEPTH))
    assert at_cap.status_code == 200 and "session_id" in _is_json(at_cap)
    session_id = _is_json(at_cap)["session_id"]
    assert lab.client.get(f"/callback/{session_id}").status_code == 302
    assert lab.client.get("/lab/").status_code == 200  # what was stored loads back


@pytest.mark.parametrize(
    "back",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",
        "/relative/path",
        "evil.example",
        "http://rlms.example/back\r\nSet-Cookie: x=1",
        "http://rlms.example/back\nx",
        "http://rlms.example/\x00",
        "http://rlms.example/\u202eevil",
        "http://rlms.example/a b",
        "http:\\\\evil.example",
        "http://",
        "https://" + "a" * 5000,
        {"a": 1},
        ["http://rlms.example/"],
        12,
    ],
)
def test_a_hostile_back_refuses_the_start_with_a_json_400(lab: SecLab, back) -> None:
    reply = lab.start(back=back)
    assert reply.status_code == 400, (back, reply.status_code, reply.data[:200])
    body = _is_json(reply)
    assert body["error"] is True and "back" in body["message"], body
    assert safe_back(back) is None


@pytest.mark.parametrize(
    "back", [BACK, "http://rlms.example", "https://rlms.example:8443/a?b=c#d", None, ""]
)
def test_a_good_back_is_kept(lab: SecLab, back) -> None:
    reply = lab.start(back=back)
    assert reply.status_code == 200 and "session_id" in _is_json(reply), reply.data
    assert safe_back(back) == (back or None)


def _raw(base_url: str, data: bytes) -> bytes:
    """Send raw bytes to the served lab; return all it answers (it closes the connection)."""
    parts = urllib.parse.urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(data)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
        return b"".join(chunks)


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{}\r\n0\r\n\r\n", b"-1\r\n{}\r\n0\r\n\r\n"],
    ids=["bad size", "size longer than the data", "negative size"],
)
def test_a_malformed_chunked_start_is_a_400_json_over_http(lab: SecLab, chunks: bytes) -> None:
    with serve_app(lab.app) as base_url:
        head = (
            f"POST {S} HTTP/1.1\r\nHost: lab\r\nAuthorization: {basic()}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        answer = _raw(base_url, head + chunks)
    status_line, _, rest = answer.partition(b"\r\n")
    status = int(status_line.split()[1])
    assert 400 <= status < 500, answer[:300]
    assert b"application/json" in rest.partition(b"\r\n\r\n")[0].lower(), answer[:300]
    json.loads(rest.partition(b"\r\n\r\n")[2])


def test_the_students_poll_answers_json_when_redis_is_down(lab: SecLab, monkeypatch) -> None:
    from labruntime.errors import StoreUnavailableError
    from labruntime.state import get_state

    session_id = lab.new_session()
    assert lab.client.get(f"/callback/{session_id}").status_code == 302

    def down(*args, **kwargs):
        raise StoreUnavailableError("Redis is down (test)")

    monkeypatch.setattr(get_state(lab.app), "load_user", down)
    for method in ("GET", "POST"):
        reply = lab.client.open(f"/callback/{session_id}/poll", method=method)
        assert reply.status_code == 503 and _is_json(reply)["error"] is True, reply.data[:200]
    page = lab.client.get("/lab/", headers={"Accept": "text/html"})
    assert page.status_code == 503 and page.mimetype == "text/html"  # a page stays a page


def test_http_client_sees_json_for_a_bad_method_on_the_start(lab: SecLab) -> None:
    with serve_app(lab.app) as base_url:
        parts = urllib.parse.urlsplit(base_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("PUT", S.rstrip("/"), body=b"{}", headers={"Authorization": basic()})
            reply = conn.getresponse()
            assert reply.status in (404, 405) and reply.getheader("Content-Type") == JSON
            json.loads(reply.read())
        finally:
            conn.close()


@pytest.mark.parametrize("authorized", [True, False])
def test_options_under_weblab_is_json(lab: SecLab, authorized: bool) -> None:
    headers = {"Authorization": basic()} if authorized else {}
    reply = lab.client.options(S + "test", headers=headers)
    body = _is_json(reply)
    if authorized:  # Flask's automatic answer, turned JSON
        assert reply.status_code == 200 and "GET" in body["allow"]
    else:
        assert reply.status_code == 401
