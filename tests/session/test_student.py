"""The student's side: the link, the cookie, the forbidden page, data, poll and logout."""

from __future__ import annotations

import time

import pytest
from flask import render_template_string

from labruntime import (
    AnonymousUser,
    CurrentUser,
    ExpiredUser,
    NoContextError,
    logout,
    poll,
    requires_login,
    weblab_user,
)


def test_link_sets_cookie_and_redirects(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    reply = lab.enter(sid)
    assert reply.status_code == 302 and reply.headers["Location"] == "/lab/"
    assert "session=" in reply.headers["Set-Cookie"]
    assert lab.client.get("/lab/").data == b"hello jdoe 1"


def test_cookie_name_and_path_per_lab(make_lab):
    lab = make_lab(SESSION_COOKIE_NAME="lab1sess", SESSION_COOKIE_PATH="/lab1")
    reply = lab.enter(lab.new_session())
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("lab1sess=") and "Path=/lab1" in cookie


def test_custom_session_id_name(make_lab):
    lab = make_lab(WEBLAB_SESSION_ID_NAME="my_sid")
    sid = lab.new_session()
    lab.enter(sid)
    with lab.client.session_transaction() as flask_session:
        assert flask_session["my_sid"] == sid


def test_unknown_link_and_anonymous_get_plain_403(make_lab):
    lab = make_lab()
    reply = lab.enter("not-a-session")
    assert reply.status_code == 403 and reply.data == b"Access forbidden"
    assert lab.client.get("/lab/").status_code == 403


def test_forbidden_link(make_lab):
    lab = make_lab(WEBLAB_UNAUTHORIZED_LINK="https://weblab.example.org/")
    reply = lab.client.get("/lab/")
    assert reply.status_code == 302 and reply.headers["Location"] == "https://weblab.example.org/"


def test_forbidden_template(make_lab, tmp_path):
    lab = make_lab(WEBLAB_UNAUTHORIZED_TEMPLATE="forbidden.html")
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "forbidden.html").write_text("<h1>Go to WebLab-Deusto</h1>")
    lab.app.template_folder = str(folder)
    reply = lab.client.get("/lab/")
    assert reply.status_code == 403 and b"Go to WebLab-Deusto" in reply.data


def test_expired_user_goes_back_and_is_kept(make_lab):
    lab = make_lab()

    @lab.app.route("/results")
    @requires_login
    def results():
        user = weblab_user._get_current_object()
        return f"{type(user).__name__} {user.active} {user.data['visits']} {user.back}"

    sid = lab.new_session()
    lab.enter(sid)
    lab.client.get("/lab/")
    lab.dispose(sid)

    reply = lab.client.get("/lab/")
    assert reply.status_code == 302 and reply.headers["Location"] == "http://rlms/back"
    assert lab.client.get("/results").data == b"ExpiredUser False 1 http://rlms/back"
    ttl = lab.state.connection.client.ttl(lab.state.connection.key("weblab", "session", sid))
    assert 3590 < ttl <= 3600


def test_expired_users_timeout(make_lab):
    lab = make_lab(WEBLAB_EXPIRED_USERS_TIMEOUT=1)
    sid = lab.new_session()
    lab.dispose(sid)
    with lab.app.app_context():
        assert isinstance(lab.state.load_user(sid), ExpiredUser)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with lab.app.app_context():
            if lab.state.load_user(sid) is None:
                break
        time.sleep(0.1)
    with lab.app.app_context():
        assert lab.state.load_user(sid) is None


def test_user_attributes(make_lab):
    lab = make_lab()
    seen = {}

    @lab.weblab.user_loader
    def load(username_unique):
        return {"id": username_unique}

    @lab.app.route("/me")
    def me():
        user = weblab_user._get_current_object()
        seen.update(
            cls=type(user),
            session_id=user.session_id,
            username=user.username,
            unique=user.username_unique,
            full_name=user.full_name,
            locale=user.locale,
            back=user.back,
            experiment_id=user.experiment_id,
            client=user.request_client_data,
            server=user.request_server_data,
            active=user.active,
            anon=user.is_anonymous,
            user=user.user,
            time_left=user.time_left,
            span=user.max_date - user.start_date,
        )
        return "ok"

    sid = lab.new_session(client_data={"k": "v"})
    lab.enter(sid)
    lab.client.get("/me")
    assert seen["cls"] is CurrentUser and seen["session_id"] == sid
    assert (seen["username"], seen["unique"], seen["full_name"]) == (
        "jdoe",
        "jdoe@deusto",
        "jdoe",
    )
    assert seen["locale"] == "es" and seen["back"] == "http://rlms/back"
    assert seen["experiment_id"] == "led@arduino"
    assert seen["client"] == {"k": "v"} and seen["server"] == lab.server_data()
    assert seen["active"] is True and seen["anon"] is False
    assert seen["user"] == {"id": "jdoe@deusto"}
    assert 295 < seen["time_left"] <= 300 and seen["span"] == pytest.approx(300)


