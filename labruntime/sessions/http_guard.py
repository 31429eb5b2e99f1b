"""HTTP guards: the RLMS routes (bodies read safely, a size cap, every reply JSON, HTTP Basic
read without surprises) and the student's side (state-changing requests from another site).

The RLMS part concerns only paths under ``<base>/weblab/``: the lab's own routes keep Flask's
defaults (no MAX_CONTENT_LENGTH imposed, the lab's own error pages).
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn
from urllib.parse import urlsplit

from flask import Response, abort, jsonify, request
from werkzeug.exceptions import (
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)
from werkzeug.routing import RequestRedirect

__all__ = [
    "MAX_RLMS_BODY",
    "basic_credentials",
    "form_body",
    "cross_site_problem",
    "json_body",
    "json_error",
    "json_http_error",
    "json_only",
    "rlms_guard",
    "is_rlms_path",
]

log = logging.getLogger(__name__)
MAX_RLMS_BODY = 1024 * 1024  # bytes: a start request is a few kB; 1 MB leaves a wide margin
MAX_FORM_FIELD = 500_000  # bytes of one multipart field kept in memory (Werkzeug's default)
MAX_FORM_PARTS = 1000  # parts of a multipart body (Werkzeug's default)


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


def form_body() -> dict[str, str]:
    """The request's form fields (urlencoded or multipart); a field over MAX_FORM_FIELD bytes
    or more than MAX_FORM_PARTS parts is a JSON 413, on every Werkzeug version."""
    fields = request.form.to_dict()
    if any(len(value) > MAX_FORM_FIELD for value in fields.values()):
        abort(json_http_error(RequestEntityTooLarge()))
    return fields


def json_body() -> Any:
    """The request body as JSON (forced, whatever the Content-Type); None if it is not JSON.

    A body nested too deeply to parse is a JSON 400, a body over the cap a JSON 413.
    """
    try:
        # a stream capped at MAX + 1 stops there: MAX + 1 bytes read means it was longer
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        _too_large()
    except HTTPException as error:  # e.g. the client went away mid-body
        abort(json_error(error.code or 400, f"the request body could not be read: {error}"))
    except Exception as error:  # a bad chunk size: the server's own error class (gunicorn...)
        log.warning("RLMS request to %s: unreadable body (%s)", request.path, error)
        abort(
            json_error(
                400,
                "the request body could not be read (malformed chunked encoding?): "
                f"{type(error).__name__}",
            )
        )
    if len(data) > MAX_RLMS_BODY:
        _too_large()
    try:
        return request.get_json(force=True, silent=True)
    except RecursionError:
        log.warning("RLMS request to %s: JSON body nested too deeply", request.path)
        abort(json_error(400, "the JSON body is nested too deeply to be read"))


def json_http_error(error: HTTPException) -> Response:
    """An HTTP error raised by an RLMS view (a multipart part over Werkzeug's limits...) as
    JSON instead of Werkzeug's HTML page."""
    status = error.code or 500
    if isinstance(error, RequestEntityTooLarge):
        message = (
            "the request body is too large: a form field over 500 kB, more than 1,000 parts or "
            f"more than {MAX_RLMS_BODY} bytes; send the initial data as a small JSON body"
        )
    else:
        message = error.description or error.name
    reply = json_error(status, message)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        reply.headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return reply


def basic_credentials() -> tuple[str, str] | None:
    """(username, password) of an ``Authorization: Basic`` header; None when there is none, it
    is another scheme (Digest, Bearer...) or it cannot be decoded (bytes that are not ASCII
    in the header, bad base64, not UTF-8)."""
    try:
        auth = request.authorization
    except ValueError:  # Werkzeug's b64decode refuses a header holding non-ASCII characters
        return None
    if auth is None or auth.type != "basic":
        return None
    return auth.username or "", auth.password or ""


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _host_port(url: str) -> tuple[str, int | None] | None:
    """(host name, port or None for the scheme's default) of an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return None
    return host, None if port == (443 if scheme == "https" else 80) else port


def _same_host(url: str) -> bool:
    """Whether ``url`` (an Origin or Referer) names the host this request was sent to. The
    scheme is not compared: behind a proxy that ends TLS the lab sees http. A Host without a
    port (or 80/443) is compared by name: nginx's ``proxy_set_header Host $host`` drops the
    port the browser used (a page on another port is same-site, refused by Sec-Fetch-Site)."""
    origin = _host_port(url)
    own = _host_port(f"http://{request.host}")
    if origin is None or own is None:
        return False
    if own[1] in (None, 80, 443):
        return origin[0] == own[0]
    return origin == own


def cross_site_problem() -> str | None:
    """Why this request is a state-changing one sent by another site's page (a forged form or
    ``fetch``), or None. Reads what browsers send: ``Sec-Fetch-Site`` (set by the browser
    itself, so it decides when present), else ``Origin``, else ``Referer``; a request with none
    of them is not a browser's cross-site request."""
    if request.method in SAFE_METHODS:
        return None
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site.lower() in ("same-origin", "none"):
            return None  # e.g. a same-origin form of a page with Referrer-Policy no-referrer
        return f"it comes from another site (Sec-Fetch-Site: {fetch_site[:40]})"
    origin = request.headers.get("Origin")
    if origin is not None:
        return None if _same_host(origin) else f"its Origin {origin[:100]!r} is another site"
    referer = request.headers.get("Referer")
    if referer and not _same_host(referer):
        return "its Referer is another site"
    return None


