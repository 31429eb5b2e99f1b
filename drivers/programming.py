"""The Programmer capability written once: ``program()`` and ``estimate_seconds()`` for drivers.

A driver that writes firmware subclasses :class:`ImageProgrammer` and implements two hooks::

    _estimate(img, verify) -> float          seconds program() should take for img
    _write(op, source, img, verify) -> None  write img (and verify it if asked) inside op

``program()`` checks the device is open, loads the image (ImageError before any hardware is
touched), lets the driver refuse it (``_check_image``), runs ``_write`` as the tracked
operation ``program`` (progress, cancel, deadline), and returns the ProgramResult.
``estimate_seconds(image, verify=...)`` loads the image the same way and asks ``_estimate``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from .base import Device
from .capabilities import ProgramResult
from .image import FirmwareImage, load_image
from .operations import CancelSource, Operation, ProgressCallback

__all__ = ["ImageProgrammer"]

log = logging.getLogger(__name__)


class ImageProgrammer(Device):
    """Base of the drivers with the Programmer capability (see the module docstring)."""

    #: deadline of program() when the call gives none (None: no deadline)
    default_timeout: float | None = None
    last_result: ProgramResult | None = None

    def estimate_seconds(self, image: Any, *, verify: bool = True) -> float:
        """Seconds ``program(image, verify=verify)`` should take (for ``require_time``)."""
        return self._estimate(load_image(image), verify)

    def program(
        self,
        image: Any,
        *,
        verify: bool = True,
        progress: ProgressCallback | None = None,
        cancel: CancelSource = None,
        timeout: float | None = None,
    ) -> ProgramResult:
        """Write ``image`` and, by default, verify it.

        ``image`` is Intel HEX text (``str``), a ``pathlib.Path``, the bytes of a HEX file, or a
        FirmwareImage (``load_image(data, raw=True)`` for a raw binary). A ``str`` is never
        opened as a file (see :func:`load_image`).
        """
        self._check_open()
        img = load_image(image)
        self._check_image(img)
        started = time.monotonic()
        with (
            self._exclusive(),
            self.ops.operation(
                "program",
                progress=progress,
                cancel=cancel,
                timeout=timeout if timeout is not None else self.default_timeout,
            ) as op,
        ):
            self._write(op, image, img, verify)
        result = ProgramResult(img.size, verify, round(time.monotonic() - started, 3))
        self.last_result = result
        log.info(
            "%s: programmed %d bytes%s in %.2f s",
            self.label,
            result.bytes,
            " and verified" if verify else "",
            result.seconds,
        )
        return result

    # -- hooks ------------------------------------------------------------------------------
    def _estimate(self, img: FirmwareImage, verify: bool) -> float:
        raise NotImplementedError

    def _write(self, op: Operation, source: Any, img: FirmwareImage, verify: bool) -> None:
        """Write ``img`` inside ``op``; ``source``: what the caller passed."""
        raise NotImplementedError

    def _check_image(self, img: FirmwareImage) -> None:
        """Refuse an image before anything runs (e.g. too big for the part)."""

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Held around the whole operation (a driver that must not program twice at once)."""
        yield
