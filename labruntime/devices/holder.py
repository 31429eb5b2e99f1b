"""Device holding: the process that owns a lab's devices (a device worker or the web process).

A :class:`DeviceHolder` opens the devices it is given (the drivers take the file lease and
drive each device safe at open), holds a Redis lease per device (heartbeat every second, a
fencing token incremented on every new holder: see :mod:`labruntime.store.devices`), answers
control requests (``"safe"``: drive the device safe here, reply with the SafeReport) and, on
``close()``, drives every device safe, closes it and releases the leases.

A second process asking for a held device gets ``DeviceBusyError`` naming the holder (worker,
pid, host, command line). A holder killed with kill -9 stops renewing: its lease lapses after
LEASE seconds, or at once for a new holder on the same host that sees the old pid is gone.

Tasks reach their devices through :data:`labruntime.current_devices` (see
:mod:`labruntime.devices.current`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from labruntime.drivers import (
    Device,
    DeviceBusyError,
    DriverError,
    OperationTracker,
    Progress,
    open_device,
)
from labruntime.errors import DeviceUnavailableError
from labruntime.redact import session_hash
from labruntime.store.devices import DeviceStore
from labruntime.store.monitor import MonitorStore
from labruntime.store.tasks import worker_process_gone

from .monitor import ConsoleMonitor
from .routing import pools_for

log = logging.getLogger(__name__)

__all__ = ["DeviceHolder", "ObservedTracker", "LEASE", "HEARTBEAT", "describe_holder"]

LEASE = 5.0  # seconds a device lease lasts without renewal
HEARTBEAT = 1.0  # seconds between renewals
CONTROL_BLOCK = 0.5  # seconds the control loop blocks on Redis before checking it should end


class ObservedTracker(OperationTracker):
    """An OperationTracker whose operations also report progress to listeners.

    The holder installs one on every device it opens, so the progress of any operation on
    the device (``program``, ``wait_for``...) reaches the task using it, whatever callback
    the task code passed itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[Progress], Any]] = []
        self._cancel_sources: list[Any] = []
        self._listeners_lock = threading.Lock()

    def add_cancel_source(self, source: Any) -> None:
        """Operations started from now on are also cancelled when ``source.is_set()``."""
        with self._listeners_lock:
            self._cancel_sources.append(source)

    def remove_cancel_source(self, source: Any) -> None:
        with self._listeners_lock:
            if source in self._cancel_sources:
                self._cancel_sources.remove(source)

    def add_listener(self, listener: Callable[[Progress], Any]) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Progress], Any]) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _relay(self, own: Callable[[Progress], Any] | None) -> Callable[[Progress], Any]:
        def relay(event: Progress) -> None:
            with self._listeners_lock:
                listeners = list(self._listeners)
            for listener in listeners:
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 - a listener never breaks the operation
                    log.exception("progress listener failed (ignored)")
            if own is not None:
                own(event)

        return relay

    def operation(
        self, name: str, *, progress: Any = None, cancel: Any = None, **kwargs: Any
    ) -> Any:
        with self._listeners_lock:
            sources = [*self._cancel_sources, *([cancel] if cancel is not None else [])]

        def cancelled() -> bool:
            return any(
                s.is_set() if callable(getattr(s, "is_set", None)) else bool(s()) for s in sources
            )

        return super().operation(
            name, progress=self._relay(progress), cancel=cancelled if sources else None, **kwargs
        )


def describe_holder(name: str, holder: dict[str, Any]) -> str:
    """One line naming the holder of a device's Redis lease."""
    command = " ".join(holder.get("argv") or []) or "?"
    return (
        f"device {name!r} is held by worker {holder.get('worker')} (pid {holder.get('pid')} on "
        f"{holder.get('host')}: {command})"
    )


def _dead_here(holder: dict[str, Any]) -> bool:
    """True if the holder ran on this host and its process is gone (kill -9, or a zombie)."""
    return worker_process_gone(f"{holder.get('host')}:{holder.get('pid')}:")


