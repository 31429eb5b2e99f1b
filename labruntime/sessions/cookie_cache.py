"""Flask's signed-cookie session, with the cookies it verified remembered.

Every student request carries the same signed cookie (it holds the RLMS session id and is
written once, by the callback). Flask verifies it on every request: a serializer built,
the key derived, an HMAC computed, the payload base64- and JSON-decoded, about a third of
what a lab's student view costs beyond a bare Flask view. :class:`CachedCookieSessionInterface`
is Flask's own :class:`~flask.sessions.SecureCookieSessionInterface` that remembers, for a
bounded number of cookies, what the cookie decoded to and when it was signed. A cookie seen
before is the same bytes, hence the same verified payload: it is not verified again, while
its age is still checked against ``PERMANENT_SESSION_LIFETIME`` at each request as Flask
does, and a change of ``SECRET_KEY`` (or its fallbacks) forgets what was remembered.

Only payloads of plain values (strings, numbers, booleans, None) are remembered, so that a
view changing a nested value in place cannot change the remembered one; any other cookie
takes Flask's path unchanged. ``init_app`` installs it only over Flask's default interface
(a lab's own session interface is left alone).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature

__all__ = ["CACHE_SIZE", "CachedCookieSessionInterface", "install"]

CACHE_SIZE = 4096  # cookies remembered per app (a few hundred bytes each)
_PLAIN = (str, int, float, bool, type(None))


class CachedCookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions; a cookie verified once is not verified again."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.verified = 0  # cookies verified (the cost tests count them)
        self._keys: tuple[Any, ...] | None = None  # the keys the cached cookies were signed with
        self._cache: dict[str, tuple[dict[str, Any], int]] = {}  # cookie: (payload, signed at)
        self._lock = threading.Lock()

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not app.secret_key:
            return None
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if keys == self._keys:
            hit = self._cache.get(value)
            if hit is not None:
                payload, signed = hit
                if 0 <= int(time.time()) - signed <= max_age:
                    return self.session_class(payload)
        return self._verify(app, value, max_age, keys)

    def _verify(
        self, app: Flask, value: str, max_age: int, keys: tuple[Any, ...]
    ) -> SecureCookieSession | None:
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        self.verified += 1
        try:
            payload, signed = serializer.loads(value, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return self.session_class()
        if isinstance(payload, dict) and all(isinstance(v, _PLAIN) for v in payload.values()):
            with self._lock:
                if keys != self._keys:
                    self._cache, self._keys = {}, keys
                if len(self._cache) >= self.size:
                    self._cache.clear()
                self._cache[value] = (dict(payload), int(signed.timestamp()))
        return self.session_class(payload)


def install(app: Flask) -> None:
    """Use :class:`CachedCookieSessionInterface` for ``app`` if it has Flask's default one."""
    if type(app.session_interface) is SecureCookieSessionInterface:
        app.session_interface = CachedCookieSessionInterface()