class _CappedInput:
    """A WSGI input that ends after ``limit`` bytes (the body cap on Flask < 3.1)."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def _size(self, size: int | None) -> int:
        return self._left if size is None or size < 0 else min(size, self._left)

    def read(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            return b""
        data: bytes = self._stream.read(self._size(size))
        self._left -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            return b""
        data: bytes = self._stream.readline(self._size(size))
        self._left -= len(data)
        return data


KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Location", "Retry-After")


def json_only(base_url: str, response: Response) -> Response:
    """after_request of the app: a reply under ``<base>/weblab/`` that is not JSON yet (Flask's
    automatic OPTIONS answer, an error page of an extension...) becomes a JSON one, with the
    same status and the headers that matter."""
    if not is_rlms_path(base_url) or response.mimetype == "application/json":
        return response
    status = response.status_code
    if status < 400:
        body: dict[str, Any] = {"message": response.status}
        if "Allow" in response.headers:
            body["allow"] = [m.strip() for m in response.headers["Allow"].split(",")]
    else:
        body = {"error": True, "message": response.status}
    reply = jsonify(body)
    reply.status_code = status
    for name in KEPT_HEADERS:
        if name in response.headers:
            reply.headers[name] = response.headers[name]
    return reply


def is_rlms_path(base_url: str) -> bool:
    """Whether this request is for the RLMS routes (``<base>/weblab/...``)."""
    return request.path.startswith(base_url + "/weblab/")


def rlms_guard(base_url: str) -> Any:
    """before_request of the app: cap RLMS bodies, answer RLMS routing errors in JSON."""
    if not is_rlms_path(base_url):
        return None
    if request.content_length is not None and request.content_length > MAX_RLMS_BODY:
        _too_large()
    try:
        request.max_content_length = MAX_RLMS_BODY + 1  # chunked bodies: see json_body
    except AttributeError:  # Flask < 3.1: read-only; cap the WSGI input at the same size
        environ = request.environ
        environ["wsgi.input"] = _CappedInput(environ["wsgi.input"], MAX_RLMS_BODY + 1)
    # Werkzeug >= 2.3's defaults, also on 2.2 (which has no cap on a form field's size)
    request.max_form_memory_size = MAX_FORM_FIELD
    request.max_form_parts = MAX_FORM_PARTS
    error = request.routing_exception
    if isinstance(error, RequestRedirect):  # e.g. a missing trailing slash
        reply = json_error(error.code, f"{request.path} moved to {error.new_url}")
        reply.headers["Location"] = error.new_url
        return reply
    if isinstance(error, MethodNotAllowed):
        allowed = ", ".join(sorted(error.valid_methods or ()))
        reply = json_error(405, f"{request.method} is not allowed on {request.path} ({allowed})")
        if error.valid_methods:
            reply.headers["Allow"] = allowed
        return reply
    if isinstance(error, NotFound):
        return json_error(404, f"no RLMS route {request.path} (see the WebLab protocol)")
    return None
