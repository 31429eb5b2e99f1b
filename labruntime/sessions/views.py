"""HTTP: the RLMS blueprint (docs/protocol.md) and the student's callback, poll and logout.

Thin: parse, call the lab's state (:mod:`labruntime.state`), reply. Every RLMS reply is JSON with
``Content-Type: application/json``; errors become replies only here.

The student's side: the session cookie is ``SameSite=Lax`` unless the lab says otherwise (and
``Secure`` with ``WEBLAB_SCHEME=https``); logout is a POST (or jQuery's ``$.get``, which a
page of another site cannot send); a callback link never silently replaces another session
running in the same browser: the student confirms with a POST form.
"""

from __future__ import annotations

import hmac
import logging
import math
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from labruntime.errors import InvalidStartRequestError, StoreUnavailableError
from labruntime.globals import current_user
from labruntime.redact import session_hash
from labruntime.state import get_state

from .access import cross_site_response, forbidden_response, logout, poll
from .http_guard import (
    basic_credentials,
    cross_site_problem,
    form_body,
    json_body,
    json_error,
    json_http_error,
    json_only,
    rlms_guard,
)
from .manager import DisposeOutcome
from .start_request import parse_start_request, safe_back

__all__ = [
    "register_views",
    "student_link",
    "dispose_reply",
    "store_unavailable_response",
]

log = logging.getLogger(__name__)
REALM = 'Basic realm="labruntime"'
RESERVED = frozenset({"api", "test", "status"})  # /sessions/<these> are not session ids
JSON_STUDENT_ROUTES = frozenset({"weblab_poll_url", "weblab_logout_url"})


def student_link(session_id: str) -> str:
    """The absolute link for the student (WEBLAB_SCHEME, SCRIPT_NAME and base URL applied)."""
    scheme = get_state().config.scheme
    options: dict[str, Any] = {"_external": True}
    if scheme:
        options["_scheme"] = scheme
    return url_for("weblab_callback_url", session_id=session_id, **options)


def _payload() -> dict[str, Any]:
    data = json_body()
    if isinstance(data, dict):
        return data
    return form_body()


def _credentials_ok(given: tuple[str, str] | None) -> bool:
    config = get_state().config
    user, password = given or ("", "")
    same_user = hmac.compare_digest(user.encode(), config.username.encode())
    same_password = hmac.compare_digest(password.encode(), config.password.encode())
    return given is not None and same_user & same_password


def _check_credentials() -> Any:
    given = basic_credentials()
    if request.endpoint == "weblab.api" or _credentials_ok(given):
        return None
    given_user = given[0][:100] if given else None
    path = request.url_rule.rule if request.url_rule else request.path  # no session id in logs
    log.warning(
        "rejected RLMS request to %s: wrong or missing credentials (username %r)",
        path,
        given_user,
        extra={"weblab": {"event": "rejected", "path": path, "username": given_user}},
    )
    # weblablib's phrases: "Invalid credentials: ...", "You don't seem to be a WebLab-Instance"
    if request.endpoint == "weblab.test":
        why = "wrong username provided or wrong password" if given else "no username provided"
        body = {"valid": False, "error_messages": [f"Invalid credentials: {why} (HTTP Basic)"]}
    else:
        message = "Invalid credentials (HTTP Basic): You don't seem to be a WebLab-Instance"
        body = {"error": True, "message": message}
    reply = jsonify(body)
    reply.status_code = 401
    reply.headers["WWW-Authenticate"] = REALM
    return reply


def _api() -> Any:
    return jsonify(api_version="1")


def _test() -> Any:
    return jsonify(valid=True)


def _start() -> Any:
    state = get_state()
    try:
        start = parse_start_request(_payload())
        record = state.sessions.create(start)
    except InvalidStartRequestError as error:
        log.warning("start request refused: %s", error)
        reply = jsonify(error=True, message=str(error))
        reply.status_code = error.status
        return reply
    try:
        state.run_on_start(record)
    except StoreUnavailableError:
        raise
    except Exception as error:
        log.exception(
            "on_start of session %s raised; disposing it", session_hash(record.session_id)
        )
        state.dispose(record.session_id, "start failed")
        return jsonify(error=True, message=f"Error initializing laboratory: {error}")
    return jsonify(url=student_link(record.session_id), session_id=record.session_id)


