"""Guards of the RLMS routes: JSON bodies read safely, a body size cap, JSON 404/405/413.

Only paths under ``<base>/weblab/`` are concerned: the lab's own routes keep Flask's defaults
(no MAX_CONTENT_LENGTH imposed, the lab's own error pages).
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from flask import Response, abort, jsonify, request
from werkzeug.exceptions import MethodNotAllowed, NotFound, RequestEntityTooLarge

__all__ = ["MAX_RLMS_BODY", "json_body", "json_error", "rlms_guard", "is_rlms_path"]

log = logging.getLogger(__name__)
MAX_RLMS_BODY = 1024 * 1024  # bytes: a start request is a few kB; 1 MB leaves a wide margin


def json_error(status: int, message: str) -> Response:
    """``{"error": true, "message": ...}`` with an HTTP status."""
    reply = jsonify(error=True, message=message)
    reply.status_code = status
    return reply


def _too_large() -> NoReturn:
    abort(
        json_error(
            413,
            f"the request body is larger than {MAX_RLMS_BODY} bytes, the limit of the RLMS "
            "routes: send the initial data without large payloads",
        )
    )


def json_body() -> Any:
    """The request body as JSON (forced, whatever the Content-Type); None if it is not JSON.

    A body nested too deeply to parse is a JSON 400, a body over the cap a JSON 413.
    """
    try:
        # a stream capped at MAX + 1 stops there: MAX + 1 bytes read means it was longer
        if len(request.get_data(cache=True)) > MAX_RLMS_BODY:
            _too_large()
        return request.get_json(force=True, silent=True)
    except RecursionError:
        log.warning("RLMS request to %s: JSON body nested too deeply", request.path)
        abort(json_error(400, "the JSON body is nested too deeply to be read"))
    except RequestEntityTooLarge:
        _too_large()


def is_rlms_path(base_url: str) -> bool:
    """Whether this request is for the RLMS routes (``<base>/weblab/...``)."""
    return request.path.startswith(base_url + "/weblab/")


def rlms_guard(base_url: str) -> Any:
    """before_request of the app: cap RLMS bodies, answer RLMS routing errors in JSON."""
    if not is_rlms_path(base_url):
        return None
    if request.content_length is not None and request.content_length > MAX_RLMS_BODY:
        _too_large()
    request.max_content_length = MAX_RLMS_BODY + 1  # chunked bodies: see json_body
    error = request.routing_exception
    if isinstance(error, MethodNotAllowed):
        allowed = ", ".join(sorted(error.valid_methods or ()))
        reply = json_error(405, f"{request.method} is not allowed on {request.path} ({allowed})")
        if error.valid_methods:
            reply.headers["Allow"] = allowed
        return reply
    if isinstance(error, NotFound):
        return json_error(404, f"no RLMS route {request.path} (see the WebLab protocol)")
    return None