def test_anonymous_user(make_lab):
    lab = make_lab()
    with lab.app.test_request_context("/"):
        user = weblab_user._get_current_object()
        assert isinstance(user, AnonymousUser)
        assert user.is_anonymous and not user.active and user.time_left == 0
        assert poll() is False and logout() is False


def test_weblab_user_outside_context_is_a_clear_error():
    with pytest.raises(NoContextError, match="outside a Flask context"):
        _ = weblab_user.username


def test_data_saved_only_when_changed(make_lab, count_round_trips):
    lab = make_lab()

    @lab.app.route("/read")
    def read():
        return str(weblab_user.data.get("started"))

    @lab.app.route("/nested")
    def nested():
        weblab_user.data.setdefault("log", []).append(1)
        return "ok"

    sid = lab.new_session()
    lab.enter(sid)
    with count_round_trips(lab) as trips:
        assert lab.client.get("/read").data == b"True"
    assert trips.count <= 1  # the poll + read (none when remembered), nothing after
    with count_round_trips(lab) as trips:
        lab.client.get("/nested")
    assert 1 <= trips.count <= 2  # the read (if not remembered), the save (nested change)
    lab.client.get("/nested")
    with lab.app.app_context():
        assert lab.state.load_user(sid).data["log"] == [1, 1]


