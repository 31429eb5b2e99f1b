"""labruntime.testing: the fake RLMS against the real session layer, and its loud failures."""

from __future__ import annotations

import datetime as dt
import http.client
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, Response, jsonify

from labruntime import WebLab, requires_active, weblab_user
from labruntime.state import get_state
from labruntime.testing import (
    FakeRLMS,
    ProtocolViolation,
    StartError,
    fake_rlms,  # noqa: F401 - the fixtures lab authors import
    http_rlms,  # noqa: F401
    serve_app,
    throwaway_redis_url,  # noqa: F401
)
from tests._labs import PASSWORD, USER, lab_app


@pytest.fixture
def app(redis_url: str, redis_base: str, tmp_path: Path) -> Iterator[Flask]:
    """A small lab on the real session layer, on this test's Redis prefix."""
    lab = lab_app("lab", redis_url, redis_base, str(tmp_path / "instance"))
    weblab = WebLab(lab)
    lab.config["started"] = []

    @weblab.on_start
    def start(client_data: dict[str, Any], server_data: dict[str, Any]) -> dict[str, Any]:
        lab.config["started"].append(server_data)
        if client_data.get("refuse"):
            raise ValueError("refused by the lab")
        return {"client": client_data}

    @weblab.initial_url
    def initial() -> str:
        return "/lab/"

    @lab.route("/lab/")
    @requires_active
    def me() -> Response:
        user = weblab_user
        return jsonify(
            username=user.username,
            unique=user.username_unique,
            locale=user.locale,
            time_left=user.time_left,
            data=dict(user.data),
            experiment=user.experiment_name,
        )

    yield lab
    get_state(lab).shutdown()


def test_api_and_test_calls(app: Flask) -> None:
    rlms = FakeRLMS.for_app(app)
    assert rlms.api() == {"api_version": "1"}
    assert rlms.test() == {"valid": True}
    wrong = FakeRLMS(app, USER, "wrong")
    reply = wrong.test()
    assert reply["valid"] is False and reply["error_messages"]
    assert wrong.calls[-1].status == 401
    assert "www-authenticate" in wrong.calls[-1].headers
    assert wrong.api() == {"api_version": "1"}  # /api answers without credentials


@pytest.mark.parametrize("encoding", ["json", "api0", "form"])
@pytest.mark.parametrize("style", ["weblabdeusto", "labsland"])
def test_a_whole_session_in_every_start_form(app: Flask, style: str, encoding: str) -> None:
    rlms = FakeRLMS.for_app(app, style=style)
    started = rlms.start({"level": 2}, username="alice", locale="es", encoding=encoding)
    assert started.url.endswith(f"/callback/{started.session_id}")
    sent = app.config["started"][-1]
    wanted_type = str if style == "weblabdeusto" else (int, float)
    assert isinstance(sent["priority.queue.slot.length"], wanted_type)
    student = rlms.client
    assert student.get(started.url).status_code == 302
    me = student.get("/lab/").get_json()
    assert me["username"] == "alice" and me["locale"] == "es"
    assert me["unique"] == "alice@rlms.invalid" and me["experiment"] == "lab"
    assert me["data"] == {"client": {"level": 2}}
    assert 290 < me["time_left"] <= 300
    assert rlms.status(started.session_id) > 0
    assert rlms.dispose(started.session_id) == {"message": "Deleted"}
    assert rlms.status(started.session_id) == -1
    assert rlms.dispose(started.session_id) == {"message": "Deleted"}  # idempotent


@pytest.mark.parametrize("style", ["weblabdeusto", "labsland"])
@pytest.mark.parametrize("microsecond", [0, 250_000])
def test_the_start_date_is_parsed_without_a_timestamp(
    app: Flask, style: str, microsecond: int
) -> None:
    rlms = FakeRLMS.for_app(app, style=style)
    start = dt.datetime.now().replace(microsecond=microsecond) - dt.timedelta(seconds=100)
    started = rlms.start(assigned_time=300, start=start, with_timestamp=False)
    sent = app.config["started"][-1]
    assert "priority.queue.slot.start.timestamp" not in sent
    if style == "weblabdeusto":
        assert ("." in sent["priority.queue.slot.start"]) == bool(microsecond)
    rlms.client.get(started.url)
    assert 190 < rlms.client.get("/lab/").get_json()["time_left"] < 201


@pytest.mark.parametrize("key", ["WEBLAB_BASE_URL", "WEBLAB_BASE"])
def test_a_base_url_is_followed(redis_url: str, redis_base: str, tmp_path: Path, key: str) -> None:
    lab = lab_app("based", redis_url, redis_base, str(tmp_path / "instance"), WEBLAB_NO_THREAD=True)
    lab.config[key] = "/mylab"
    WebLab(lab)
    try:
        rlms = FakeRLMS.for_app(lab)
        started = rlms.start()
        assert "/mylab/callback/" in started.url
        assert rlms.calls[-1].status == 200
        with serve_app(lab) as base_url:
            http = FakeRLMS(base_url + "/mylab", USER, PASSWORD)
            assert http.status(started.session_id) > 0
            with pytest.raises(ProtocolViolation, match="HTTP 404"):  # not without the base
                FakeRLMS(base_url, USER, PASSWORD).api()
    finally:
        get_state(lab).shutdown()


def test_a_refused_start_raises_start_error(app: Flask) -> None:
    rlms = FakeRLMS.for_app(app)
    with pytest.raises(StartError, match="refused|Error") as caught:
        rlms.start({"refuse": True})
    assert caught.value.reply["error"] is True


