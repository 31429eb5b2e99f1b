"""weblablib's public API, name by name, and the behaviours labs rely on.

Names come from weblablib's ``__all__``, its ``WebLab`` methods, its user and task classes.
A behaviour labruntime does not have is an ``xfail(strict=True)`` saying what differs.
"""

from __future__ import annotations

import time

import pytest

import labruntime
from labruntime import WebLab, WebLabTask
from tests._labs import lab_app

WEBLABLIB_ALL = [
    "WebLab", "logout", "poll", "weblab_user", "get_weblab_user", "socket_weblab_user",
    "requires_login", "requires_active", "socket_requires_login", "socket_requires_active",
    "current_task", "current_task_stopping", "WebLabTask", "WebLabError", "NoContextError",
    "InvalidConfigError", "WebLabNotInitializedError", "TimeoutError", "AlreadyRunningError",
    "CurrentUser", "AnonymousUser", "ExpiredUser",
]  # fmt: skip
WEBLAB_METHODS = [
    "init_app", "initial_url", "on_start", "on_dispose", "task", "get_task", "tasks",
    "running_tasks", "get_tasks", "get_running_tasks", "get_running_task", "join_tasks",
    "create_token", "user_loader", "clean_expired_users", "timeout", "poll_interval",
]  # fmt: skip
TASK_ATTRIBUTES = [
    "join", "task_id", "session_id", "name", "data", "update_data", "store", "retrieve", "stop",
    "status", "done", "running", "submitted", "failed", "finished", "stopping", "result", "error",
]  # fmt: skip


@pytest.mark.parametrize("name", WEBLABLIB_ALL)
def test_every_weblablib_name_imports_from_labruntime(name):
    assert hasattr(labruntime, name)


@pytest.mark.parametrize("name", WEBLAB_METHODS)
def test_weblab_methods(name):
    assert hasattr(WebLab, name)


@pytest.mark.parametrize("name", TASK_ATTRIBUTES)
def test_task_attributes(name):
    assert hasattr(WebLabTask, name)


def test_errors_also_inherit_builtins():
    assert issubclass(labruntime.TimeoutError, TimeoutError)
    for name in ("NoContextError", "InvalidConfigError", "WebLabNotInitializedError",
                 "NotFoundError", "AlreadyRunningError"):  # fmt: skip
        error = getattr(labruntime, name)
        assert issubclass(error, labruntime.WebLabError)
        assert error.__mro__[2] is not object  # a built-in right after WebLabError


def test_weblab_run_tasks_method():
    assert callable(getattr(WebLab, "run_tasks", None))


def test_create_token_with_size_none():
    assert len(WebLab().create_token(None)) >= 32


def test_create_token():
    token = WebLab().create_token()
    assert len(token) == 43 and token != WebLab().create_token()
    assert len(labruntime.create_token(16)) == 22


# -- behaviour, over real HTTP --------------------------------------------------------------
@pytest.fixture
def lab(serve_lab):
    return serve_lab("factory_lab")


def _enter(lab, **slot):
    started = lab.rlms.start({}, **slot)
    browser = lab.browser()
    page = browser.enter(started.url)
    assert page.status == 200, page.text[:300]
    return started, browser, page


def test_factory_lab_base_and_callback_urls(lab):
    started, browser, page = _enter(lab, username="carol", username_unique="carol@uni")
    assert "/private/weblab" not in started.url
    assert started.url.startswith(lab.base_url + "/lab2/callback/")
    name, extension, script = page.text.split("|", 2)
    assert (name, extension) == ("carol", "WebLab")
    assert "<script>" in script and "/lab2/callback/" in script
    assert any(cookie.name == "lab2sess" for cookie in browser.jar)


def test_non_ascii_student(lab):
    _, browser, page = _enter(lab, username="José Ñandú", username_unique="josé@uní.es")
    assert page.text.split("|")[0] == "José Ñandú"


