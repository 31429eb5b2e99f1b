"""A student's signed session cookie is verified once, not at every request (Flask's own
verification is about a third of a student view's cost beyond a bare view); what it holds,
its age limit, a new SECRET_KEY and a forged cookie behave as with Flask's interface."""

from __future__ import annotations

import datetime

from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface

from labruntime.sessions.cookie_cache import CachedCookieSessionInterface, install


def _interface(app: Flask) -> CachedCookieSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, CachedCookieSessionInterface)
    return interface


def test_a_student_cookie_is_verified_once(perf_lab, redis_calls):
    session_id = perf_lab.rlms.start({}, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    interface = _interface(perf_lab.app)
    assert student.get("/lab").status_code == 200
    verified = interface.verified
    for _ in range(5):
        with redis_calls() as calls:
            reply = student.get("/lab")
        assert reply.status_code == 200 and reply.text.startswith("hello ann")
        assert calls.round_trips <= 1  # the session's read, when not remembered
    assert interface.verified == verified


def _cookie_app() -> Flask:
    app = Flask("cookies")
    app.secret_key = "first-secret"
    install(app)

    @app.route("/set/<value>")
    def set_value(value: str) -> str:
        session["v"] = value
        return "ok"

    @app.route("/nested")
    def nested() -> str:
        session["n"] = {"a": [1]}
        return "ok"

    @app.route("/get")
    def get_value() -> str:
        return repr(dict(session))

    @app.route("/append")
    def append() -> str:
        session["n"]["a"].append(2)  # in place, not marked modified: not saved
        return repr(dict(session))

    return app


def test_the_cache_keeps_flasks_meaning():
    app = _cookie_app()
    interface = _interface(app)
    client = app.test_client()
    client.get("/set/x")
    assert client.get("/get").text == "{'v': 'x'}"
    assert client.get("/get").text == "{'v': 'x'}"
    assert interface.verified == 1
    # a forged cookie is refused (empty session), never cached
    client.set_cookie("session", "forged.value.sig")
    assert client.get("/get").text == "{}"
    assert client.get("/get").text == "{}"
    assert interface.verified == 3


def test_a_new_secret_key_forgets_what_was_verified():
    app = _cookie_app()
    client = app.test_client()
    client.get("/set/x")
    assert client.get("/get").text == "{'v': 'x'}"
    app.secret_key = "second-secret"
    assert client.get("/get").text == "{}"
    app.config["SECRET_KEY_FALLBACKS"] = ["first-secret"]
    assert client.get("/get").text == "{'v': 'x'}"


def test_an_expired_cookie_is_refused_even_when_cached():
    app = _cookie_app()
    client = app.test_client()
    client.get("/set/x")
    assert client.get("/get").text == "{'v': 'x'}"
    app.permanent_session_lifetime = datetime.timedelta(seconds=-1)
    assert client.get("/get").text == "{}"


def test_nested_values_are_not_cached():
    app = _cookie_app()
    interface = _interface(app)
    client = app.test_client()
    client.get("/nested")
    assert client.get("/append").text == "{'n': {'a': [1, 2]}}"
    assert client.get("/get").text == "{'n': {'a': [1]}}"  # the cookie's, as with Flask
    assert interface.verified == 2


def test_a_labs_own_session_interface_is_kept():
    class Mine(SecureCookieSessionInterface):
        pass

    app = Flask("mine")
    app.session_interface = mine = Mine()
    install(app)
    assert app.session_interface is mine
