"""Devices at the end of a session: revoke, then drive safe in the holder, then check.

Dispose runs these around the task steps (see :mod:`labruntime.tasks.dispose`):

1. :func:`revoke_devices` (every dispose step): the session may start no more device tasks;
2. the session's tasks are stopped; a stop cancels their device operations at the next safe
   point (the runner turns ``stop()`` into ``ops.cancel_all()`` in the holding process);
3. after ``on_dispose``, :func:`drive_session_devices_safe` drives every device the session's
   tasks used to ``safe()`` *in the process holding it*: directly when this process holds it,
   else through a ``"safe"`` request on the device's control list in Redis, waiting for the
   holder's reply carrying the SafeReport (SAFE_REPLY_TIMEOUT); each report is checked and
   logged, and kept in Redis as the device's last safe report.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from labruntime.redact import session_hash
from labruntime.store.devices import DeviceStore

from .holder import DeviceHolder

log = logging.getLogger(__name__)

__all__ = ["SAFE_REPLY_TIMEOUT", "drive_session_devices_safe", "revoke_devices"]

SAFE_REPLY_TIMEOUT = 10.0  # seconds dispose waits for a device holder to confirm safe()


def revoke_devices(device_store: DeviceStore, session_id: str, dispose_timeout: float) -> None:
    """First dispose step: the session may start no more device tasks."""
    device_store.revoke(session_id, dispose_timeout + SAFE_REPLY_TIMEOUT + 60)


def drive_session_devices_safe(
    device_store: DeviceStore, holder: DeviceHolder | None, session_id: str
) -> dict[str, Any]:
    """Last dispose step (after on_dispose): drive every device the session used safe, in
    the process holding it (``holder``: this process's, if any), and check the reports.
    Returns {name: report}."""
    names = device_store.used(session_id)
    asked: dict[str, str] = {}
    reports: dict[str, dict[str, Any]] = {}
    for name in names:
        if holder is not None and name in holder.devices:
            reports[name] = holder.safe_after_session(name, session_id)
        elif device_store.holder(name) is None:
            log.warning(
                "session %s: device %s has no holder now; it is driven safe when a worker opens it",
                session_hash(session_id),
                name,
            )
        else:
            asked[name] = device_store.request(name, "safe", session=session_id)
    deadline = time.monotonic() + SAFE_REPLY_TIMEOUT
    for name, req_id in asked.items():
        reply = device_store.wait_reply(name, req_id, deadline - time.monotonic())
        if reply is None or "report" not in reply:
            why = reply.get("error") if reply else f"no reply in {SAFE_REPLY_TIMEOUT:g} s"
            log.error(
                "session %s: device %s was not confirmed safe: %s",
                session_hash(session_id),
                name,
                why,
            )
            continue
        reports[name] = reply["report"]
    tag = session_hash(session_id)  # logs never hold the id: it is the student's login link
    for name, report in reports.items():
        if report.get("skipped"):
            log.info("session %s: device %s left as it is: %s", tag, name, report["detail"])
        elif report.get("ok"):
            log.info("session %s: device %s safe (%s)", tag, name, report.get("state"))
        else:
            log.error("session %s: device %s NOT safe: %s", tag, name, report)
    device_store.forget_session(session_id)
    return reports
