"""The scheme registry: built-ins, register_scheme, entry points, validate without hardware."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labruntime.drivers import (
    Device,
    DeviceURLError,
    DriverError,
    UnknownSchemeError,
    known_schemes,
    open_device,
    register_scheme,
    unregister_scheme,
    validate_device_url,
)
from labruntime.drivers.urls import DeviceURL, opt_int, reject_unknown


class Relay(Device):
    """A tiny third-party driver: a relay whose safe state is open."""

    scheme = "relay"

    def __init__(self, url: DeviceURL, *, name: str | None, channel: int) -> None:
        super().__init__(url, name=name)
        self.channel = channel
        self.closed_contacts = True
        self.closed_hw = False

    def _drive_safe(self) -> dict[str, Any]:
        self.closed_contacts = False
        return {"channel": self.channel, "contacts": "open"}

    def _close(self) -> None:
        self.closed_hw = True

    def _describe(self) -> dict[str, Any]:
        return {"channel": self.channel}


def open_relay(url: DeviceURL, *, name: str | None = None, **kwargs: Any) -> Relay:
    validate_relay(url)
    return Relay(url, name=name, channel=opt_int(url, "channel", 1) + kwargs.get("offset", 0))


#: the registry quotes the GRAMMAR of the opener's module when an option is malformed
GRAMMAR = "relay:BOARD?channel=N"


def validate_relay(url: DeviceURL) -> None:
    reject_unknown(url, {"channel"}, GRAMMAR)
    opt_int(url, "channel", 1, minimum=1, grammar=GRAMMAR)


@pytest.fixture
def relay_scheme() -> Iterator[None]:
    register_scheme("relay", open_relay, validate_relay)
    yield
    unregister_scheme("relay")


def test_builtin_schemes_are_known() -> None:
    assert {"serial", "gpio", "command", "stk500", "sim"} <= set(known_schemes())


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        open_device("toaster:/dev/ttyUSB0")
    message = str(info.value)
    assert "'toaster'" in message
    for scheme in ("command", "gpio", "serial", "sim", "stk500"):
        assert scheme in message
    assert "register_scheme" in message and "labruntime.drivers" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, DriverError)


def test_unknown_sim_target_lists_the_simulators() -> None:
    with pytest.raises(DeviceURLError, match="sim:arduino, sim:avr, sim:gpio"):
        open_device("sim:toaster")


def test_registered_scheme_opens_and_passes_keyword_arguments(relay_scheme: None) -> None:
    assert "relay" in known_schemes()
    with open_device("relay:board1?channel=3", name="pump", offset=10) as relay:
        assert relay.channel == 13 and relay.name == "pump"
        info = relay.describe()
        assert info["scheme"] == "relay" and info["channel"] == 13
        assert info["capabilities"] == []
        report = relay.safe()
        assert report.ok and report.state == {"channel": 13, "contacts": "open"}
    assert relay.closed and relay.closed_hw and relay.closed_contacts is False


def test_validate_checks_options_without_opening(relay_scheme: None) -> None:
    assert validate_device_url("relay:board1?channel=2").options == {"channel": "2"}
    with pytest.raises(DeviceURLError, match="relay:BOARD"):
        validate_device_url("relay:board1?channel=0")
    with pytest.raises(DeviceURLError, match="unknown option"):
        validate_device_url("relay:board1?chanel=2")


@pytest.mark.parametrize(
    "url",
    [
        "serial:/dev/ttyDOES-NOT-EXIST?baudrate=9600",
        "gpio:17?safe=1",  # no GPIO here and no factory: validate does not touch hardware
        "sim:gpio?wired=17-27",
        "command:avrdude?args=-U flash:w:{image}:i",
    ],
)
def test_validate_builtin_urls_without_hardware(url: str) -> None:
    assert validate_device_url(url).raw == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("serial:/dev/ttyUSB0?speed=9600", "unknown option 'speed'"),
        ("serial:/dev/ttyUSB0?baud=9600&baudrate=9600", "baud or baudrate, not both"),
        ("gpio:17?safe=2", "not a boolean"),
        ("sim:gpio?out=17&in=17", "both an output and an input"),
        ("command:avrdude?args=-v", "must contain {image}"),
        ("nosuch:thing", "known schemes"),
    ],
)
def test_validate_rejects_bad_builtin_urls(url: str, message: str) -> None:
    with pytest.raises(DriverError, match=message):
        validate_device_url(url)


def test_entry_point_scheme_from_an_installed_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package declaring [labruntime.drivers] relaylab = module is found by open_device."""
    (tmp_path / "relaylab_driver.py").write_text(
        "from labruntime.drivers import Device\n"
        "from labruntime.drivers.urls import reject_unknown\n"
        "class Lamp(Device):\n"
        "    scheme = 'lamp'\n"
        "    def _drive_safe(self):\n        return {'lamp': 'off'}\n"
        "    def _close(self):\n        pass\n"
        "def validate(url):\n    reject_unknown(url, set(), 'lamp:NAME')\n"
        "def open_url(url, *, name=None):\n    validate(url)\n    return Lamp(url, name=name)\n"
    )
    dist = tmp_path / "relaylab-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: relaylab\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[labruntime.drivers]\nlamp = relaylab_driver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "lamp" in known_schemes()
        with open_device("lamp:desk") as lamp:
            assert lamp.last_safe is None or lamp.last_safe.ok
            assert lamp.safe().state == {"lamp": "off"}
        with pytest.raises(DeviceURLError, match="lamp:NAME"):
            validate_device_url("lamp:desk?colour=red")
    finally:
        sys.modules.pop("relaylab_driver", None)


def test_a_broken_entry_point_is_a_driver_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "brokenlab-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenlab\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[labruntime.drivers]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DriverError, match="'broken'.*failed to load"):
        open_device("broken:x")


def test_registering_a_bad_name_is_refused() -> None:
    with pytest.raises(DeviceURLError, match="not a valid scheme"):
        register_scheme("9lives", open_relay)


@pytest.mark.parametrize(
    ("url", "problem", "grammar"),
    [
        ("gpio:17?safe", "option 'safe' has no value", "gpio:PIN?mode=out"),
        ("serial:/dev/ttyUSB0?&=3", "option '=3' has no name", "serial:PORT?baudrate="),
        ("stk500:/dev/ttyACM0?part=m328p&part=m168", "'part' is given twice", "stk500:PORT?"),
        ("command:avrdude?args", "option 'args' has no value", "command:TOOL?args="),
        ("sim:arduino?fault", "option 'fault' has no value", "sim:arduino?baud="),
        ("sim:gpio?out", "option 'out' has no value", "sim:gpio?out="),
    ],
)
def test_a_malformed_option_shows_the_grammar_of_its_scheme(
    url: str, problem: str, grammar: str
) -> None:
    for call in (open_device, validate_device_url):
        with pytest.raises(DeviceURLError) as info:
            call(url)
        message = str(info.value)
        assert problem in message and f"Grammar: {grammar}" in message
        assert "scheme:target?key=value" not in message  # not the generic grammar


def test_a_registered_scheme_lends_its_module_grammar(relay_scheme: None) -> None:
    with pytest.raises(DeviceURLError, match=r"'channel' is given twice\. Grammar: relay:BOARD"):
        open_device("relay:b?channel=1&channel=2")


def test_an_unknown_scheme_with_a_malformed_option_gets_the_generic_grammar() -> None:
    with pytest.raises(DeviceURLError, match=r"Grammar: scheme:target\?key=value"):
        open_device("toaster:b?slots")