def test_data_store_and_retrieve(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    with lab.app.app_context():
        first = lab.state.load_user(sid)
        second = lab.state.load_user(sid)
        first.data["x"] = 1
        first.data.store()
        assert "x" not in second.data
        second.data.retrieve()
        assert second.data["x"] == 1
        first.data["bad"] = object()
        with pytest.raises(TypeError, match="JSON"):
            first.data.store()


def test_poll_timeout_makes_user_inactive(make_lab):
    lab = make_lab(WEBLAB_TIMEOUT=0.3)
    sid = lab.new_session()
    lab.enter(sid)
    assert lab.client.get("/lab/").status_code == 200
    time.sleep(0.5)
    assert lab.status(sid) == -1
    reply = lab.client.get("/lab/")
    assert reply.status_code == 302 and reply.headers["Location"] == "http://rlms/back"


def test_polling_keeps_session_alive(make_lab):
    lab = make_lab(WEBLAB_TIMEOUT=0.4)
    sid = lab.new_session()
    lab.enter(sid)
    for _ in range(4):
        time.sleep(0.2)
        assert lab.client.post(f"/callback/{sid}/poll").get_json()["success"] is True
    assert lab.status(sid) > 0


def test_timeout_zero_disables_poll_timeout(make_lab):
    lab = make_lab(WEBLAB_TIMEOUT=0)
    sid = lab.new_session()
    time.sleep(0.2)
    assert lab.status(sid) == 5
    assert lab.weblab.clean_expired_users(lab.app) == 0
    assert lab.disposed == []


def test_autopoll_off_does_not_poll(make_lab):
    lab = make_lab(WEBLAB_AUTOPOLL="False", WEBLAB_TIMEOUT=0.3)
    sid = lab.new_session()
    lab.enter(sid)
    time.sleep(0.2)
    lab.client.get("/lab/")
    time.sleep(0.2)
    assert lab.status(sid) == -1


def test_logout_route(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    lab.enter(sid)
    body = lab.client.post(f"/callback/{sid}/logout").get_json()
    assert body == {"success": True, "back": "http://rlms/back"}
    assert lab.status(sid) == -1
    assert lab.client.get("/lab/").status_code == 302
    assert lab.weblab.clean_expired_users(lab.app) == 1
    assert lab.disposed == [sid]


def test_poll_script_in_templates(make_lab):
    lab = make_lab(WEBLAB_TIMEOUT=5)

    @lab.app.route("/page")
    def page():
        return render_template_string(
            "{{ weblab_user.username }} {{ weblab_poll_script(logout_on_close=True) }}"
        )

    sid = lab.new_session()
    lab.enter(sid)

    html = lab.client.get("/page").data.decode()
    assert html.startswith("jdoe <script>")
    assert (
        f'"/callback/{sid}/poll"' in html
        and "2500" in html  # WEBLAB_TIMEOUT / 2
        and f'sendBeacon("/callback/{sid}/logout")' in html
    )


def test_socket_decorators_skip_handler_when_check_fails(make_lab):
    from labruntime import socket_requires_active, socket_requires_login, socket_weblab_user

    lab = make_lab()
    ran = []

    @socket_requires_active
    def on_active():
        ran.append(("active", socket_weblab_user.username))
        return "ran"

    @socket_requires_login
    def on_login():
        ran.append(("login", socket_weblab_user.username))
        return "ran"

    sid = lab.new_session()
    with lab.app.test_request_context("/socket.io/"):
        assert on_active() is None and on_login() is None  # anonymous
    with lab.app.test_request_context("/socket.io/"):
        from flask import session

        session["weblab_session_id"] = sid
        assert on_active() == "ran" and on_login() == "ran"
        lab.dispose(sid)
        assert on_active() is None  # socket users are loaded afresh on every event
        assert on_login() == "ran"
    assert ran == [("active", "jdoe"), ("login", "jdoe"), ("login", "jdoe")]


def test_bind_user_outside_requests(make_lab):
    from labruntime.sessions.binding import bind_user

    lab = make_lab()
    sid = lab.new_session()
    with lab.app.app_context():
        assert isinstance(weblab_user._get_current_object(), AnonymousUser)
        user = lab.state.load_user(sid)
        with bind_user(user):
            assert weblab_user.session_id == sid
            weblab_user.data["from_task"] = True
        assert lab.state.load_user(sid).data["from_task"] is True


def test_poll_route_replies(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    other = lab.new_session()
    assert lab.client.get(f"/callback/{sid}/poll").get_json() == {
        "success": False,
        "reason": "Different session identifier",
    }
    lab.enter(sid)
    assert lab.client.get(f"/callback/{other}/poll").get_json()["success"] is False
    assert lab.client.get(f"/callback/{sid}/poll").get_json()["success"] is True
    lab.dispose(sid)
    reply = lab.client.get(f"/callback/{sid}/poll").get_json()
    assert reply["success"] is False and reply["reason"] == "User inactive"
    with lab.client.session_transaction() as flask_session:
        flask_session["weblab_session_id"] = "gone"
    reply = lab.client.get("/callback/gone/poll").get_json()
    assert reply == {"success": False, "reason": "Not found"}


def test_no_poll_script_without_timeout_or_session(make_lab):
    lab = make_lab(WEBLAB_TIMEOUT=0)

    @lab.app.route("/page")
    def page():
        return render_template_string("{{ weblab_poll_script() }}")

    assert lab.client.get("/page").data.startswith(b"<!--")
    lab.enter(lab.new_session())
    assert lab.client.get("/page").data.startswith(b"<!--")


@pytest.mark.parametrize(
    "sent,kept", [("es", "es"), ("esp", "esp"), ("pt_BR", "pt_BR"), (None, None)]
)
def test_locale_is_kept_as_sent(make_lab, sent, kept):
    lab = make_lab()
    sid = lab.new_session(sd=lab.server_data(**{"request.locale": sent}))
    with lab.app.app_context():
        assert lab.state.load_user(sid).locale == kept


def test_update_data_is_deprecated_but_works(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    with lab.app.app_context():
        user = lab.state.load_user(sid)
        with pytest.warns(DeprecationWarning, match="data.store"):
            user.update_data({"old": "style"})
        assert lab.state.load_user(sid).data == {"old": "style"}


def test_user_str(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    with lab.app.app_context():
        assert sid in str(lab.state.load_user(sid))
    assert str(AnonymousUser()) == "<AnonymousUser>"
