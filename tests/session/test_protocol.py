"""The RLMS side of docs/protocol.md, quirks included, through Flask's test client."""

from __future__ import annotations

import json
import time
import urllib.parse
from datetime import UTC, datetime

import pytest


def test_api_needs_no_credentials(make_lab):
    lab = make_lab()
    reply = lab.client.get("/weblab/sessions/api")
    assert reply.status_code == 200
    assert reply.content_type == "application/json"
    assert reply.get_json() == {"api_version": "1"}
    assert (
        lab.client.get("/weblab/sessions/api", headers=lab.basic()).get_json()["api_version"] == "1"
    )


def test_test_call_valid_and_invalid(make_lab):
    lab = make_lab()
    ok = lab.client.get("/weblab/sessions/test", headers=lab.basic())
    assert ok.get_json() == {"valid": True}
    for headers in ({}, lab.basic("rlms", "wrong"), lab.basic("other", "s3cret")):
        bad = lab.client.get("/weblab/sessions/test", headers=headers)
        assert bad.status_code == 401
        assert bad.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert bad.content_type == "application/json"
        body = bad.get_json()
        assert body["valid"] is False
        expected = "wrong username provided" if headers else "no username provided"
        assert expected in body["error_messages"][0]


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/weblab/sessions/"),
        ("POST", "/weblab/sessions/?x=/api"),
        ("GET", "/weblab/sessions/abc/status"),
        ("GET", "/weblab/sessions/abc/status?/weblab/sessions/api"),
        ("POST", "/weblab/sessions/status/multiple"),
        ("POST", "/weblab/sessions/api"),
    ],
)
def test_every_other_call_needs_credentials(make_lab, method, path, caplog):
    lab = make_lab()
    reply = lab.client.open(path, method=method, json={"action": "delete"})
    assert reply.status_code in (401, 405)
    if reply.status_code == 401:
        assert "WWW-Authenticate" in reply.headers
        assert "s3cret" not in caplog.text


def test_failed_credentials_logged_without_password(make_lab, caplog):
    lab = make_lab()
    lab.client.get("/weblab/sessions/test", headers=lab.basic("mallory", "guess-pass"))
    assert "mallory" in caplog.text and "guess-pass" not in caplog.text


def test_start_reply_and_link(make_lab):
    lab = make_lab()
    reply = lab.start(client_data={"a": 1})
    assert reply.content_type == "application/json"
    body = reply.get_json()
    assert set(body) == {"url", "session_id"}
    assert body["url"] == f"http://localhost/callback/{body['session_id']}"
    assert lab.started == [({"a": 1}, lab.server_data())]


@pytest.mark.parametrize("length", ["300", 300, 300.0, "300.5"])
def test_slot_length_string_or_number(make_lab, length):
    lab = make_lab()
    sid = lab.new_session(sd=lab.server_data(length=length))
    with lab.app.app_context():
        user = lab.state.load_user(sid)
    assert 299 < user.time_left <= float(length)


@pytest.mark.parametrize("length", ["abc", None, -5, 0, "nan"])
def test_bad_slot_length_is_a_clear_error(make_lab, length):
    lab = make_lab()
    body = lab.start(sd=lab.server_data(length=length)).get_json()
    assert body["error"] is True and "priority.queue.slot.length" in body["message"]
    assert lab.started == []


def _start_forms(start: float) -> list[dict]:
    local = datetime.fromtimestamp(start)
    utc = datetime.fromtimestamp(start, UTC)
    whole = datetime.fromtimestamp(int(start))
    return [
        {"priority.queue.slot.start.timestamp": repr(start)},
        {"priority.queue.slot.start.timestamp": start},
        {"priority.queue.slot.start": str(local)},
        {"priority.queue.slot.start": utc.isoformat()},
        {"priority.queue.slot.start": utc.isoformat().replace("+00:00", "Z")},
        {"priority.queue.slot.start.utc": str(utc.replace(tzinfo=None))},
        {"priority.queue.slot.start": str(whole), "_whole": True},
    ]