def test_data_saved_at_end_of_request_and_with_store(lab):
    _, browser, _ = _enter(lab)
    assert browser.post("/count").json() == {"counter": 1}
    assert browser.post("/count").json() == {"counter": 2}
    assert browser.post("/count-stored").json() == {"counter": 12}


def test_user_loader_and_on_start_data(lab):
    _, browser, _ = _enter(lab, username="carol", username_unique="carol@uni", locale="es")
    reply = browser.get("/user").json()
    assert reply["user"] == {"folder": "/srv/lab/carol"}
    assert 0 <= reply["time_without_polling"] < 5


def test_autopoll_false_string_and_manual_poll(lab):
    started, browser, _ = _enter(lab)
    time.sleep(1.2)
    browser.get("/user")  # WEBLAB_AUTOPOLL="False": this request is no poll
    assert browser.get("/user").json()["time_without_polling"] >= 1.0
    browser.post("/poll")
    assert browser.get("/user").json()["time_without_polling"] < 1.0
    assert lab.rlms.status(started.session_id) > 0


def test_forbidden_goes_to_the_unauthorized_link(lab):
    stranger = lab.browser()
    page = stranger.get("/home")
    assert (page.status, page.location) == (302, "http://rlms.invalid/login")


def test_socket_decorator_does_not_run_the_handler_for_a_stranger(lab):
    # without Flask-SocketIO installed, the check still keeps the handler from running
    page = lab.browser().get("/socket-like")
    assert b"handler ran" not in page.body


def test_logout_then_status_and_expired(lab):
    started, browser, _ = _enter(lab)
    assert browser.post("/bye").json() == {"bye": True}
    assert lab.rlms.status(started.session_id) == -1
    after = browser.post("/count")  # requires_active: the expired user goes back
    assert (after.status, after.location) == (302, "http://rlms.invalid/back")


def test_locale_as_sent(lab):
    _, browser, _ = _enter(lab, locale="pt_BR")
    assert browser.get("/lang").json() == {"locale": "pt_BR", "on_start": "pt_BR"}


# -- configuration values weblablib documents -------------------------------------------------
@pytest.fixture
def make_app(redis_url, redis_base, tmp_path):
    """Flask apps on the test's Redis; their stores are closed at the end."""
    made = []

    def factory(**config):
        instance = str(tmp_path / f"inst{len(made)}")
        app = lab_app("cfg", redis_url, redis_base, instance, WEBLAB_NO_THREAD=True, **config)
        made.append(app)
        return app

    yield factory
    for app in made:
        state = app.extensions.get("weblab")
        if state is not None:
            state.shutdown()


def test_poll_interval_zero_is_accepted(make_app):
    """weblablib: WEBLAB_POLL_INTERVAL=0, WebLab-Deusto will not ask again (should_finish 0)."""
    from labruntime.testing import FakeRLMS

    app = make_app(WEBLAB_POLL_INTERVAL=0)
    weblab = WebLab(app)
    rlms = FakeRLMS.for_app(app)
    started = rlms.start({}, assigned_time=60)
    assert rlms.status(started.session_id) == 0
    with app.app_context():
        assert weblab.clean_expired_users(app) == 0  # still active
    assert rlms.dispose(started.session_id)["message"] == "Deleted"
    assert rlms.status(started.session_id) == -1


def test_negative_timeout_never_ends_a_polling_less_student(make_app):
    from labruntime.testing import FakeRLMS

    app = make_app(WEBLAB_TIMEOUT=-1)
    WebLab(app)
    rlms = FakeRLMS.for_app(app)
    started = rlms.start({}, assigned_time=60)
    assert rlms.status(started.session_id) > 0
    with app.app_context():
        state = app.extensions["weblab"]
        later = state.sessions.clock() + 30  # half a minute without any poll
        record = state.sessions.load(started.session_id, poll=False)
        assert state.sessions.should_finish(record, later) > 0
    assert rlms.dispose(started.session_id)["message"] == "Deleted"
