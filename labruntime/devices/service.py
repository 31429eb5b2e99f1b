"""A lab's devices as seen from one process: the :class:`DeviceService` of its state.

It holds the devices this process owns (a device worker's ``--device``, or the web process's
free devices in single-process mode), admits device tasks, drives a session's devices safe at
dispose and reports who holds what (``labruntime device status``).

A web process running task threads (WEBLAB_TASK_THREADS_PROCESS > 0, not WEBLAB_NO_THREAD)
holds every configured device that no live worker holds (single-process mode, ``flask run``);
a deployment with a device worker sets WEBLAB_TASK_THREADS_PROCESS = 0 on the web.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask

from labruntime.config import WebLabConfig
from labruntime.store.devices import DeviceStore
from labruntime.store.monitor import MonitorStore

from .admission import admit
from .dispose import drive_session_devices_safe, revoke_devices
from .holder import DeviceHolder
from .routing import worker_command

log = logging.getLogger(__name__)

__all__ = ["DeviceService"]


class DeviceService:
    """The devices of one lab in this process (``state.devices``)."""

    def __init__(
        self,
        app: Flask,
        config: WebLabConfig,
        store: DeviceStore,
        monitor_store: MonitorStore | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.store = store
        #: the serial monitor's streams (what held consoles print, per session)
        self.monitor_store = monitor_store
        #: the devices whose output the lab shows its students (set by serial_monitor(app))
        self.monitored: list[str] = []
        self._holder: DeviceHolder | None = None

    @property
    def holder(self) -> DeviceHolder | None:
        """The DeviceHolder of this process (None: it holds no device; a forked child never
        inherits its parent's)."""
        holder = self._holder
        return holder if holder is not None and holder.pid == os.getpid() else None

    # -- holding ---------------------------------------------------------------------------
    def hold(self, bindings: dict[str, str], worker_id: str) -> DeviceHolder:
        """Open and hold ``bindings`` (strict: a busy device raises DeviceBusyError)."""
        holder = DeviceHolder(
            self.store, bindings, worker_id, self.monitor_store, self.monitored
        ).open(strict=True)
        self._holder = holder.start()
        return holder

    def hold_free(self, worker_id: str) -> DeviceHolder | None:
        """Web process with task threads: hold the configured devices no live worker holds
        (looked at once, when the runner threads start)."""
        configured = self.config.devices
        if not configured:
            return None
        held = self.store.holders(list(configured))
        free = {n: u for n, u in configured.items() if held.get(n) is None}
        for name in sorted(set(configured) - set(free)):
            log.info("device %s is held by worker %s: tasks using it run there", name, held[name])
        if not free:
            return None
        holder = DeviceHolder(self.store, free, worker_id, self.monitor_store, self.monitored).open(
            strict=False
        )
        if not holder.devices:
            return None
        self._holder = holder.start()
        log.info("this web process holds device(s) %s", sorted(holder.devices))
        return holder

    def release(self) -> None:
        """Drive safe, close and release the devices this process holds."""
        holder, self._holder = self.holder, None
        if holder is not None:
            holder.close(safe=True)

    # -- tasks and sessions ----------------------------------------------------------------
    def admit(self, task_name: str, names: list[str], session_id: str | None) -> str:
        """Check that a task may use ``names`` now; returns the pool to queue it on."""
        return admit(
            self.store,
            self.config.devices,
            self.app,
            task_name,
            names,
            session_id,
            self.config.task_expires,
        )

    def lease_keys(self, names: list[str]) -> list[str]:
        """The Redis keys of the leases of ``names``: a device task is queued only while
        they are open (checked again in the queueing step itself)."""
        return [self.store.lease_key(name) for name in names]

    def revoke(self, session_id: str, dispose_timeout: float) -> None:
        """First dispose step: the session may start no more device tasks."""
        if self.config.devices:
            revoke_devices(self.store, session_id, dispose_timeout)

    def drive_session_safe(self, session_id: str) -> dict[str, dict[str, Any]]:
        """Last dispose step: drive the devices the session used safe (see :mod:`.dispose`)."""
        if not self.config.devices:
            return {}
        return drive_session_devices_safe(self.store, self.holder, session_id)

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        """{name: {url, holder, last_safe, start}} of every configured device."""
        names = sorted(self.config.devices)
        holders = self.store.holders(names)
        return {
            name: {
                "url": self.config.devices[name],
                "holder": holders[name],
                "last_safe": self.store.last_safe(name),
                "start": None if holders[name] else worker_command(self.app, [name]),
            }
            for name in names
        }