@pytest.mark.parametrize("index", range(7))
def test_every_start_time_form(make_lab, index):
    lab = make_lab()
    start = time.time() - 100.25
    extra = _start_forms(start)[index]
    expected = int(start) if extra.pop("_whole", False) else start
    sid = lab.new_session(sd=lab.server_data(length=300, **extra))
    with lab.app.app_context():
        user = lab.state.load_user(sid)
    assert user.max_date == pytest.approx(expected + 300, abs=0.01)
    assert user.time_left == pytest.approx(expected + 300 - time.time(), abs=1)


def test_timestamp_preferred_over_start(make_lab):
    lab = make_lab()
    start = time.time() - 50
    sd = lab.server_data(
        **{
            "priority.queue.slot.start.timestamp": str(start),
            "priority.queue.slot.start": "2001-01-01 00:00:00",
        }
    )
    sid = lab.new_session(sd=sd)
    with lab.app.app_context():
        assert lab.state.load_user(sid).time_left == pytest.approx(250, abs=1)


def test_bad_start_time_is_a_clear_error(make_lab):
    lab = make_lab()
    body = lab.start(sd=lab.server_data(**{"priority.queue.slot.start": "yesterday"})).get_json()
    assert body["error"] is True and "priority.queue.slot.start" in body["message"]


@pytest.mark.parametrize("encoding", ["json", "data"])
def test_initial_data_as_json_strings_in_json_or_a_form(make_lab, encoding):
    lab = make_lab()
    body = {
        "client_initial_data": json.dumps({"code": "x"}),
        "server_initial_data": json.dumps(lab.server_data()),
        "back": "http://rlms/back",
    }
    reply = lab.client.post("/weblab/sessions/", **{encoding: body}, headers=lab.basic())
    sid = reply.get_json()["session_id"]
    assert lab.started == [({"code": "x"}, lab.server_data())]
    with lab.app.app_context():
        assert lab.state.load_user(sid).back == "http://rlms/back"


def test_bad_initial_data_json(make_lab):
    lab = make_lab()
    body = {"client_initial_data": "{not json", "server_initial_data": lab.server_data()}
    reply = lab.client.post("/weblab/sessions/", json=body, headers=lab.basic()).get_json()
    assert reply["error"] is True and "client_initial_data" in reply["message"]


def test_on_start_raising_disposes_and_reports(make_lab):
    lab = make_lab()

    @lab.replace_hook("on_start")
    def broken(client, server):
        raise RuntimeError("no board")

    body = lab.start().get_json()
    assert body["error"] is True and "no board" in body["message"]
    assert len(lab.disposed) == 1
    assert lab.status(lab.disposed[0]) == -1


