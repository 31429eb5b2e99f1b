"""The base class of every driver: lease, operations, safe state, close, describe.

A driver subclasses :class:`Device`, sets ``scheme``, implements ``_drive_safe()`` (drive the
hardware to its declared safe state, read it back, return that state as a JSON-able dict) and
``_close()`` (release the hardware), and may add fields to ``describe()`` through
``_describe()``. Its capabilities come from the protocols it implements
(see :mod:`.capabilities`). The lifecycle::

    dev = open_device("gpio:17?safe=0")   # lease taken, device driven safe at open
    dev.on()                              # ... use it; long calls are tracked in dev.ops
    dev.safe()                            # cancel + wait for operations, drive safe, report
    dev.close()                           # safe() again, release the hardware and the lease
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

from .capabilities import capability_names
from .errors import DeviceClosedError, DriverError
from .lease import DeviceLease
from .operations import OperationTracker
from .urls import DeviceURL

__all__ = ["DEFAULT_SAFE_WAIT", "Device", "SafeReport", "open_with_lease"]

log = logging.getLogger(__name__)

#: How long safe() waits for cancelled operations to reach a safe point, by default.
DEFAULT_SAFE_WAIT = 5.0

DeviceT = TypeVar("DeviceT", bound="Device")


@dataclass
class SafeReport:
    """The outcome of ``safe()``: did it work, the state read back, and a human sentence."""

    ok: bool
    state: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Device(ABC):
    """Abstract base of every driver. Subclasses set ``scheme`` and the ``_`` hooks."""

    scheme: ClassVar[str] = ""

    def __init__(
        self,
        url: str | DeviceURL,
        *,
        name: str | None = None,
        lease: DeviceLease | None = None,
    ) -> None:
        self.url = str(url)
        self.name = name
        self.ops = OperationTracker()
        self.lease = lease
        self.last_safe: SafeReport | None = None
        self._closed = False
        self._close_lock = threading.RLock()

    # -- hooks for subclasses ---------------------------------------------------------------
    @abstractmethod
    def _drive_safe(self) -> dict[str, Any]:
        """Drive the hardware to its safe state, read it back, return it (JSON-able)."""

    @abstractmethod
    def _close(self) -> None:
        """Release the hardware (port, pins, process). Called once."""

    def _describe(self) -> dict[str, Any]:
        """Driver-specific fields for describe()."""
        return {}

    # -- public API -------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceClosedError(
                f"device {self.label!r} is closed; open it again with open_device({self.url!r})"
            )

    @property
    def label(self) -> str:
        """The name if given, else the URL (for messages)."""
        return self.name or self.url

    def capabilities(self) -> list[str]:
        return capability_names(self)

    def safe(self, wait: float = DEFAULT_SAFE_WAIT) -> SafeReport:
        """Cancel in-flight operations, wait for them (up to ``wait`` s), drive the safe state.

        Idempotent; never raises a DriverError (a failure is reported with ``ok=False``).
        On a closed device it returns the last report.
        """
        if self._closed:
            if self.last_safe is not None:
                return self.last_safe
            self._check_open()
        cancelled = self.ops.cancel_all("the device is being driven to its safe state")
        idle = self.ops.wait_idle(wait)
        notes = []
        if cancelled:
            notes.append(f"cancelled {cancelled} operation(s)")
        if not idle:
            left = ", ".join(op.name for op in self.ops.in_flight)
            notes.append(f"operation(s) still running after {wait:g} s: {left}")
        try:
            state = self._drive_safe()
            ok = idle
        except (DriverError, OSError) as exc:
            log.error("device %s: could not drive its safe state: %s", self.label, exc)
            state, ok = {}, False
            notes.append(f"driving the safe state failed: {exc}")
        if ok:
            notes.insert(0, "safe state reached")
        report = SafeReport(ok=ok, state=state, detail="; ".join(notes))
        self.last_safe = report
        return report

    def close(self, safe: bool = True) -> None:
        """Drive safe (unless ``safe=False``), release the hardware and the lease. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            try:
                if safe:
                    self.safe()
            finally:
                self._closed = True
                try:
                    self._close()
                finally:
                    if self.lease is not None:
                        self.lease.release()

    def describe(self) -> dict[str, Any]:
        """JSON-able metadata a web page or ``labruntime device check`` can render."""
        info: dict[str, Any] = {
            "scheme": self.scheme,
            "url": self.url,
            "name": self.name,
            "capabilities": self.capabilities(),
            "closed": self._closed,
            "busy": self.ops.busy,
            "operations": [op.to_dict() for op in self.ops.in_flight],
            "safe": None if self.last_safe is None else self.last_safe.to_dict(),
            "previous_unclean": bool(self.lease and self.lease.previous_unclean),
        }
        if not self._closed:
            info.update(self._describe())
        return info

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.url!r} {state}>"


def open_with_lease(
    key: str,
    build: Callable[[DeviceLease], DeviceT],
    *,
    drive_safe: bool = True,
    fresh: bool = False,
    on_failure: Callable[[], object] | None = None,
) -> DeviceT:
    """Take the lease on ``key``, ``build(lease)`` the device, drive it safe; release on failure.

    The usual body of a driver's ``open_url``: the lease is released again if building or the
    first ``safe()`` raises, so a failed open never leaves the device locked. ``fresh``: see
    :meth:`DeviceLease.acquire`. ``on_failure`` runs last when the open fails at any step (a
    simulator started for the device is stopped).
    """
    try:
        lease = DeviceLease.acquire(key, fresh=fresh)
        try:
            device = build(lease)
        except BaseException:
            lease.release()
            raise
        if drive_safe:
            try:
                report = device.safe()
            except BaseException:
                device.close(safe=False)
                raise
            if not report.ok:
                log.warning("device %s: not safe after open: %s", device.label, report.detail)
    except BaseException:
        if on_failure is not None:
            on_failure()
        raise
    return device
