"""pytest plugin for hardware-in-the-loop (HIL) suites: one test body, simulated or real devices.

Installed with labruntime (entry point ``pytest11``), so it loads in every pytest run; it does
nothing until a test asks for one of its fixtures or its options are given, and it imports the
device layer only then.

Which devices (first match wins; a map given explicitly replaces the default one entirely, so
a test whose device is missing skips with the reason rather than silently using a simulator):

1. ``--lr-device NAME=URL`` (repeatable), or ``--lr-device path/to/map.toml`` (its options
   are namespaced ``--lr-*``, as labgrid's are ``--lg-*``: ``--device`` would clash with
   other plugins, pytest-playwright's among them);
2. the environment variable ``LABRUNTIME_HIL_DEVICES``: a path to a TOML map, or
   ``name=url;name=url``;
3. ``config/devices.sim.toml`` under pytest's rootdir;
4. the built-in simulated map :data:`BUILTIN_SIM_MAP`.

A TOML map is a lab configuration file (the same file ``app.config.from_file`` loads): the
``[WEBLAB_DEVICES]`` table plus an optional ``[HIL_DEVICES]`` table of devices only the tests
use (a board at the wrong baud rate, say). A TOML file of plain ``name = "url"`` lines works too.

Names the suites use: ``board`` (a Programmer), ``board_nosync`` (a board that will not
answer), ``board_unplug`` (a board that vanishes mid-programming), ``led`` (a DigitalOutput),
and a loopback (an output wired to an input): either ``loop_out`` + ``loop_in`` (two devices:
two real pins joined by a jumper) or ``loopback`` (one board whose ``output(pin)`` is wired to
its ``input(pin)``, e.g. ``sim:gpio?wired=20-21``).

Fixtures:

* ``hil_device_map``: the resolved map, name -> URL (a :class:`DeviceMap`, ``.source`` says
  where it came from);
* ``hil_device``: a factory, ``hil_device("board")`` opens the named device with
  ``labruntime.drivers.open_device`` and, at teardown, drives it safe, checks the report and
  closes it; it skips the test when the map has no such device;
* ``hil_board``, ``hil_led``: the usual devices, checked for the capability the test needs;
* ``hil_gpio_loop``: a :class:`LoopbackPair` (``out``, ``inp``, ``safe()``), and its two halves
  ``hil_gpio_out`` / ``hil_gpio_in``;
* ``hil_lab``: a running lab on the HIL devices (:class:`.hil_lab.HilLab`): served
  over HTTP, a device worker process holding ``board`` and ``led``, a FakeRLMS, students over
  HTTP; teardown stops the worker (SIGTERM) and checks every device reported safe.

Tests that use any of these fixtures get the ``hil`` marker, so ``-m "not hil"`` leaves them out.

On a real rig (wiring and install: config/README.md and config/devices.rig.toml)::

    LABRUNTIME_HIL_DEVICES=config/devices.rig.toml .venv/bin/python -m pytest hil_tests
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

log = logging.getLogger(__name__)

ENV_VAR = "LABRUNTIME_HIL_DEVICES"
DEFAULT_MAP = Path("config") / "devices.sim.toml"

#: Used when neither an option, the environment nor the rootdir's config/ gives a map.
BUILTIN_SIM_MAP: dict[str, str] = {
    "board": "sim:arduino?baud=115200&part=atmega328p",
    "board_nosync": "sim:arduino?baud=115200&fault=nosync",
    "board_unplug": "sim:arduino?baud=115200&fault=disconnect@50",
    "led": "gpio:17?safe=0&factory=mock",
    "loopback": "sim:gpio?wired=20-21&safe=1&pull=down",
}

_FIXTURES = frozenset(
    {"hil_device_map", "hil_device", "hil_board", "hil_led", "hil_gpio_loop"}
    | {"hil_gpio_out", "hil_gpio_in", "hil_lab"}
)


class DeviceMap(dict[str, str]):
    """A device map (name -> URL) that remembers where it came from (``source``)."""

    def __init__(self, devices: Mapping[str, str], source: str) -> None:
        super().__init__(devices)
        self.source = source


# pytest marks UsageError final; a bad device map is a usage error, reported as one line
class DeviceMapError(pytest.UsageError, ValueError):  # type: ignore[misc]
    """A --lr-device option, LABRUNTIME_HIL_DEVICES or a TOML device map is malformed."""


# -- resolving the map --------------------------------------------------------------------------
def parse_pair(text: str, origin: str) -> tuple[str, str]:
    """``NAME=URL`` -> (name, url); the URL may contain ``=`` itself."""
    name, sep, url = text.strip().partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url or not name.replace("_", "").replace("-", "").isalnum():
        raise DeviceMapError(
            f"{origin}: {text!r} is not NAME=URL (e.g. board=stk500:/dev/ttyACM0); "
            "give each device a name the tests know (board, led, loop_out, loop_in, ...)"
        )
    return name, url


def load_toml_map(path: Path) -> dict[str, str]:
    """Read a TOML device map (``[WEBLAB_DEVICES]`` + ``[HIL_DEVICES]``, or flat name = url)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise DeviceMapError(f"cannot read the HIL device map {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DeviceMapError(f"the HIL device map {path} is not valid TOML: {exc}") from exc
    if "WEBLAB_DEVICES" in data or "HIL_DEVICES" in data:
        tables = [data.get("WEBLAB_DEVICES", {}), data.get("HIL_DEVICES", {})]
    else:
        tables = [{k: v for k, v in data.items() if not isinstance(v, dict)}]
    devices: dict[str, str] = {}
    for table in tables:
        if not isinstance(table, dict):
            raise DeviceMapError(f"{path}: WEBLAB_DEVICES / HIL_DEVICES must be tables")
        for name, url in table.items():
            if not isinstance(url, str):
                raise DeviceMapError(
                    f"{path}: device {name!r} must be a URL string, got {type(url).__name__}"
                )
            devices[name] = url
    return devices


def _from_option(values: list[str], base: Path) -> DeviceMap:
    devices: dict[str, str] = {}
    for value in values:
        if "=" not in value and value.endswith(".toml"):
            devices.update(load_toml_map(_resolve(value, base)))
        else:
            name, url = parse_pair(value, "--lr-device")
            devices[name] = url
    return DeviceMap(devices, "--lr-device " + " ".join(values))


def _from_env(value: str, base: Path) -> DeviceMap:
    if "=" not in value:
        path = _resolve(value, base)
        return DeviceMap(load_toml_map(path), f"{ENV_VAR}={path}")
    pairs = [parse_pair(p, ENV_VAR) for p in value.split(";") if p.strip()]
    return DeviceMap(dict(pairs), f"{ENV_VAR}={value}")


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and not candidate.exists() and (base / candidate).exists():
        return base / candidate
    return candidate


def resolve_device_map(
    options: list[str] | None, env: Mapping[str, str], rootdir: Path
) -> DeviceMap:
    """The device map from options, then the environment, then rootdir's config, then built-in."""
    if options:
        return _from_option(options, rootdir)
    if env.get(ENV_VAR, "").strip():
        return _from_env(env[ENV_VAR].strip(), rootdir)
    default = rootdir / DEFAULT_MAP
    if default.is_file():
        return DeviceMap(load_toml_map(default), str(default))
    return DeviceMap(BUILTIN_SIM_MAP, "labruntime.pytest_plugin.hil.BUILTIN_SIM_MAP")


# -- pytest hooks ----------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labruntime-hil", "labruntime hardware-in-the-loop devices")
    group.addoption(
        "--lr-device",
        action="append",
        default=[],
        dest="hil_devices",
        metavar="NAME=URL",
        help=(
            "a device for the HIL fixtures, e.g. board=stk500:/dev/arduino-uno (repeatable), or "
            f"a TOML device map; default: ${ENV_VAR}, else config/devices.sim.toml, else "
            "simulated devices"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: hardware-in-the-loop test (simulated by default)")
    if config.getoption("hil_devices", default=None) or os.environ.get(ENV_VAR, "").strip():
        _device_map(config)  # a malformed --lr-device or map fails now, before collection


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("hil_devices", default=None) or os.environ.get(ENV_VAR):
        devices = _device_map(config)
        return f"labruntime HIL devices ({devices.source}): " + ", ".join(sorted(devices))
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    marker = pytest.mark.hil
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(marker)


def _device_map(config: pytest.Config) -> DeviceMap:
    cached = getattr(config, "_labruntime_hil_map", None)
    if cached is None:
        cached = resolve_device_map(
            config.getoption("hil_devices", default=None), os.environ, config.rootpath
        )
        config._labruntime_hil_map = cached  # type: ignore[attr-defined]
        log.info("HIL device map from %s: %s", cached.source, dict(cached))
    return cached


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def hil_device_map(pytestconfig: pytest.Config) -> DeviceMap:
    """The HIL device map: name -> device URL (``.source`` says where it came from)."""
    return _device_map(pytestconfig)


@pytest.fixture
def hil_device(hil_device_map: DeviceMap) -> Iterator[Callable[..., Any]]:
    """``hil_device(name, **kwargs)`` opens a device of the map; safe + closed at teardown.

    Within one test the same name gives the same open device (a closed one is opened again).
    """
    opened: list[Any] = []

    def open_named(name: str, **kwargs: Any) -> Any:
        for device in opened:
            if device.name == name and not device.closed:
                return device
        url = hil_device_map.get(name)
        if url is None:
            pytest.skip(
                f"no HIL device {name!r} in the device map ({hil_device_map.source}); "
                f"give one with --lr-device {name}=URL or in ${ENV_VAR}"
            )
        from labruntime.drivers.registry import open_device

        device = open_device(url, name=name, **kwargs)
        opened.append(device)
        return device

    yield open_named
    problems = []
    for device in reversed(opened):  # every device is closed, whatever the others do
        if device.closed:
            continue
        try:
            report = device.safe()
            if not report.ok:
                problems.append(f"{device.label}: not safe at teardown: {report.detail}")
        except Exception as exc:  # reported below, after the other devices are closed
            problems.append(f"{device.label}: safe() failed at teardown: {exc!r}")
        finally:
            try:
                device.close(safe=False)
            except Exception as exc:
                problems.append(f"{device.label}: close() failed at teardown: {exc!r}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def _with_capability(device: Any, capability_name: str) -> Any:
    from labruntime.drivers import capabilities

    capability = getattr(capabilities, capability_name)
    if not isinstance(device, capability):
        pytest.fail(
            f"HIL device {device.label!r} ({device.url}) is not a {capability_name}; "
            "fix the device map",
            pytrace=False,
        )
    return device


@pytest.fixture
def hil_board(hil_device: Callable[..., Any]) -> Any:
    """The programmer under test (map name ``board``)."""
    return _with_capability(hil_device("board"), "Programmer")


@pytest.fixture
def hil_led(hil_device: Callable[..., Any]) -> Any:
    """The LED output (map name ``led``)."""
    return _with_capability(hil_device("led"), "DigitalOutput")


@dataclass
class LoopbackPair:
    """An output wired to an input, and the device(s) they belong to."""

    out: Any
    inp: Any
    devices: list[Any]

    def safe(self) -> list[Any]:
        """Drive every device of the pair safe; the SafeReports, in order."""
        return [device.safe() for device in self.devices]


def _loopback(hil_device: Callable[..., Any], devices: Mapping[str, str]) -> LoopbackPair:
    from labruntime.drivers.capabilities import DigitalInput, DigitalOutput

    if "loopback" not in devices and not {"loop_out", "loop_in"} <= devices.keys():
        pytest.skip(
            f"no GPIO loopback in the HIL device map ({getattr(devices, 'source', '?')}): give "
            "loop_out=gpio:20?safe=0 and loop_in=gpio:21?mode=in (a jumper between them), "
            "or loopback=sim:gpio?wired=20-21"
        )
    if "loopback" in devices:
        board = hil_device("loopback")
        wired = getattr(board, "wired", None)
        if not wired:
            pytest.fail(
                f"HIL device 'loopback' ({board.url}) has no wired output->input pair; "
                "use e.g. sim:gpio?wired=20-21, or loop_out + loop_in",
                pytrace=False,
            )
        out_pin, in_pin = wired[0]
        pair = LoopbackPair(board.output(out_pin), board.input(in_pin), [board])
    else:
        out = hil_device("loop_out")
        inp = hil_device("loop_in")
        pair = LoopbackPair(out, inp, [out, inp])
    for line, capability in ((pair.out, DigitalOutput), (pair.inp, DigitalInput)):
        if not isinstance(line, capability):
            pytest.fail(f"loopback: {line!r} is not a {capability.__name__}", pytrace=False)
    return pair


@pytest.fixture
def hil_gpio_loop(hil_device: Callable[..., Any], hil_device_map: DeviceMap) -> LoopbackPair:
    """The loopback pair: ``loop_out`` + ``loop_in``, or the ``loopback`` board's wired pair."""
    return _loopback(hil_device, hil_device_map)


@pytest.fixture
def hil_gpio_out(hil_gpio_loop: LoopbackPair) -> Any:
    """The output side of the loopback pair."""
    return hil_gpio_loop.out


@pytest.fixture
def hil_gpio_in(hil_gpio_loop: LoopbackPair) -> Any:
    """The input side of the loopback pair."""
    return hil_gpio_loop.inp


@pytest.fixture
def hil_lab(hil_device_map: DeviceMap, tmp_path: Path) -> Iterator[Any]:
    """A running lab on the HIL devices (:class:`labruntime.pytest_plugin.hil_lab.HilLab`).

    The lab app with ``WEBLAB_DEVICES`` = the map's ``board`` and ``led``, served over real
    HTTP, its own Redis, a device worker process holding the devices (``labruntime loop
    --device board --device led``) and a ``FakeRLMS`` (``hil_lab.rlms``); students act over
    HTTP (``hil_lab.student()``). Teardown stops the worker with SIGTERM and fails the test if
    a device did not report a safe state.
    """
    missing = [n for n in ("board", "led") if n not in hil_device_map]
    if missing:
        pytest.skip(f"hil_lab needs devices {missing} in the device map ({hil_device_map.source})")
    from .hil_lab import HilLab

    lab = HilLab(dict(hil_device_map), tmp_path)
    problems: list[str] = []
    try:
        lab.start_worker()
        yield lab
    finally:
        problems = lab.close()
    if problems:
        pytest.fail("hil_lab teardown: " + "; ".join(problems))
