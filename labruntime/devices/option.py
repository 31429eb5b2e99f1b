"""The ``--device`` option of the worker commands: which devices a worker process holds.

``labruntime loop --device board`` (URL from WEBLAB_DEVICES), ``--device board=URL``, or a
bare ``--device URL`` (binds to the lab's only device; an error if it has several). Only names
of WEBLAB_DEVICES are accepted: admission routes tasks to those names only.
"""

from __future__ import annotations

from labruntime.drivers import DeviceURLError, UnknownSchemeError, validate_device_url
from labruntime.errors import InvalidConfigError

__all__ = ["parse_device_options"]


def parse_device_options(configured: dict[str, str], values: tuple[str, ...]) -> dict[str, str]:
    """``--device`` values -> {name: url}. Raises InvalidConfigError naming the bad value."""
    bindings: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if sep and ":" in name:  # a bare URL with "=" in its query (sim:arduino?baud=...)
            name, sep, url = "", "", value
        if not sep and ":" not in value:
            name, url = value, configured.get(value, "")
            if not url:
                raise _unknown(value, value, configured)
        elif not sep:
            if len(configured) != 1:
                raise InvalidConfigError(
                    f"--device {value}: a bare URL binds to the lab's only device, but "
                    f"WEBLAB_DEVICES defines {sorted(configured) or 'none'}; write "
                    "--device NAME=URL"
                )
            name, url = next(iter(configured)), value
        if not name or not url:
            raise InvalidConfigError(f"--device {value!r} is invalid: use NAME, NAME=URL or URL")
        if name not in configured:  # admission only routes tasks to WEBLAB_DEVICES names
            raise _unknown(value, name, configured)
        try:
            validate_device_url(url)
        except (DeviceURLError, UnknownSchemeError) as error:
            raise InvalidConfigError(f"--device {value}: {error}") from error
        if name in bindings:
            raise InvalidConfigError(f"--device: device {name!r} is given twice")
        bindings[name] = url
    return bindings


def _unknown(value: str, name: str, configured: dict[str, str]) -> InvalidConfigError:
    return InvalidConfigError(
        f"--device {value}: no device {name!r} in the lab's WEBLAB_DEVICES (it defines "
        f"{sorted(configured) or 'none'}); tasks name their devices from WEBLAB_DEVICES: add "
        f"{name!r} there (a URL given here replaces the configured one)"
    )