def _status(session_id: str) -> Any:
    return jsonify(should_finish=get_state().sessions.status(session_id))


def _bulk_status() -> Any:
    payload = json_body()
    ids = payload.get("session_ids") if isinstance(payload, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return jsonify(
            success=False,
            error_code="missing-parameters",
            error_human="session_ids (a list of session id strings) is missing",
        )
    timeout = payload.get("timeout")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        timeout = None
    return jsonify(status=get_state().sessions.bulk_status(ids, timeout))


def dispose_reply(outcome: DisposeOutcome) -> dict[str, Any]:
    """The dispose reply both clients understand (never a falsy ``data``)."""
    if not outcome.found:
        return {"message": "Not found"}
    if outcome.retry_in is None:
        return {"message": "Deleted"}
    again = max(1, math.ceil(outcome.retry_in))
    return {
        "finished": False,
        "ask_again": again,
        "should_finish": again,
        "message": f"Still finishing the session's work; ask again in {again} s",
    }


def _dispose(session_id: str) -> Any:
    if session_id in RESERVED:
        return json_error(405, f"POST is not allowed on {request.path} (GET only)")
    action = _payload().get("action")
    if action != "delete":
        return jsonify(message="Unknown op")
    outcome = get_state().dispose(session_id, "rlms")
    return jsonify(dispose_reply(outcome))


def _callback(session_id: str) -> Any:
    """The student's link. A browser already in another active session of this lab keeps it
    until the student confirms the switch (a POST of the page :func:`_confirm_page` shows):
    a link sent by somebody else cannot silently put the student in that person's slot."""
    state = get_state()
    if request.method == "POST":
        refused = cross_site_problem()
        if refused:
            return cross_site_response(refused)
    user = state.load_user(session_id, poll=True)
    if user is None or not user.active:
        return forbidden_response()
    initial_url = state.hooks.initial_url
    if initial_url is None:
        log.error("no @weblab.initial_url registered: the student cannot enter the lab")
        return Response(
            "This lab has no @weblab.initial_url: the lab author must register one.",
            500,
            mimetype="text/plain",
        )
    if not current_app.secret_key:  # accepted at init_app, as in weblablib; refused here
        log.error("SECRET_KEY is not set: the student cannot enter the lab")
        return Response(
            "This lab has no SECRET_KEY, so the student's session cannot be kept: the lab "
            "author must set app.config['SECRET_KEY'] to a long random string.",
            500,
            mimetype="text/plain",
        )
    current_id = session.get(state.config.session_id_name)
    if request.method == "GET" and current_id and current_id != session_id:
        current = state.load_user(str(current_id), poll=False)
        if current is not None and current.active:
            return _confirm_page(current, user, initial_url())
    session[state.config.session_id_name] = session_id
    g._weblab_user = user
    return redirect(initial_url(), 303 if request.method == "POST" else 302)


def _confirm_page(current: Any, new: Any, lab_url: str) -> Response:
    """Ask before replacing the browser's active session by another one."""
    who = escape(current.full_name or current.username or "a student")
    other = escape(new.full_name or new.username or "another student")
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Another session</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'></head><body>"
        "<h1>You are already in this laboratory</h1>"
        f"<p>This browser has an active session of {who} "
        f"({int(current.time_left)} s left). The link you opened is a session of {other}.</p>"
        f"<p><a id='keep' href='{escape(lab_url)}'>Stay in the current session</a></p>"
        f"<form method='post' action='{escape(request.script_root + request.path)}'>"
        "<button id='switch' type='submit'>Switch to the new session</button></form>"
        "</body></html>"
    )
    reply = Response(html, 200, mimetype="text/html")
    reply.headers["Cache-Control"] = "no-store"
    # the page's URL holds the new session id: no Referer to other sites (same-origin keeps
    # the Origin of the switch form's POST, which "no-referrer" would turn into "null")
    reply.headers["Referrer-Policy"] = "same-origin"
    return reply


def _own_session(session_id: str) -> str | None:
    """Why a poll/logout for ``session_id`` is refused (None: it is the cookie's session)."""
    if session.get(get_state().config.session_id_name) != session_id:
        return "Different session identifier"
    return None


