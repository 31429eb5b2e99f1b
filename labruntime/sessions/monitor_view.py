"""The serial monitor, web side: what the student's board prints, live on the student's page.

One line in the lab adds it, one in the template shows it::

    from labruntime import serial_monitor
    serial_monitor(app)                       # after WebLab(app) / weblab.init_app(app)

    {{ weblab_serial_monitor("board") }}      # in the student's page: a <pre> that fills live

``GET <base>/serial-monitor/<device>`` is a Server-Sent Events stream (``text/event-stream``):
each event carries, as a JSON string, text the board printed while the student's session owned
it (the session whose task used the device last; see :mod:`labruntime.devices.monitor`, which
runs in the process holding the device, whichever that is: the lines travel through Redis,
:mod:`labruntime.store.monitor`). Nobody else's session sees them. An ``end`` event says the
session ended (its dispose, or its time is over), and the page's script closes the stream; a
request after that gets ``204 No Content``, which tells a browser's EventSource to stop.

Every wait has a deadline: the view blocks on Redis ``READ_BLOCK`` s at a time, checks the
session every ``SESSION_CHECK`` s, sends a comment every ``KEEPALIVE`` s (a closed tab is
noticed then) and ends each response after ``MAX_STREAM`` s; the browser reconnects by itself
with the last event id it got (``Last-Event-ID``) and loses nothing. Under gunicorn a stream
holds one worker thread while it is open: use the threaded workers (``--worker-class
gthread``, ``--threads``) and count one thread per student with the page open.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, request, url_for
from markupsafe import Markup, escape

from labruntime.errors import StoreUnavailableError, WebLabError
from labruntime.globals import current_user
from labruntime.state import get_state
from labruntime.store.monitor import MonitorStore

__all__ = [
    "KEEPALIVE",
    "MAX_STREAM",
    "READ_BLOCK",
    "SESSION_CHECK",
    "monitor_markup",
    "serial_monitor",
]

log = logging.getLogger(__name__)

READ_BLOCK = 1.0  # seconds one XREAD blocks
SESSION_CHECK = 2.0  # seconds between two checks that the session is still active
KEEPALIVE = 15.0  # seconds of silence before a comment line is sent
MAX_STREAM = 300.0  # seconds one response lasts (the browser reconnects, Last-Event-ID)
RETRY_MS = 2000  # what the browser waits before reconnecting
DRAIN_READS = 20  # reads of what is left once the session is over
DRAIN_BLOCK = 0.05  # seconds each of them waits
_EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")
_DEVICE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

BLUEPRINT = "weblab_monitor"

#: the page side: every <pre data-weblab-monitor> gets an EventSource (idempotent)
SCRIPT = r"""(function () {
  "use strict";
  var MAX_CHARS = 20000;
  function start(pre) {
    if (pre.dataset.state) { return; }
    pre.dataset.state = "connecting";
    var source = new EventSource(pre.dataset.weblabMonitor);
    source.onopen = function () { pre.dataset.state = "open"; };
    source.onmessage = function (event) {
      var follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      var text = (pre.textContent + JSON.parse(event.data)).slice(-MAX_CHARS);
      pre.textContent = text;
      pre.dataset.received = String(parseInt(pre.dataset.received || "0", 10) + 1);
      if (follow) { pre.scrollTop = pre.scrollHeight; }
    };
    source.addEventListener("end", function (event) {
      source.close();
      pre.dataset.state = "ended";
      pre.dataset.reason = JSON.parse(event.data);
      pre.dispatchEvent(new CustomEvent("weblab-monitor-end", {bubbles: true}));
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED && pre.dataset.state !== "ended") {
        pre.dataset.state = "closed";
      } else if (source.readyState === EventSource.CONNECTING) {
        pre.dataset.state = "connecting";
      }
    };
  }
  function all() {
    Array.prototype.forEach.call(document.querySelectorAll("pre[data-weblab-monitor]"), start);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", all); }
  else { all(); }
})();
"""


def _event(kind: str | None, data: str, event_id: str | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id else []
    if kind:
        lines.append(f"event: {kind}")
    lines.append(f"data: {json.dumps(data)}")
    return "\n".join(lines) + "\n\n"


def _plain(status: int, message: str) -> Response:
    return Response(message + "\n", status, mimetype="text/plain")


def _stream(
    store: MonitorStore, sessions: Any, device: str, session_id: str, after: str, life: float
) -> Iterator[str]:
    """The events of one response (runs after the view returned: no request context)."""
    yield f"retry: {RETRY_MS}\n\n"
    now = time.monotonic()
    ends, next_check, last_sent = now + life, now + SESSION_CHECK, now
    while True:
        try:
            after, events = store.read(device, session_id, after, READ_BLOCK)
        except StoreUnavailableError as error:
            log.warning("serial monitor of %s: %s", device, error)
            return  # the browser reconnects in RETRY_MS with the last id it got
        for event in events:
            if event.kind == "end":
                yield _event("end", event.text, event.id)
                return
            yield _event(None, event.text, event.id)
        now = time.monotonic()
        if events:
            last_sent = now
        if now >= next_check:
            next_check = now + SESSION_CHECK
            try:
                over = sessions.status(session_id) < 0
            except StoreUnavailableError:
                return
            if over:  # what the holder wrote before the dispose ended, then the end
                yield from _drain(store, device, session_id, after)
                return
        if now - last_sent >= KEEPALIVE:
            last_sent = now
            yield ": keepalive\n\n"
        if now >= ends:
            return


def _drain(store: MonitorStore, device: str, session_id: str, after: str) -> Iterator[str]:
    """The session is over: the entries left (up to DRAIN_READS reads), then one end event."""
    for _ in range(DRAIN_READS):
        try:
            after, events = store.read(device, session_id, after, DRAIN_BLOCK)
        except StoreUnavailableError:
            break
        for event in events:
            if event.kind == "end":
                yield _event("end", event.text, event.id)
                return
            yield _event(None, event.text, event.id)
        if not events:
            break
    yield _event("end", "the session is over")


def _view(device: str) -> Any:
    state = get_state()
    user = current_user()
    if user.is_anonymous or user.session_id is None:
        return _plain(403, "no laboratory session: open the lab from the RLMS first")
    if not user.active:
        return Response(status=204)  # the session is over: EventSource stops retrying
    allowed = state.devices.monitored
    if not _DEVICE.fullmatch(device) or device not in allowed:
        known = ", ".join(sorted(allowed)) or "none (set WEBLAB_DEVICES)"
        return _plain(404, f"no device {device[:64]!r} to monitor here; devices: {known}")
    store = state.devices.monitor_store
    if store is None:
        return _plain(404, "this lab has no serial monitor store")
    after = request.headers.get("Last-Event-ID", "").strip()
    if not _EVENT_ID.fullmatch(after):
        after = "0"  # from the oldest line kept: what the board printed before the page opened
    life = max(1.0, min(MAX_STREAM, float(user.time_left) + SESSION_CHECK))
    stream = _stream(store, state.sessions, device, user.session_id, after, life)
    reply = Response(stream, mimetype="text/event-stream")
    reply.headers["Cache-Control"] = "no-store"
    reply.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return reply


def _script() -> Response:
    reply = Response(SCRIPT, mimetype="text/javascript")
    reply.headers["Cache-Control"] = "max-age=3600"
    return reply


def monitor_markup(device: str, **attrs: str) -> Markup:
    """The ``<pre>`` that shows ``device``'s monitor, and the script that fills it.

    ``attrs`` become attributes of the ``<pre>`` (``class_`` for ``class``). In a template:
    ``{{ weblab_serial_monitor("board", class_="console") }}``."""
    source = url_for(f"{BLUEPRINT}.stream", device=device)
    script = url_for(f"{BLUEPRINT}.script")
    classes = " ".join(["weblab-monitor", *([attrs.pop("class_")] if "class_" in attrs else [])])
    extra = "".join(
        f' {escape(name.rstrip("_").replace("_", "-"))}="{escape(value)}"'
        for name, value in attrs.items()
    )
    return Markup(
        f'<pre id="weblab-monitor-{escape(device)}" class="{escape(classes)}" '
        f'data-weblab-monitor="{escape(source)}" aria-live="polite"{extra}></pre>'
        f'<script src="{escape(script)}" defer></script>'
    )


def serial_monitor(
    app: Flask, devices: list[str] | None = None, url_prefix: str = "/serial-monitor"
) -> None:
    """Add the serial monitor to ``app`` (after ``WebLab(app)``): the SSE route
    ``<url_prefix>/<device>``, its script ``<url_prefix>.js`` and the
    ``weblab_serial_monitor(device)`` template helper. ``devices`` limits which of
    WEBLAB_DEVICES may be watched (default: all). Not under ``/weblab/``: those are the
    RLMS's routes."""
    try:
        state = get_state(app)
    except WebLabError as error:
        raise WebLabError(
            f"serial_monitor(app) needs labruntime on the app first: call WebLab(app) or "
            f"weblab.init_app(app) before it ({error})"
        ) from error
    if BLUEPRINT in app.blueprints:
        raise WebLabError("serial_monitor(app) was already called on this app: call it once")
    if devices is not None:
        unknown = sorted(set(devices) - set(state.config.devices))
        if unknown:
            raise WebLabError(
                f"serial_monitor: {unknown} not in WEBLAB_DEVICES "
                f"({sorted(state.config.devices)}): name configured devices"
            )
    prefix = "/" + url_prefix.strip("/")
    if prefix == "/" or prefix.startswith("/weblab/") or prefix == "/weblab":
        raise WebLabError(
            f"serial_monitor: url_prefix {url_prefix!r} is taken (the lab's root or the RLMS's "
            "/weblab/ routes): give e.g. '/serial-monitor'"
        )
    state.devices.monitored = sorted(state.config.devices if devices is None else devices)
    bp = Blueprint(BLUEPRINT, __name__)
    bp.add_url_rule(f"{prefix}/<device>", "stream", _view, methods=["GET"])
    bp.add_url_rule(f"{prefix}.js", "script", _script, methods=["GET"])
    app.register_blueprint(bp, url_prefix=state.config.base_url or None)
    app.add_template_global(monitor_markup, "weblab_serial_monitor")