def test_on_start_dict_becomes_data(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    with lab.app.app_context():
        assert lab.state.load_user(sid).data == {"started": True}


def test_status_values(make_lab):
    lab = make_lab(WEBLAB_POLL_INTERVAL=7)
    sid = lab.new_session(sd=lab.server_data(length=3))
    assert lab.status(sid) == 3  # min(poll interval, seconds left)
    sid2 = lab.new_session(sd=lab.server_data(length=100))
    assert lab.status(sid2) == 7
    assert lab.status("unknown") == -1
    reply = lab.client.get(f"/weblab/sessions/{sid}/status", headers=lab.basic())
    assert reply.content_type == "application/json"


def test_status_of_a_finished_slot(make_lab):
    lab = make_lab()
    start = time.time() - 400
    sid = lab.new_session(
        sd=lab.server_data(length=300, **{"priority.queue.slot.start.timestamp": start})
    )
    assert lab.status(sid) == -1


def test_bulk_status(make_lab):
    lab = make_lab()
    ids = [lab.new_session() for _ in range(3)]
    reply = lab.client.post(
        "/weblab/sessions/status/multiple",
        json={"session_ids": [*ids, "nope"], "timeout": 5},
        headers=lab.basic(),
    )
    assert reply.content_type == "application/json"
    assert reply.get_json() == {"status": {**dict.fromkeys(ids, 5), "nope": -1}}


@pytest.mark.parametrize("payload", [{}, {"session_ids": "abc"}, {"timeout": 3}])
def test_bulk_status_missing_ids(make_lab, payload):
    lab = make_lab()
    reply = lab.client.post("/weblab/sessions/status/multiple", json=payload, headers=lab.basic())
    body = reply.get_json()
    assert body["success"] is False and body["error_code"] == "missing-parameters"
    assert body["error_human"]


def test_dispose_replies(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    odd = lab.client.post(f"/weblab/sessions/{sid}", json={"action": "eat"}, headers=lab.basic())
    assert odd.get_json() == {"message": "Unknown op"}
    assert lab.disposed == []
    reply = lab.client.post(
        f"/weblab/sessions/{sid}", json={"action": "delete"}, headers=lab.basic()
    )
    assert reply.status_code == 200 and reply.content_type == "application/json"
    assert reply.get_json() == {"message": "Deleted"}
    again = lab.client.post(
        f"/weblab/sessions/{sid}", json={"action": "delete"}, headers=lab.basic()
    )
    assert again.status_code == 200 and again.get_json() == {"message": "Deleted"}  # idempotent
    unknown = lab.dispose("never-existed")
    assert unknown == {"message": "Not found"}
    assert lab.disposed == [sid]


def test_dispose_form_encoded(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    reply = lab.client.post(
        f"/weblab/sessions/{sid}", data={"action": "delete"}, headers=lab.basic()
    )
    assert reply.get_json() == {"message": "Deleted"}


def test_no_reply_has_a_falsy_data(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    replies = [
        lab.client.get("/weblab/sessions/api").get_json(),
        lab.client.get("/weblab/sessions/test", headers=lab.basic()).get_json(),
        lab.client.get(f"/weblab/sessions/{sid}/status", headers=lab.basic()).get_json(),
        lab.dispose(sid),
        lab.dispose(sid),
    ]
    for body in replies:
        assert "data" not in body or body["data"]


def test_base_url_and_script_name(make_lab):
    lab = make_lab(WEBLAB_BASE_URL="/lab1")
    assert lab.client.get("/weblab/sessions/api").status_code == 404
    reply = lab.client.post(
        "/weblab/sessions/",
        json={"client_initial_data": {}, "server_initial_data": lab.server_data()},
        headers=lab.basic(),
        base_url="http://lab.example.org/proxy/lab1",
    )
    assert reply.status_code == 404  # WEBLAB_BASE_URL is inside the app: /proxy/lab1/lab1/...
    reply = lab.client.post(
        "/lab1/weblab/sessions/",
        json={"client_initial_data": {}, "server_initial_data": lab.server_data()},
        headers=lab.basic(),
        base_url="http://lab.example.org/proxy",
    )
    body = reply.get_json()
    assert body["url"] == f"http://lab.example.org/proxy/lab1/callback/{body['session_id']}"


def test_weblab_base_alias(make_lab):
    lab = make_lab(WEBLAB_BASE="/lab2")
    assert lab.client.get("/lab2/weblab/sessions/api").get_json() == {"api_version": "1"}


def test_scheme_https_behind_proxy(make_lab):
    lab = make_lab(WEBLAB_SCHEME="https")
    body = lab.start().get_json()
    assert body["url"].startswith("https://localhost/callback/")


def test_callback_url_option(make_lab):
    lab = make_lab(WEBLAB_CALLBACK_URL="/enter")
    body = lab.start().get_json()
    assert body["url"] == f"http://localhost/enter/{body['session_id']}"
    assert lab.client.get(f"/enter/{body['session_id']}").status_code == 302


@pytest.mark.parametrize("odd", ["a:b", "*", "x" * 200, "a b", "tasks:session:x"])
def test_odd_session_ids_are_unknown(make_lab, odd):
    lab = make_lab()
    sid = lab.new_session()
    quoted = urllib.parse.quote(odd, safe="")
    assert lab.status(quoted) == -1
    assert lab.dispose(quoted) == {"message": "Not found"}
    reply = lab.client.post(
        "/weblab/sessions/status/multiple", json={"session_ids": [odd, sid]}, headers=lab.basic()
    )
    assert reply.get_json() == {"status": {odd: -1, sid: 5}}
    assert lab.enter(quoted).status_code == 403
