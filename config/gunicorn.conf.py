"""gunicorn settings for one labruntime lab on a Raspberry Pi (behind nginx).

    SCRIPT_NAME=/lab1 gunicorn -c /etc/labruntime/gunicorn.conf.py wsgi_app:application

labruntime-web.service runs exactly that. A second lab on the same Pi uses the same file with
``LABRUNTIME_BIND=127.0.0.1:8081`` and ``SCRIPT_NAME=/lab2`` (see nginx/labs.conf).

The web workers only serve HTTP: the lab's configuration sets WEBLAB_TASK_THREADS_PROCESS = 0,
so no task runs here; the device worker (labruntime-worker.service) holds the hardware and
runs the tasks. Every worker process shares the lab's Redis, so any worker can answer any call.
"""

import hashlib
import logging
import os
import re
import sys

from gunicorn.glogging import Logger

# Only nginx talks to gunicorn: listen on the loopback interface.
bind = os.environ.get("LABRUNTIME_BIND", "127.0.0.1:8080")

# A Pi 4/5 has 4 cores; 2 processes x 4 threads serve a lab's RLMS calls, student pages and
# polls with room to spare, and leave CPU to the device worker.
workers = int(os.environ.get("LABRUNTIME_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("LABRUNTIME_WEB_THREADS", "4"))

# Dispose is bounded by WEBLAB_DISPOSE_TIMEOUT (60 s) but normally answers "ask again" at once;
# keep the request timeout above it so a slow dispose is never killed halfway.
timeout = 90
graceful_timeout = 30
keepalive = 5

# nginx on the same host sets X-Forwarded-Proto; trust it only from there, so wsgi.url_scheme
# is https for the public side (WEBLAB_SCHEME = "https" says the same to the student's link).
forwarded_allow_ips = "127.0.0.1,::1"

# Import the app in each worker after the fork: every worker opens its own Redis connection.
preload_app = False

# journald keeps the logs (systemd unit); "-" = stderr. See LabLogger below for what goes there.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LABRUNTIME_LOG_LEVEL", "info")

# -- logs: labruntime's lines next to gunicorn's, and no secret in either ---------------------
# A session id is the student's login link (/lab1/callback/<id>, also in every poll URL) and
# the RLMS's handle on the session (/weblab/sessions/<id>/status): whoever reads it can act
# as the student. In the logs it becomes "sid:" + 8 hex digits of its SHA-256, enough to follow
# one session through the access log and labruntime's lines. A password in a URL
# (redis://:secret@host) becomes "***".
_SESSION_IN_PATH = re.compile(
    r"(/callback/|/weblab/sessions/)(?!(?:api|test|status)(?![\w-]))([\w-]+)"  # not the routes
)
_LONG_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{40,}(?![\w-])")  # session ids: 43 chars
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE)


def _sid(token: str) -> str:
    return "sid:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def mask_secrets(text: str) -> str:
    """``text`` with session ids and URL passwords replaced (see above)."""
    text = _SESSION_IN_PATH.sub(lambda m: m.group(1) + _sid(m.group(2)), text)
    text = _LONG_TOKEN.sub(lambda m: _sid(m.group(0)), text)
    return _URL_PASSWORD.sub(r"\1***@", text)


class _MaskSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class LabLogger(Logger):
    """gunicorn's logger, plus: labruntime's loggers (session start and dispose, task and device
    lines) at ``loglevel`` into the error log, and session ids masked in both logs."""

    def setup(self, cfg):  # type: ignore[no-untyped-def]
        super().setup(cfg)
        # Runs in the arbiter at start and on each reload (HUP); the workers fork after it.
        handler = (
            logging.StreamHandler(sys.stderr)
            if cfg.errorlog == "-"
            else logging.FileHandler(cfg.errorlog)
        )
        handler.setFormatter(
            logging.Formatter(r"%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                              self.datefmt)
        )  # fmt: skip
        handler.addFilter(_MaskSecrets())
        lab_log = logging.getLogger("labruntime")
        for old in [h for h in lab_log.handlers if getattr(h, "_lab_logger", False)]:
            lab_log.removeHandler(old)  # a reload replaces the handler, never stacks one
        handler._lab_logger = True  # type: ignore[attr-defined]
        lab_log.addHandler(handler)
        lab_log.setLevel(self.LOG_LEVELS.get(cfg.loglevel.lower(), logging.INFO))
        lab_log.propagate = False
        if not any(isinstance(f, _MaskSecrets) for f in self.error_log.filters):
            self.error_log.addFilter(_MaskSecrets())  # gunicorn names paths in its errors

    def atoms(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            key: mask_secrets(value) if isinstance(value, str) else value
            for key, value in atoms.items()
        }


logger_class = LabLogger
proc_name = "labruntime-" + os.environ.get("SCRIPT_NAME", "/lab").strip("/").replace("/", "-")
