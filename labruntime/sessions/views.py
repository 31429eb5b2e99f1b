"""HTTP: the RLMS blueprint (docs/protocol.md) and the student's callback, poll and logout.

Thin: parse, call the lab's state (:mod:`labruntime.state`), reply. Every RLMS reply is JSON with
``Content-Type: application/json``; errors become replies only here.
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
    g,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)

from labruntime.errors import InvalidStartRequestError, StoreUnavailableError
from labruntime.globals import current_user
from labruntime.state import get_state

from .access import forbidden_response, logout, poll
from .http_guard import json_body, json_error, rlms_guard
from .manager import DisposeOutcome
from .start_request import parse_start_request

__all__ = [
    "register_views",
    "student_link",
    "dispose_reply",
    "store_unavailable_response",
]

log = logging.getLogger(__name__)
REALM = 'Basic realm="labruntime"'
RESERVED = frozenset({"api", "test", "status"})  # /sessions/<these> are not session ids


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
    return request.form.to_dict()


def _credentials_ok() -> bool:
    config = get_state().config
    auth = request.authorization
    user = (auth.username or "") if auth else ""
    password = (auth.password or "") if auth else ""
    same_user = hmac.compare_digest(user.encode(), config.username.encode())
    same_password = hmac.compare_digest(password.encode(), config.password.encode())
    return bool(auth) and same_user & same_password


def _check_credentials() -> Any:
    if request.endpoint == "weblab.api" or _credentials_ok():
        return None
    auth = request.authorization
    given = auth.username if auth else None
    log.warning(
        "rejected RLMS request to %s: wrong or missing credentials (username %r)",
        request.path,
        given,
        extra={"weblab": {"event": "rejected", "path": request.path, "username": given}},
    )
    if request.endpoint == "weblab.test":
        why = "wrong username or password" if given else "no username provided"
        body = {"valid": False, "error_messages": [f"Invalid credentials: {why} (HTTP Basic)"]}
    else:
        body = {"error": True, "message": "Invalid credentials (HTTP Basic)"}
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
        return jsonify(error=True, message=str(error))
    try:
        state.run_on_start(record)
    except StoreUnavailableError:
        raise
    except Exception as error:
        log.exception("on_start of session %s raised; disposing it", record.session_id)
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
    state = get_state()
    user = state.load_user(session_id, poll=True)
    if user is None or not user.active:
        return forbidden_response()
    session[state.config.session_id_name] = session_id
    g._weblab_user = user
    initial_url = state.hooks.initial_url
    if initial_url is None:
        log.error("no @weblab.initial_url registered: the student cannot enter the lab")
        return Response(
            "This lab has no @weblab.initial_url: the lab author must register one.",
            500,
            mimetype="text/plain",
        )
    return redirect(initial_url())


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
        return jsonify(success=False, reason="User inactive", back=user.back)
    if not get_state().config.autopoll:
        poll()
    return jsonify(success=True, time_left=user.time_left)


def _logout_view(session_id: str) -> Any:
    refused = _own_session(session_id)
    if refused:
        return jsonify(success=False, reason=refused)
    user = current_user()
    return jsonify(success=logout(), back=user.back)


def store_unavailable_response(error: StoreUnavailableError) -> Any:
    """503 with a clear message: JSON for the RLMS and JSON clients, HTML for browsers."""
    log.error("%s", error)
    message = "The laboratory's session store (Redis) is unavailable; try again shortly."
    if request.path.startswith(get_state().config.base_url + "/weblab/") or (
        request.accept_mimetypes.best == "application/json"
    ):
        reply = jsonify(error=True, message=message)
        reply.status_code = 503
        return reply
    html = f"<!doctype html><title>Unavailable</title><h1>503 Unavailable</h1><p>{message}</p>"
    return Response(html, 503, mimetype="text/html")


def register_views(app: Flask, base_url: str, callback_url: str) -> None:
    """Add the RLMS blueprint, the student's routes and the 503 handler to ``app``."""
    bp = Blueprint("weblab", __name__)
    bp.before_request(_check_credentials)
    bp.add_url_rule("/sessions/api", "api", _api, methods=["GET"])
    bp.add_url_rule("/sessions/test", "test", _test, methods=["GET"])
    bp.add_url_rule("/sessions/", "start", _start, methods=["POST"])
    bp.add_url_rule("/sessions/status/multiple", "bulk_status", _bulk_status, methods=["POST"])
    bp.add_url_rule("/sessions/<session_id>/status", "status", _status, methods=["GET"])
    bp.add_url_rule("/sessions/<session_id>", "dispose", _dispose, methods=["POST"])
    app.register_blueprint(bp, url_prefix=base_url + "/weblab")
    app.add_url_rule(callback_url + "/<session_id>", "weblab_callback_url", _callback)
    for name, view in (("poll", _poll_view), ("logout", _logout_view)):
        app.add_url_rule(
            f"{callback_url}/<session_id>/{name}",
            f"weblab_{name}_url",
            view,
            methods=["GET", "POST"],
        )
    app.register_error_handler(StoreUnavailableError, store_unavailable_response)
    app.before_request(lambda: rlms_guard(base_url))
