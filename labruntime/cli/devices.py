"""Device commands: ``labruntime device check|program`` and ``labruntime sim arduino``.

* ``device check URL [--json]``: open the device, contact it as deeply as its kind allows
  (:func:`contact`), drive it safe, close it. Exit 0 when it answered and reached its safe
  state, 1 when not or on a device error (the reason on one line), 2 on a bad URL.
* ``device program URL FIRMWARE [--no-verify] [--timeout S]``: program a board (any device
  with the Programmer capability) with a progress bar. The file is read and checked before
  the board is opened, its size against the board's part before anything is written. Ctrl-C
  cancels at the next safe point (a second one at once); on a failure or a cancel the board is
  driven safe and the message says whether that worked.
* ``device status [--json]`` (needs the lab: ``--app``): who holds each device of
  WEBLAB_DEVICES (worker id, pid, host, fencing token) or, when none holds it, the command that
  starts a worker for it; and its last safe report. Reads Redis only: it opens no device,
  and never starts the embedded Redis ("not running: ..." when it is not running).
* ``sim arduino [--baud N] [--fault F]... [--part P]``: start a simulated Arduino; its tty path
  is the first line on stdout; runs until SIGINT/SIGTERM. Try avrdude or your own tool on it.

Every DriverError ends as one ``Error: ...`` line (exit 1; 2 for a bad URL or option), never a
traceback.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from labruntime.drivers import (
    Console,
    DeviceIOError,
    DeviceURLError,
    DigitalInput,
    DigitalOutput,
    DriverError,
    FirmwareImage,
    OperationCancelled,
    Programmer,
    Progress,
    UnknownSchemeError,
    has_capability,
    load_image,
    open_device,
)
from labruntime.drivers.parts import Part
from labruntime.state import LabState

from .app import readonly_command

__all__ = ["device_group", "sim_group"]


class DeviceCommandError(click.ClickException):
    """A device error as one line; ``exit_code`` 2 for bad input (URL, option, fault)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        setattr(self, "exit_code", exit_code)  # noqa: B010 - click declares a class default


@contextmanager
def _driver_errors() -> Iterator[None]:
    try:
        yield
    except (DeviceURLError, UnknownSchemeError) as error:
        raise DeviceCommandError(str(error), exit_code=2) from None
    except (DriverError, OSError) as error:
        raise DeviceCommandError(str(error)) from None


@click.group("device")
def device_group() -> None:
    """Check and program devices given by URL.

    \b
    Examples (a bad URL or option prints its scheme's full grammar):
      serial:/dev/ttyUSB0?baudrate=115200     serial:rfc2217://pi-7:4001
      gpio:17?safe=0                          gpio:27?mode=in&pull=up
      stk500:/dev/ttyACM0?part=atmega328p     stk500:/dev/ttyAMA0?reset=gpio:4
      command:avrdude?port=/dev/ttyACM0&args=-c arduino -p m328p -P {port} -U flash:w:{image}:i
      sim:arduino?fault=verify@0x100          sim:gpio?wired=17-27
    """