class DeviceHolder:
    """The devices one process holds. ``open()``, ``start()`` (threads), ``close()``."""

    def __init__(
        self,
        device_store: DeviceStore,
        bindings: dict[str, str],
        worker_id: str,
        monitor_store: MonitorStore | None = None,
        monitored: list[str] | None = None,
    ):
        self.store = device_store
        self.bindings = dict(bindings)
        self.worker_id = worker_id
        self.pid = os.getpid()
        self.devices: dict[str, Device] = {}
        self.tokens: dict[str, int] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.lost: set[str] = set()  # devices whose Redis lease another holder took
        self.admission_closed = False  # close_admission() was called: no new tasks
        self.users: dict[str, str | None] = {}  # device -> session of the task using it now
        #: what the ``monitored`` consoles print, to their student (the serial monitor)
        self.monitor = ConsoleMonitor(monitor_store, monitored)
        self._closed = threading.Event()
        # called with the names of devices another holder took (a worker then stops)
        self.on_lost: Callable[[list[str]], Any] | None = None
        self._threads: list[threading.Thread] = []
        self.info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
        }

    # -- opening ---------------------------------------------------------------------------
    @property
    def pools(self) -> list[str]:
        """The task queues this holder serves (every subset of its devices)."""
        return pools_for(list(self.devices))

    def open(self, strict: bool = True) -> DeviceHolder:
        """Take every lease and open every device; on any failure undo all and raise.

        ``strict=False`` (the web process): skip a device that is busy or cannot be opened,
        logging why, and hold the others.
        """
        try:
            for name, url in self.bindings.items():
                try:
                    self._take(name, url)
                except DriverError as error:
                    if strict:
                        raise
                    log.info("not holding device %s in this process: %s", name, error)
        except BaseException:
            self.close(safe=True)
            raise
        return self

    def _take(self, name: str, url: str) -> None:
        info = {**self.info, "url": url}
        ok, lease = self.store.acquire(name, self.worker_id, LEASE, info)
        if not ok and _dead_here(lease):
            log.warning(
                "%s, but that process is gone: taking the device over", describe_holder(name, lease)
            )
            ok, lease = self.store.acquire(name, self.worker_id, LEASE, info, take_over=True)
        if not ok:
            raise DeviceBusyError(
                f"{describe_holder(name, lease)}: one device has one owner. Stop that worker "
                "first (or wait up to 5 s after it died)",
                lease,
            )
        try:
            device = open_device(url, name=name)
        except BaseException:
            self.store.release(name, self.worker_id)
            raise
        device.ops = ObservedTracker()
        self.devices[name] = device
        self.tokens[name] = int(lease["token"])
        self.locks[name] = threading.Lock()
        self.monitor.attach(name, device, self.locks[name])
        if device.last_safe is not None:
            report = device.last_safe.to_dict()
            report["worker"], report["token"] = self.worker_id, self.tokens[name]
            report["at_open"] = True
            self.store.record_safe(name, report)
        unclean = bool(device.lease and device.lease.previous_unclean)
        log.info(
            "holding device %s (%s), fencing token %s%s",
            name,
            url,
            lease["token"],
            "; the previous holder died holding it: driven safe at open" if unclean else "",
        )

    # -- threads ---------------------------------------------------------------------------
    def start(self) -> DeviceHolder:
        self._threads = [
            threading.Thread(target=self._heartbeat_loop, name="weblab-device-lease", daemon=True),
            threading.Thread(target=self._control_loop, name="weblab-device-control", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _heartbeat_loop(self) -> None:
        while not self._closed.wait(HEARTBEAT):
            try:
                failed = self.store.renew(list(self.devices), self.worker_id, LEASE)
                for name in [n for n, why in failed.items() if why == "lapsed"]:
                    if self._retake(name):
                        del failed[name]
            except Exception as error:  # noqa: BLE001 - keep trying; Redis may come back
                self.store.outage.failed("renewing the device leases", error)
                continue
            self.store.outage.ok()
            new = set(failed) - self.lost
            for name in new:
                log.error(
                    "the Redis lease of device %s was taken by another holder while this "
                    "process stalled: no more tasks run on it here",
                    name,
                )
            self.lost |= new
            if new and self.on_lost is not None:
                self.on_lost(sorted(new))

    def close_admission(self) -> None:
        """Take no new task: the leases stay (nobody else opens the devices meanwhile),
        marked closed, so ``.delay()`` refuses tasks for them from now on (run-tasks' drain)."""
        self.admission_closed = True
        for name in list(self.devices):
            self.store.close_admission(name, self.worker_id)
        log.info("devices %s: admission closed, no new task for them", sorted(self.devices))

    def _retake(self, name: str) -> bool:
        """The lease lapsed (this process stalled, or Redis was out) and nobody took it: take
        it again, and drive the device safe before anything else runs on it."""
        info = {**self.info, "url": self.bindings.get(name, "")}
        if self.admission_closed:
            info["closed"] = True
        ok, lease = self.store.acquire(name, self.worker_id, LEASE, info)
        if ok:
            self.tokens[name] = int(lease["token"])
            log.warning(
                "the Redis lease of device %s had lapsed (this process stalled over %g s); "
                "taken again, fencing token %s: driving it safe first",
                name,
                LEASE,
                lease["token"],
            )
            # while the lease lapsed, a dispose found no holder and could not drive it safe;
            # the session using it may be over: cancel what runs on it, drive it safe
            try:
                report = self.safe(name)
            except Exception:  # noqa: BLE001 - the device stays held; the error is logged
                log.exception("device %s: could not be driven safe after its lease lapsed", name)
            else:
                log.warning(
                    "device %s: safe state driven after its lease lapsed (ok: %s): %s",
                    name,
                    report.get("ok"),
                    report.get("detail") or report.get("state"),
                )
        return bool(ok)

    def _control_loop(self) -> None:
        names = list(self.devices)
        while names and not self._closed.is_set():
            try:
                request = self.store.next_request(names, CONTROL_BLOCK)
            except Exception as error:  # noqa: BLE001 - Redis restarting: wait and retry
                self.store.outage.failed("device control channel", error)
                self._closed.wait(1.0)
                continue
            if request is not None:
                self._answer(request)

    def _answer(self, request: dict[str, Any]) -> None:
        name = request.get("device", "")
        reply: dict[str, Any] = {"worker": self.worker_id}
        if request.get("kind") == "safe" and name in self.devices:
            reply["report"] = self.safe_after_session(name, request.get("session"))
        else:
            reply["error"] = f"unknown request {request.get('kind')!r} for device {name!r}"
        try:
            self.store.reply(name, request.get("id", ""), reply)
        except Exception:  # noqa: BLE001 - the asker times out and says so
            log.warning("cannot answer the %s request on %s", request.get("kind"), name)

    # -- use -------------------------------------------------------------------------------
    def safe(self, name: str) -> dict[str, Any]:
        """Drive ``name`` safe here (cancels its operations first); the report as a dict."""
        started = time.monotonic()
        report = self.devices[name].safe().to_dict()
        report["seconds"] = round(time.monotonic() - started, 4)
        report["worker"], report["token"] = self.worker_id, self.tokens.get(name)
        try:
            self.store.record_safe(name, report)
        except Exception:  # noqa: BLE001 - the report is returned anyway
            log.warning("cannot record the safe report of %s", name, exc_info=True)
        if not report["ok"]:
            log.error("device %s is NOT safe: %s", name, report.get("detail"))
        return report

    def safe_after_session(self, name: str, session_id: str | None) -> dict[str, Any]:
        """Dispose of ``session_id``: drive ``name`` safe unless a task of *another* session
        uses it now (that operation goes on; the device goes safe when that session ends)."""
        user = self.users.get(name, session_id)
        if user != session_id:
            self.monitor.end_session(name, session_id, "the session ended")
            log.info(
                "device %s: not driven safe at the end of session %s, a task of session %s "
                "uses it now",
                name,
                session_hash(session_id),
                session_hash(user),
            )
            return {
                "ok": True,
                "skipped": True,
                "detail": "in use by another session's task: driven safe when that one ends",
                "worker": self.worker_id,
            }
        try:
            return self.safe(name)
        finally:
            self.monitor.end_session(name, session_id, "the session ended")

    @contextlib.contextmanager
    def using(self, names: list[str], session_id: str | None = None) -> Iterator[dict[str, Device]]:
        """Hold the per-device locks of ``names`` (sorted order: no deadlock) for one task of
        ``session_id``."""
        missing = [n for n in names if n not in self.devices or n in self.lost]
        if missing:
            raise DeviceUnavailableError(
                f"this process does not hold device(s) {missing} (any more): their lease "
                "belongs to another worker now"
            )
        taken: list[threading.Lock] = []
        for name in names:
            self.monitor.reserve(name)  # the monitor's reader leaves the port to this task
        try:
            for name in sorted(names):
                self.locks[name].acquire()
                taken.append(self.locks[name])
            for name in names:
                self.users[name] = session_id
                self.monitor.claim(name, session_id)  # its output goes to this session now
            yield {name: self.devices[name] for name in names}
        finally:
            for name in names if len(taken) == len(names) else []:
                self.users.pop(name, None)
            for lock in reversed(taken):
                lock.release()
            for name in names:
                self.monitor.release(name)

    def _tracker(self, name: str) -> ObservedTracker:
        ops = self.devices[name].ops
        assert isinstance(ops, ObservedTracker)  # installed by _take()
        return ops

    def observe(
        self, names: list[str], listener: Callable[[Progress], Any], cancel_source: Any
    ) -> None:
        """The operations on ``names`` report to ``listener`` and stop when ``cancel_source``
        is set (a task's stop flag), until :meth:`unobserve`."""
        for name in names:
            self._tracker(name).add_listener(listener)
            self._tracker(name).add_cancel_source(cancel_source)

    def unobserve(
        self, names: list[str], listener: Callable[[Progress], Any], cancel_source: Any
    ) -> None:
        for name in names:
            self._tracker(name).remove_listener(listener)
            self._tracker(name).remove_cancel_source(cancel_source)

    def cancel(self, names: list[str], reason: str) -> int:
        """Cancel the operations in flight on ``names`` (at their next safe point)."""
        return sum(self.devices[n].ops.cancel_all(reason) for n in names if n in self.devices)

    # -- closing ---------------------------------------------------------------------------
    def close(self, safe: bool = True) -> None:
        """Stop the threads, drive every device safe, close it, release the leases."""
        self._closed.set()
        for thread in self._threads:
            thread.join(CONTROL_BLOCK + 2)
        self.monitor.close()
        for name, device in list(self.devices.items()):
            try:
                if safe:
                    self.safe(name)
                device.close(safe=False)
            except Exception:  # noqa: BLE001 - close the others anyway
                log.exception("closing device %s failed", name)
            finally:
                with contextlib.suppress(Exception):
                    self.store.release(name, self.worker_id)
        self.devices.clear()
