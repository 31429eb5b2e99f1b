"""The scheme registry: ``open_device(url)`` finds the driver of the URL's scheme.

Built-in schemes are loaded lazily by module path (so ``import labruntime.drivers`` does not
import pyserial or gpiozero): ``serial``, ``gpio``, ``command``, ``stk500`` and ``sim``, which
dispatches on its target (``sim:gpio``, ``sim:arduino``: the table in :mod:`.sim`). A driver
module exposes ``open_url(url: DeviceURL, *, name) -> Device``, ``validate(url: DeviceURL) ->
None`` and ``GRAMMAR`` (its URL grammar, quoted in errors about malformed options).

A lab adds a scheme with :func:`register_scheme` or, from an installed package, an entry point
in the group ``labruntime.drivers`` whose name is the scheme and whose object is either a
module with ``open_url``/``validate`` or an opener callable ``(url, *, name, **kwargs)``::

    [project.entry-points."labruntime.drivers"]
    relay = "mylab.relay_driver"
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .base import Device
from .errors import DeviceURLError, DriverError, UnknownSchemeError
from .sim import TARGETS as SIM_TARGETS
from .urls import DeviceURL, parse_device_url

__all__ = [
    "ENTRY_POINT_GROUP",
    "known_schemes",
    "open_device",
    "register_scheme",
    "scheme_grammar",
    "unregister_scheme",
    "validate_device_url",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "labruntime.drivers"

Opener = Callable[..., Device]
Validator = Callable[[DeviceURL], None]

#: scheme -> (module, open function, validate function); module paths relative to this package.
_BUILTIN: dict[str, tuple[str, str, str]] = {
    "serial": (".serial", "open_url", "validate"),
    "gpio": (".gpio", "open_url", "validate"),
    "command": (".command", "open_url", "validate"),
    "stk500": (".stk500", "open_url", "validate"),
}
#: sim:<target> -> (module, open function, validate function); the targets are listed in sim/
_SIM_TARGETS: dict[str, tuple[str, str, str]] = {
    target: (f".sim{module}", "open_url", "validate") for target, module in SIM_TARGETS.items()
}


@dataclass
class _Scheme:
    opener: Opener
    validator: Validator | None = None


_lock = threading.Lock()
_registered: dict[str, _Scheme] = {}


def register_scheme(name: str, opener: Opener, validator: Validator | None = None) -> None:
    """Register ``opener(url: DeviceURL, *, name, **kwargs) -> Device`` for ``name:...`` URLs.

    ``validator(url)`` checks a URL without opening hardware (used when a lab's configuration
    is loaded). Registering a name again replaces the previous opener.
    """
    scheme = parse_device_url(f"{name}:x").scheme
    with _lock:
        _registered[scheme] = _Scheme(opener, validator)


def unregister_scheme(name: str) -> None:
    with _lock:
        _registered.pop(name.lower(), None)


def _entry_point_names() -> list[str]:
    return [ep.name.lower() for ep in entry_points(group=ENTRY_POINT_GROUP)]


def known_schemes() -> list[str]:
    """Every scheme open_device() accepts: built-in, registered and from entry points."""
    with _lock:
        names = set(_BUILTIN) | {"sim"} | set(_registered)
    return sorted(names | set(_entry_point_names()))


def _load(module: str, opener: str, validator: str, what: str) -> _Scheme:
    try:
        mod = importlib.import_module(module, __package__)
    except ImportError as exc:
        raise DriverError(
            f"the driver of {what} could not be loaded ({exc}); check that labruntime is fully "
            "installed with its dependencies (pyserial, gpiozero)"
        ) from exc
    return _Scheme(getattr(mod, opener), getattr(mod, validator, None))


def _from_entry_point(scheme: str) -> _Scheme | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name.lower() != scheme:
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            raise DriverError(
                f"the driver of scheme {scheme!r} (entry point {ep.value!r} in group "
                f"{ENTRY_POINT_GROUP!r}) failed to load: {exc}"
            ) from exc
        if hasattr(obj, "open_url"):
            return _Scheme(obj.open_url, getattr(obj, "validate", None))
        return _Scheme(obj, getattr(obj, "validate", None))
    return None


def _resolve(url: DeviceURL) -> _Scheme:
    with _lock:
        registered = _registered.get(url.scheme)
    if registered is not None:
        return registered
    if url.scheme in _BUILTIN:
        return _load(*_BUILTIN[url.scheme], f"scheme {url.scheme!r}")
    if url.scheme == "sim":
        target = url.target.lower()
        if target not in _SIM_TARGETS:
            known = ", ".join(f"sim:{t}" for t in sorted(_SIM_TARGETS))
            raise DeviceURLError(
                f"bad device URL {str(url)!r}: unknown simulated device {url.target!r}; "
                f"known: {known}"
            )
        return _load(*_SIM_TARGETS[target], f"sim:{target}")
    found = _from_entry_point(url.scheme)
    if found is not None:
        return found
    raise UnknownSchemeError(
        f"unknown device scheme {url.scheme!r} in {str(url)!r}; known schemes: "
        f"{', '.join(known_schemes())} (a lab adds its own with register_scheme() or an entry "
        f"point in the {ENTRY_POINT_GROUP!r} group)"
    )


def scheme_grammar(scheme: str, target: str = "") -> str | None:
    """The URL grammar of ``scheme`` (its driver module's ``GRAMMAR``), or None if unknown.

    For ``sim`` it is the grammar of the simulator named by ``target``, or of all of them.
    """
    scheme = scheme.lower()
    modules: list[str] = []
    if scheme in _BUILTIN:
        modules = [_BUILTIN[scheme][0]]
    elif scheme == "sim":
        known = _SIM_TARGETS.get(target.lower())
        modules = [known[0]] if known else [m for m, _, _ in _SIM_TARGETS.values()]
    with _lock:
        registered = _registered.get(scheme)
    grammars: list[object] = []
    try:
        if registered is not None:
            opener = registered.opener
            holder = importlib.import_module(getattr(opener, "__module__", "") or __name__)
            grammars = [getattr(opener, "GRAMMAR", None) or getattr(holder, "GRAMMAR", None)]
        elif modules:
            grammars = [importlib.import_module(m, __package__).GRAMMAR for m in modules]
        else:
            found = _from_entry_point(scheme)
            if found is not None:
                holder = importlib.import_module(found.opener.__module__)
                grammars = [getattr(holder, "GRAMMAR", None)]
    except (ImportError, AttributeError, DriverError):
        return None
    text = " | ".join(g for g in grammars if isinstance(g, str) and g)
    return text or None


def _parse(url: str | DeviceURL) -> DeviceURL:
    """parse_device_url, restating a malformed option with the grammar of its scheme."""
    try:
        return parse_device_url(url)
    except DeviceURLError as exc:
        if exc.scheme is None or exc.url is None:
            raise
        target = exc.url.partition(":")[2].partition("?")[0]
        grammar = scheme_grammar(exc.scheme, target)
        if grammar is None:
            raise
        raise DeviceURLError(
            f"bad device URL {exc.url!r}: {exc.problem}. Grammar: {grammar}",
            url=exc.url,
            scheme=exc.scheme,
            problem=exc.problem,
        ) from None


def open_device(url: str | DeviceURL, *, name: str | None = None, **kwargs: Any) -> Device:
    """Open the device at ``url`` (e.g. ``"serial:/dev/ttyUSB0?baudrate=115200"``).

    The device is leased to this process and driven to its safe state before it is returned;
    close it (or use it as a context manager) to release it.
    """
    parsed = _parse(url)
    scheme = _resolve(parsed)
    log.debug("opening device %s", parsed)
    return scheme.opener(parsed, name=name, **kwargs)


def validate_device_url(url: str | DeviceURL) -> DeviceURL:
    """Parse ``url`` and check its scheme and options without opening anything."""
    parsed = _parse(url)
    scheme = _resolve(parsed)
    if scheme.validator is not None:
        scheme.validator(parsed)
    return parsed