def test_over_real_http_behind_a_script_name(app: Flask) -> None:
    with serve_app(app, script_name="/lab1") as base_url:
        assert base_url.endswith("/lab1")
        rlms = FakeRLMS(base_url, USER, PASSWORD, style="labsland")
        assert rlms.test() == {"valid": True}
        sessions = [rlms.start(username=f"s{n}") for n in range(3)]
        assert sessions[0].url.startswith(base_url + "/callback/")
        statuses = rlms.bulk_status([s.session_id for s in sessions] + ["unknown"], timeout=5)
        assert statuses["unknown"] == -1
        assert all(statuses[s.session_id] > 0 for s in sessions)
        for started in sessions:
            assert rlms.dispose(started.session_id)["message"] == "Deleted"
        port = int(base_url.split(":")[2].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    with pytest.raises(OSError):  # the server is gone after the block
        conn.request("GET", "/lab1/weblab/sessions/api")
        conn.getresponse()
    conn.close()


def test_the_lab_author_fixtures(
    fake_rlms: FakeRLMS,  # noqa: F811
    http_rlms: FakeRLMS,  # noqa: F811
    throwaway_redis_url: str,  # noqa: F811
    redis_url: str,
) -> None:
    assert throwaway_redis_url.startswith("unix://") and throwaway_redis_url != redis_url
    client = redis.Redis.from_url(throwaway_redis_url)
    assert client.ping()
    client.close()
    assert fake_rlms.test() == {"valid": True}
    assert http_rlms.test() == {"valid": True}
    started = http_rlms.start()
    assert http_rlms.dispose(started.session_id)["message"] == "Deleted"


# -- a lab that breaks the protocol: the fake must fail loudly ------------------------------


def broken_lab(dispose: Callable[[int], Response]) -> Flask:
    """A lab whose dispose answers ``dispose(call_number)``; the other calls are correct."""
    lab = Flask("broken")
    calls: list[int] = []

    @lab.post("/weblab/sessions/<session_id>")
    def dispose_view(session_id: str) -> Response:
        calls.append(1)
        return dispose(len(calls))

    @lab.post("/weblab/sessions/")
    def start_view() -> Response:
        return jsonify(error=True, message="broken")

    @lab.get("/weblab/sessions/<session_id>/status")
    def status_view(session_id: str) -> Response:
        return Response('{"should_finish": 5}', content_type="text/html")

    lab.config["calls"] = calls
    return lab


def test_a_falsy_data_in_dispose_fails_loudly() -> None:
    lab = broken_lab(lambda n: jsonify(message="Deleted", data=""))
    with pytest.raises(ProtocolViolation, match="falsy 'data'"):
        FakeRLMS(lab, USER, PASSWORD).dispose("s")
    assert isinstance(ProtocolViolation("x"), AssertionError)


def test_a_non_json_content_type_fails_loudly() -> None:
    rlms = FakeRLMS(broken_lab(lambda n: Response("Deleted", content_type="text/html")), "u", "p")
    with pytest.raises(ProtocolViolation, match="application/json"):
        rlms.dispose("s")
    with pytest.raises(ProtocolViolation, match="application/json"):
        rlms.status("s")


def test_an_error_status_fails_loudly() -> None:
    rlms = FakeRLMS(broken_lab(lambda n: jsonify(message="Not found")), "u", "p")
    rlms.dispose("s")  # 200: fine
    lab = broken_lab(
        lambda n: Response('{"message": "Not found"}', 404, mimetype="application/json")
    )
    with pytest.raises(ProtocolViolation, match="HTTP 404"):
        FakeRLMS(lab, "u", "p").dispose("s")


def test_weblabdeusto_dispose_is_called_again_while_the_lab_asks() -> None:
    def answer(n: int) -> Response:
        if n < 3:
            return jsonify(finished=False, ask_again=0.05, data="busy")
        return jsonify(message="Deleted")

    lab = broken_lab(answer)
    assert FakeRLMS(lab, "u", "p").dispose("s") == {"message": "Deleted"}
    assert len(lab.config["calls"]) == 3


def test_labsland_dispose_follows_should_finish() -> None:
    def answer(n: int) -> Response:
        return jsonify(message="Deleted", should_finish=0.05 if n < 2 else -1)

    lab = broken_lab(answer)
    assert FakeRLMS(lab, "u", "p", style="labsland").dispose("s")["should_finish"] == -1
    assert len(lab.config["calls"]) == 2
    # the same replies end at once for WebLab-Deusto, which ignores should_finish
    lab = broken_lab(answer)
    FakeRLMS(lab, "u", "p").dispose("s")
    assert len(lab.config["calls"]) == 1


def test_a_dispose_that_never_ends_is_bounded() -> None:
    lab = broken_lab(lambda n: jsonify(finished=False, ask_again=0.05, data="busy"))
    began = time.monotonic()
    with pytest.raises(ProtocolViolation, match="still asks"):
        FakeRLMS(lab, "u", "p", max_dispose_wait=0.3).dispose("s")
    assert time.monotonic() - began < 5


def test_start_refusal_and_bad_arguments() -> None:
    rlms = FakeRLMS(broken_lab(lambda n: jsonify()), "u", "p")
    with pytest.raises(StartError, match="broken"):
        rlms.start()
    with pytest.raises(ValueError, match="encoding"):
        rlms.start(encoding="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="style"):
        FakeRLMS("http://127.0.0.1:1", "u", "p", style="moodle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="http"):
        FakeRLMS("ftp://x", "u", "p")
