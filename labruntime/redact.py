"""What may reach a log: a session id only as a short hash, a URL only with its password
masked, and no registered secret at all.

A session id is the student's login link (``/callback/<id>``): logs name a session by
:func:`session_hash` (``sid:`` and 8 hex digits), the same in every process and in
gunicorn's access log, so its lines can be followed
without the id. A Redis URL may hold a password (``redis://:pw@host``): :func:`mask_url`.
:class:`SecretFilter` is the safety net labruntime's own processes install on their log
handler (:mod:`labruntime.cli.logs`): it masks ``scheme://user:password@`` in any line and the
secrets registered with :func:`add_secret` (the RLMS password, the Redis password), and
turns the id in a student's link (``/callback/<id>``: a web server's access log) into its hash.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import urllib.parse

__all__ = ["SecretFilter", "add_secret", "mask_text", "mask_url", "session_hash"]

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<pw>[^\s@/]+)@")
_CALLBACK = re.compile(r"/callback/(?!sid:)([A-Za-z0-9_\-.~%]{8,})")
_secrets: set[str] = set()
_lock = threading.Lock()
MIN_SECRET = 4  # shorter values are not masked (they would mask ordinary words)


def session_hash(session_id: str | None) -> str:
    """The name of a session in logs: ``sid:`` + ``sha256(id).hexdigest()[:8]`` (``-`` for
    none), as gunicorn's access log (config/gunicorn.conf.py) writes it: grep one session."""
    if not session_id:
        return "-"
    return "sid:" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:8]


def mask_url(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def add_secret(value: str | None) -> None:
    """Never let ``value`` reach a log line of this process (through SecretFilter)."""
    if value and len(value) >= MIN_SECRET:
        with _lock:
            _secrets.add(value)


def mask_text(text: str) -> str:
    """``text`` with URL passwords and the registered secrets replaced by ``***``, and the
    session id of a student's link (``/callback/<id>``, e.g. in an access log line) by its
    :func:`session_hash`."""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    text = _CALLBACK.sub(lambda m: f"/callback/{session_hash(m.group(1))}", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class SecretFilter(logging.Filter):
    """A handler filter: the formatted message and the traceback text, masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True
