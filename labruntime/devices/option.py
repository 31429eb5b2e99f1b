"""The ``--device`` option of the worker commands: which devices a worker process holds.

``labruntime loop --device board`` (URL from WEBLAB_DEVICES), ``--device board=URL``, or a
bare ``--device URL`` (binds to the lab's only device; an error if it has several). Only names
of WEBLAB_DEVICES are accepted: admission routes tasks to those names only.

A URL given for a configured device must be of the same kind, because the lab's tasks use
that device's methods (a programmer's ``program()``, an output's ``on()``):

- a bare ``serial:PORT`` (no options) for a serial-attached device (``stk500:``, ``serial:``,
  a ``command:`` whose arguments use ``{port}``) means "the board is on this port": the
  configured URL is kept, driver and options, with PORT in place of its port;
- a URL of the same kind (``stk500:`` for ``sim:arduino``: both programmers) replaces it;
- anything else is refused at start, naming both URLs.
"""

from __future__ import annotations

from urllib.parse import quote

from labruntime.drivers import (
    DeviceURL,
    DeviceURLError,
    UnknownSchemeError,
    parse_device_url,
    validate_device_url,
)
from labruntime.errors import InvalidConfigError

__all__ = ["device_kind", "parse_device_options", "resolve_device_url"]

#: what a lab's task can do with a device of each built-in scheme (sim: by target)
_KINDS = {
    "stk500": "programmer",
    "command": "programmer",
    "sim:arduino": "programmer",
    "sim:avr": "programmer",
    "serial": "serial console",
    "sim:gpio": "simulated GPIO board",
}


def device_kind(url: DeviceURL) -> str:
    """What a device of ``url`` is for a task: programmer, serial console, GPIO output..."""
    if url.scheme == "gpio":
        return "GPIO input" if url.get("mode") == "in" else "GPIO output"
    key = f"sim:{url.target}" if url.scheme == "sim" else url.scheme
    return _KINDS.get(key, f"{url.scheme}: device")


def _port_of(url: DeviceURL) -> str | None:
    """The serial port a serial-attached configured device talks through, if it has one."""
    if url.scheme in ("stk500", "serial"):
        return url.target
    if url.scheme == "command" and "{port}" in (url.get("args") or ""):
        return url.get("port")
    return None


def _with_port(url: DeviceURL, port: str) -> str:
    """``url`` (its driver and options kept) talking through ``port``."""
    if url.scheme == "command":
        options = {**url.options, "port": port}
        query = "&".join(f"{k}={quote(v, safe='/:{} -,.@=')}" for k, v in options.items())
        return f"command:{url.target}?{query}"
    query = str(url).partition("?")[2]
    return f"{url.scheme}:{port}" + (f"?{query}" if query else "")


def resolve_device_url(name: str, configured: str, given: str) -> str:
    """The URL a worker opens for device ``name`` when ``--device`` gives ``given``."""
    old, new = parse_device_url(configured), parse_device_url(given)
    if new.scheme == "serial" and not new.options and _port_of(old) is not None:
        return _with_port(old, new.target)  # "the board is on this port"
    if device_kind(old) == device_kind(new):
        return given
    moves = (
        f"`--device {name}=serial:PORT` (nothing after PORT) moves it to another port, "
        if _port_of(old) is not None
        else ""
    )
    raise InvalidConfigError(
        f"--device {given}: device {name!r} is configured as {configured} (a "
        f"{device_kind(old)}) and {given} is a {device_kind(new)}: the lab's tasks could not "
        f"use it. Give a URL of the same kind ({moves}or change WEBLAB_DEVICES)"
    )


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
        if sep or ":" in value:  # a URL given here: of the configured device's kind
            try:
                url = resolve_device_url(name, configured[name], url)
                validate_device_url(url)
            except (DeviceURLError, UnknownSchemeError) as error:
                raise InvalidConfigError(f"--device {value}: {error}") from error
        bindings[name] = url
    return bindings


def _unknown(value: str, name: str, configured: dict[str, str]) -> InvalidConfigError:
    return InvalidConfigError(
        f"--device {value}: no device {name!r} in the lab's WEBLAB_DEVICES (it defines "
        f"{sorted(configured) or 'none'}); tasks name their devices from WEBLAB_DEVICES: add "
        f"{name!r} there (a URL given here replaces the configured one)"
    )