def _render(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_render(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return "-" if value is None else str(value)


def contact(device: Any) -> dict[str, Any]:
    """Talk to ``device`` as deeply as its kind allows, without changing what it holds:

    - a device with ``check()`` (stk500:, sim:arduino, sim:avr): reset, sync with the
      bootloader, read the signature (the same "no answer" diagnosis as ``program``);
    - a GPIO output: drive it on and off, reading the level back each time;
    - a simulated GPIO board: each wired output drives its input, read back;
    - a console (serial:): opening the port was the contact;
    - anything else: opening it was all that can be done (said so).

    Returns what was found; raises DriverError saying what did not answer."""
    if callable(getattr(device, "check", None)):
        return dict(device.check())
    if has_capability(device, DigitalOutput):
        seen = {}
        for level in (True, False):
            device.value = level
            seen[level] = bool(device.value)
        if seen != {True: True, False: False}:
            raise DeviceIOError(
                f"{device.label}: driven on then off, its level read back {seen[True]} then "
                f"{seen[False]}: check the pin number and the wiring"
            )
        return {"output": "driven on and off, read back"}
    wired = getattr(device, "wired", None)
    if wired:
        for out_pin, in_pin in wired:
            for level in (True, False):
                device.output(out_pin).value = level
                if bool(device.input(in_pin).value) != level:
                    raise DeviceIOError(
                        f"{device.label}: output {out_pin} driven {int(level)}, but input "
                        f"{in_pin} wired to it reads {int(not level)}"
                    )
        return {"wired": f"{len(wired)} pair(s) driven and read back"}
    if has_capability(device, Console):
        return {"console": "port opened"}
    return {"contact": "opened (this kind of device cannot be asked anything more)"}


def read_back(device: Any, wired_url: str) -> dict[str, Any]:
    """Drive the output ``device`` on and off and read each level on the input ``wired_url``
    that the rig wires to it (a jumper, a loopback)."""
    if not has_capability(device, DigitalOutput):
        raise DeviceCommandError(f"--wired-to needs a GPIO output, and {device.url} is not one", 2)
    with open_device(wired_url) as opened:
        sensor: Any = opened  # a DigitalInput (checked below)
        if not has_capability(sensor, DigitalInput):
            raise DeviceCommandError(f"--wired-to {wired_url} is not a GPIO input", 2)
        for level in (True, False):
            device.value = level
            waited = (
                sensor.wait_for(level, 1.0) if callable(getattr(sensor, "wait_for", None)) else None
            )
            if waited is False or bool(sensor.value) != level:
                raise DeviceIOError(
                    f"{device.label} driven {int(level)}, but {wired_url} wired to it reads "
                    f"{int(bool(sensor.value))}: check the wiring and the pin numbers"
                )
    return {"wired": f"driven on and off, read back on {wired_url}"}


@device_group.command("check")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--name", default=None, help="A name for the device in messages.")
@click.option(
    "--wired-to",
    "wired_to",
    default=None,
    metavar="URL",
    help="A GPIO input wired to this output (a jumper): each level is read back on it.",
)
def check_command(url: str, as_json: bool, name: str | None, wired_to: str | None) -> None:
    """Open URL, contact the device, drive it safe and close it; exit 1 saying why not.

    \b
    A programmer is reset and synced with its bootloader, and its signature read (a board
    that does not answer fails after its sync_timeout, 3 s by default, with the reason); a
    GPIO output is driven and read back (on the input --wired-to names, if the rig wires
    one to it); a console is opened. Run it before students come.
    """
    problem: str | None = None
    found: dict[str, Any] = {}
    with _driver_errors():
        device = open_device(url, name=name)
        try:
            info = device.describe()
            try:
                found = contact(device)
                if wired_to:
                    found.update(read_back(device, wired_to))
            except DriverError as error:
                problem = str(error)
            report = device.safe()
        finally:
            device.close()
    if as_json:
        checked = {"ok": problem is None, "problem": problem, **found}
        result = {"device": info, "check": checked, "safe": report.to_dict()}
        click.echo(json.dumps(result, indent=2))
    else:
        skip = {"safe", "operations", "closed", "busy", "url"}
        click.echo(f"device: {info['url']}")
        for key, value in info.items():
            if key not in skip:
                click.echo(f"  {key}: {_render(value)}")
        click.echo(f"contact: {'FAILED' if problem else 'ok'}")
        for key, value in found.items():
            click.echo(f"  {key}: {_render(value)}")
        click.echo(f"safe: {'ok' if report.ok else 'FAILED'} ({report.detail})")
        for key, value in report.state.items():
            click.echo(f"  {key}: {_render(value)}")
    if problem:
        raise DeviceCommandError(f"the device did not answer as it should: {problem}")
    if not report.ok:
        raise DeviceCommandError(f"the device did not reach its safe state: {report.detail}")


class _Bars:
    """One click progress bar per stage (write, verify...), fed by Progress events."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: Any = None
        self.shown = 0

    def __call__(self, event: Progress) -> None:
        if event.stage != self.stage:
            self.close()
            self.stage = event.stage
            self.bar = click.progressbar(length=1000, label=f"{event.stage:>8}", file=sys.stderr)
            self.bar.__enter__()
            self.shown = 0
        position = int(event.fraction * 1000)
        if position > self.shown:
            self.bar.update(position - self.shown)
            self.shown = position

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _check_fits(device: Any, image: FirmwareImage) -> None:
    """Refuse an image too big for the device's part (if it declares one) before programming."""
    part = getattr(device, "part", None)
    if isinstance(part, Part):
        image.check_fits(part)


def _left_safe(device: Any) -> str:
    """Drive ``device`` safe after a failure; a sentence saying how that went."""
    report = device.safe()
    return (
        f"device left safe ({report.detail})" if report.ok else f"device NOT safe: {report.detail}"
    )


@contextmanager
def _ctrl_c_cancels(device: Any, interrupted: threading.Event) -> Iterator[None]:
    """While programming, the first Ctrl-C cancels at the next safe point (a page boundary,
    never inside a critical section); a second one raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        # not here: the handler runs in the main thread, which may hold an operation's lock
        threading.Thread(
            target=device.ops.cancel_all, args=("interrupted (Ctrl-C)",), daemon=True
        ).start()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@device_group.command("program")
@click.argument("url")
@click.argument("firmware", type=click.Path(exists=True, dir_okay=False))
@click.option("--no-verify", is_flag=True, help="Do not read the flash back to verify it.")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=None, help="Deadline (s).")
def program_command(url: str, firmware: str, no_verify: bool, timeout: float | None) -> None:
    """Program FIRMWARE (Intel HEX or raw binary) into the board at URL.

    The file is checked first; the bar shows each stage (write, verify). Ctrl-C cancels at
    the next safe point and leaves the board safe; a second Ctrl-C stops at once.
    """
    bars = _Bars()
    with _driver_errors():
        image = load_image(Path(firmware))  # a bad file fails here, before the board is opened
        device = open_device(url)
        try:
            if not has_capability(device, Programmer):
                raise DeviceCommandError(
                    f"{url} cannot be programmed (its capabilities: "
                    f"{', '.join(device.capabilities()) or 'none'}); use an stk500:, command: "
                    "or sim:arduino URL",
                    exit_code=2,
                )
            _check_fits(device, image)
            board: Any = device  # a Programmer: program() and estimate_seconds()
            estimate = board.estimate_seconds(image, verify=not no_verify)
            click.echo(f"programming {firmware} into {url} (about {estimate:.1f} s)", err=True)
            interrupted = threading.Event()
            try:
                with _ctrl_c_cancels(device, interrupted):
                    result = board.program(
                        Path(firmware), verify=not no_verify, progress=bars, timeout=timeout
                    )
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for a safe point
                interrupted.set()
                bars.close()
                raise DeviceCommandError(
                    f"interrupted; {_left_safe(device)}", exit_code=130
                ) from None
            except (DriverError, OSError) as error:
                bars.close()
                if interrupted.is_set() and isinstance(error, OperationCancelled):
                    raise DeviceCommandError(
                        f"interrupted; {_left_safe(device)}", exit_code=130
                    ) from None
                raise DeviceCommandError(f"{error}\n{_left_safe(device)}") from None
            finally:
                bars.close()
        finally:
            device.close()
    checked = "verified" if result.verified else "not verified"
    click.echo(f"programmed {result.bytes} bytes in {result.seconds:.2f} s, {checked}")


@device_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@readonly_command
def status_command(state: LabState, as_json: bool) -> None:
    """Who holds each device of the lab (WEBLAB_DEVICES), and its last safe state."""
    status = state.devices.status()
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
        return
    if not status:
        click.echo("no devices: WEBLAB_DEVICES is empty")
    for name, info in status.items():
        holder = info["holder"]
        if holder:
            who = (
                f"held by {holder['worker']} (pid {holder['pid']} on {holder['host']}, "
                f"token {holder['token']})"
            )
            if holder.get("closed"):
                who += "; takes no new task (a run-tasks draining, or a worker stopping)"
        else:
            who = f"NOT HELD: start `{info['start']}`"
        click.echo(f"{name}: {info['url']}\n  {who}")
        safe = info["last_safe"]
        if safe:
            ago = time.time() - safe.get("at", time.time())
            mark = "safe" if safe.get("ok") else "NOT SAFE"
            click.echo(f"  last safe report: {mark} {ago:.0f} s ago: {safe.get('state')}")


@click.group("sim")
def sim_group() -> None:
    """Simulated devices for trying labs and tools without hardware."""


@sim_group.command("arduino")
@click.option(
    "--baud",
    "--baudrate",
    "baud",
    type=click.IntRange(min=300),
    default=115200,
    show_default=True,
    help="Its bootloader's baud rate.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    help="nosync | verify@ADDR | disconnect@PERCENT | noleave | slow=FACTOR (repeatable).",
)
@click.option("--part", default="atmega328p", show_default=True, help="The AVR part.")
@click.option(
    "--startup",
    type=click.FloatRange(min=0, max=10),
    default=0.065,
    show_default=True,
    help="Seconds the chip is deaf after a reset (an Uno's fuses: 65 ms).",
)
@click.option(
    "--flashes",
    type=click.IntRange(min=0, max=20),
    default=3,
    show_default=True,
    help="LED flashes of the bootloader after a reset (125 ms each, not reading the UART).",
)
def sim_arduino_command(
    baud: int, faults: tuple[str, ...], part: str, startup: float, flashes: int
) -> None:
    """Start a simulated Arduino Uno (Optiboot 4.4's timing); print its tty path first; run
    until interrupted. Opening the port resets it, as on an Uno."""
    from labruntime.drivers.sim.arduino import SimulatedArduino

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    with _driver_errors():
        try:
            board = SimulatedArduino(
                baudrate=baud,
                part=part,
                faults=",".join(faults) or None,
                startup=startup,
                flashes=flashes,
            )
        except (ValueError, KeyError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            raise DeviceCommandError(str(message), exit_code=2) from None
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            path = board.start()
            click.echo(path)
            sys.stdout.flush()
            click.echo(
                f"simulated {board.part.name} at {baud} baud; try: avrdude -c arduino "
                f"-p {board.part.avrdude_name} -P {path} -b {baud} -U flash:w:FIRMWARE.hex:i "
                "(Ctrl-C to stop)",
                err=True,
            )
            stop.wait()
        finally:
            board.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    click.echo("simulated board stopped", err=True)
