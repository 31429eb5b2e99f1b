"""``sim:gpio``: a simulated GPIO board on gpiozero's MockFactory, with wired loopback pairs.

``sim:gpio?out=17,18&in=27,22&wired=17-27,18-22&safe=0&active_high=true&pull=down``

A simulated board on its own MockFactory. ``out``/``in`` list output and input pins (comma
separated); ``wired=A-B`` connects output A to input B (a loopback: driving A drives B) and
implies A is an output and B an input. ``safe``/``active_high``/``pull`` apply to every line of
the board. Lines are reached with ``board.output(17)`` / ``board.input(27)`` (DigitalOutput /
DigitalInput capabilities); ``safe()`` drives every output to ``safe``.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from ..base import Device
from ..errors import DeviceURLError
from ..gpio import GpioOptions, find_pin, shared_factory
from ..gpio_lines import InputLine, OutputLine, gpiozero_errors
from ..urls import DeviceURL, reject_unknown

__all__ = ["GRAMMAR", "SIM_GRAMMAR", "SimGpioBoard", "open_url", "validate"]

log = logging.getLogger(__name__)

_Line = TypeVar("_Line", InputLine, OutputLine)

SIM_GRAMMAR = (
    "sim:gpio?out=17,18&in=27,22&wired=17-27,18-22&safe=0&active_high=true&pull=down|up|none"
)
GRAMMAR = SIM_GRAMMAR
_SIM_OPTIONS = {"out", "in", "wired", "safe", "active_high", "pull"}


class SimGpioBoard(Device):
    """``sim:gpio``: a simulated board on its own MockFactory with wired output->input pairs."""

    scheme = "sim"

    def __init__(self, url: DeviceURL, *, name: str | None, factory: Any) -> None:
        super().__init__(url, name=name)
        self._factory = factory
        self.outputs: dict[str, OutputLine] = {}
        self.inputs: dict[str, InputLine] = {}
        self.wired: list[tuple[str, str]] = []

    def _canonical(self, pin: int | str) -> str:
        for _header, info in self._factory.board_info.find_pin(str(pin)):
            return info.name
        raise KeyError(f"{pin!r} is not a pin name of {self.label}")

    def output(self, pin: int | str) -> OutputLine:
        """The output line on ``pin`` (any gpiozero name); KeyError if it is not an output."""
        return self._line(pin, self.outputs, "output")

    def input(self, pin: int | str) -> InputLine:
        """The input line on ``pin`` (any gpiozero name); KeyError if it is not an input."""
        return self._line(pin, self.inputs, "input")

    def _line(self, pin: int | str, lines: dict[str, _Line], kind: str) -> _Line:
        self._check_open()
        name = self._canonical(pin)
        if name not in lines:
            raise KeyError(f"{name} is not an {kind} of {self.label} ({kind}s: {sorted(lines)})")
        return lines[name]

    def _drive_safe(self) -> dict[str, Any]:
        outputs = {pin: line.drive_safe() for pin, line in self.outputs.items()}
        inputs = {pin: line.drive_safe() for pin, line in self.inputs.items()}
        return {"outputs": outputs, "inputs": inputs}

    def _close(self) -> None:
        lines: list[OutputLine | InputLine] = [*self.outputs.values(), *self.inputs.values()]
        for line in lines:
            line.close()
        self._factory.close()

    def _describe(self) -> dict[str, Any]:
        return {
            "target": "gpio",
            "outputs": [line.describe() for line in self.outputs.values()],
            "inputs": [line.describe() for line in self.inputs.values()],
            "wired": [f"{a}-{b}" for a, b in self.wired],
        }


def _sim_layout(url: DeviceURL, board: Any) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    def pins(key: str) -> list[str]:
        items = [p.strip() for p in url.options.get(key, "").split(",") if p.strip()]
        return [_find_pin_sim(board, p, url) for p in items]

    outs, ins, wired = pins("out"), pins("in"), []
    for pair in filter(None, (p.strip() for p in url.options.get("wired", "").split(","))):
        a, dash, b = pair.partition("-")
        if not dash or not a.strip() or not b.strip():
            raise DeviceURLError(
                f"bad device URL {str(url)!r}: wired={pair!r} is not OUT-IN. {SIM_GRAMMAR}"
            )
        wired.append((_find_pin_sim(board, a.strip(), url), _find_pin_sim(board, b.strip(), url)))
    outs += [a for a, _ in wired if a not in outs]
    ins += [b for _, b in wired if b not in ins]
    both = sorted(set(outs) & set(ins))
    problem = ""
    if both:
        problem = f"{', '.join(both)} cannot be both an output and an input"
    elif len({b for _, b in wired}) != len(wired):
        problem = "an input is wired to two outputs"
    elif len(set(outs)) != len(outs) or len(set(ins)) != len(ins):
        problem = "a pin is listed twice"
    elif not outs and not ins:
        problem = "the board has no pins (give out=, in= or wired=)"
    if problem:
        raise DeviceURLError(f"bad device URL {str(url)!r}: {problem}. Grammar: {SIM_GRAMMAR}")
    return outs, ins, wired


def _find_pin_sim(board: Any, spec: str, url: DeviceURL) -> str:
    return find_pin(board, spec, url, f"Grammar: {SIM_GRAMMAR}")


def validate(url: DeviceURL) -> None:
    """Check a sim:gpio URL without building the board."""
    reject_unknown(url, _SIM_OPTIONS, SIM_GRAMMAR)
    GpioOptions(url, grammar=SIM_GRAMMAR, sim=True)
    _sim_layout(url, shared_factory("mock"))


def open_url(url: DeviceURL, *, name: str | None = None) -> SimGpioBoard:
    """Build the simulated board of a ``sim:gpio?...`` URL, every output at its safe value."""
    from gpiozero.pins.mock import MockConnectedPin, MockFactory

    reject_unknown(url, _SIM_OPTIONS, SIM_GRAMMAR)
    opts = GpioOptions(url, grammar=SIM_GRAMMAR, sim=True)
    factory = MockFactory()
    board = SimGpioBoard(url, name=name, factory=factory)
    try:
        outs, ins, wired = _sim_layout(url, factory)
        board.wired = wired
        for out_pin, in_pin in wired:
            factory.pin(out_pin, pin_class=MockConnectedPin, input_pin=factory.pin(in_pin))
        with gpiozero_errors(str(url)):
            for pin in ins:  # inputs first: a wired output drives its input from the start
                board.inputs[pin] = opts.make_input(factory, pin, board)
            for pin in outs:
                board.outputs[pin] = opts.make_output(factory, pin, board)
        board.safe()
    except BaseException:
        board.close(safe=False)
        raise
    return board