def _poll_view(session_id: str) -> Any:
    refused = _own_session(session_id)
    if refused:
        return jsonify(success=False, reason=refused)
    user = current_user()
    if user.is_anonymous:
        return jsonify(success=False, reason="Not found")
    if not user.active:
        return jsonify(success=False, reason="User inactive", back=safe_back(user.back))
    if not get_state().config.autopoll:
        poll()
    return jsonify(success=True, time_left=user.time_left)


def _logout_view(session_id: str) -> Any:
    """POST only, as a state change; also jQuery's ``$.get`` (weblablib's poll script on
    page close), recognised by its ``X-Requested-With`` header, which another site's page
    cannot send (an ``<img>`` cannot, a ``fetch`` needs the lab's CORS consent)."""
    if request.method != "POST" and request.headers.get("X-Requested-With") != "XMLHttpRequest":
        reply = jsonify(success=False, reason="Log out with a POST request")
        reply.status_code = 405
        reply.headers["Allow"] = "POST"
        return reply
    refused = cross_site_problem()
    if refused:
        return cross_site_response(refused)
    refused = _own_session(session_id)
    if refused:
        return jsonify(success=False, reason=refused)
    user = current_user()
    return jsonify(success=logout(), back=safe_back(user.back))


def store_unavailable_response(error: StoreUnavailableError) -> Any:
    """503 with a clear message: JSON for the RLMS (naming the cause: down, disk full...) and
    JSON clients, HTML for browsers. Logged at most once per interval, not once per request."""
    state = get_state()
    state.connection.outage.failed("web requests", error)
    message = "The laboratory's session store (Redis) is unavailable; try again shortly."
    if request.path.startswith(state.config.base_url + "/weblab/"):
        message = f"The laboratory's session store is unavailable: {error}"
    if (
        request.path.startswith(state.config.base_url + "/weblab/")
        or request.endpoint in JSON_STUDENT_ROUTES
        or request.accept_mimetypes.best == "application/json"
    ):
        reply = jsonify(error=True, message=message)
        reply.status_code = 503
        return reply
    html = f"<!doctype html><title>Unavailable</title><h1>503 Unavailable</h1><p>{message}</p>"
    return Response(html, 503, mimetype="text/html")


def _cookie_defaults(app: Flask) -> None:
    """The session cookie: ``SameSite=Lax`` unless the lab set it, ``Secure`` under https."""
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:  # Flask's default: no attribute
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if get_state(app).config.scheme == "https":
        app.config["SESSION_COOKIE_SECURE"] = True


def register_views(app: Flask, base_url: str, callback_url: str) -> None:
    """Add the RLMS blueprint, the student's routes and the 503 handler to ``app``."""
    _cookie_defaults(app)
    bp = Blueprint("weblab", __name__)
    bp.before_request(_check_credentials)
    bp.register_error_handler(HTTPException, json_http_error)
    bp.add_url_rule("/sessions/api", "api", _api, methods=["GET"])
    bp.add_url_rule("/sessions/test", "test", _test, methods=["GET"])
    # "/sessions" too: some clients drop the trailing slash (no redirect: a POST must not move)
    bp.add_url_rule("/sessions/", "start", _start, methods=["POST"], strict_slashes=False)
    bp.add_url_rule("/sessions/status/multiple", "bulk_status", _bulk_status, methods=["POST"])
    bp.add_url_rule("/sessions/<session_id>/status", "status", _status, methods=["GET"])
    bp.add_url_rule("/sessions/<session_id>", "dispose", _dispose, methods=["POST"])
    app.register_blueprint(bp, url_prefix=base_url + "/weblab")
    app.add_url_rule(
        callback_url + "/<session_id>", "weblab_callback_url", _callback, methods=["GET", "POST"]
    )
    for name, view in (("poll", _poll_view), ("logout", _logout_view)):
        app.add_url_rule(
            f"{callback_url}/<session_id>/{name}",
            f"weblab_{name}_url",
            view,
            methods=["GET", "POST"],
        )
    app.register_error_handler(StoreUnavailableError, store_unavailable_response)
    app.before_request(lambda: rlms_guard(base_url))
    app.after_request(lambda response: json_only(base_url, response))
