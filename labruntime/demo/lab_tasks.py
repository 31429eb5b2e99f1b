"""The demo lab's device tasks, written as a lab author would write them.

``program_firmware`` writes an image into the ``board`` and verifies it; its progress reaches
the page through ``task.progress``, and ``task.stop()`` cancels it at the next page.

On the AVR twin (``sim:avr``) the LED is the board's pin 13 as the uploaded program drives it:
``read_pin`` returns its level and its edges in simulated time (the twin keeps to the wall
clock), which the page replays. On the fallback board (``sim:arduino``, no AVR code runs)
``set_led`` / ``read_led`` drive the ``led`` device: output pin 17 wired to input pin 27, so the
state shown is read back from the input, not assumed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labruntime.drivers.image import parse_ihex

if TYPE_CHECKING:
    from labruntime import WebLab

__all__ = ["LED_IN", "LED_OUT", "TWIN_LED", "DemoTasks", "register_tasks"]

log = logging.getLogger(__name__)

LED_OUT = 17  # the student's output pin
LED_IN = 27  # the input it is wired to (a jumper on a real Pi, a wired pair in simulation)
ADMISSION_MARGIN = 2.0  # seconds kept free at the end of the slot
TWIN_LED = 13  # the twin's LED: Arduino pin 13 (PB5), as on an Uno
MAX_EDGES = 200  # edges one read_pin returns (the newest)
#: the twin's idle program: ``rjmp .-2`` at the reset vector (pins inputs, nothing printed)
IDLE_HEX = ":02000000FFCF30\n:00000001FF\n"


@dataclass(frozen=True)
class DemoTasks:
    """The registered task wrappers (``.delay()`` them from views)."""

    program_firmware: Any
    set_led: Any  # None on the twin: its LED is the program's
    read_led: Any
    read_pin: Any  # the twin only: the LED pin and its edges
    clear_board: Any  # the twin only: an idle program for the next student


def register_tasks(weblab: WebLab, *, twin: bool = False) -> DemoTasks:
    """Declare the demo's tasks on ``weblab`` (``twin``: the board is ``sim:avr``, whose LED is
    pin 13 as the student's program drives it, read with ``read_pin``)."""
    from labruntime import current_devices, require_time

    @weblab.task(device="board", unique="user")
    def program_firmware(hex_text: str, source: str) -> dict[str, Any]:
        """Program and verify ``hex_text``; refuse it if the student's time cannot cover it."""
        board = current_devices["board"]
        image = parse_ihex(hex_text, source)
        require_time(
            board.estimate_seconds(image), margin=ADMISSION_MARGIN, what=f"programming {source}"
        )
        result = board.program(image, verify=True)
        log.info("demo: %s programmed (%d bytes)", source, result.bytes)
        return {"source": source, **result.to_dict()}

    if twin:

        @weblab.task(device="board")
        def read_pin(after: float = 0.0) -> dict[str, Any]:
            """The LED pin now, and its edges after ``after`` (simulated seconds), so the
            page can replay them with their timing whatever its polling rate."""
            board = current_devices["board"]
            pin = board.pin(TWIN_LED)
            edges = [[e.seconds, e.level] for e in pin.edges() if e.seconds > after]
            return {"on": bool(pin.value), "now": board.sim_seconds, "edges": edges[-MAX_EDGES:]}

        @weblab.task(device="board")
        def clear_board() -> dict[str, Any]:
            """A new student's board runs nothing: the previous student's program (which
            would go on blinking and printing) is replaced by an idle loop."""
            result = current_devices["board"].program(IDLE_HEX.encode("ascii"), verify=True)
            return result.to_dict()

        return DemoTasks(program_firmware, None, None, read_pin, clear_board)

    @weblab.task(device="led")
    def set_led(on: bool) -> bool:
        """Drive the output, wait for the wired input to follow, return what it reads."""
        gpio = current_devices["led"]
        gpio.output(LED_OUT).value = bool(on)
        sense = gpio.input(LED_IN)
        sense.wait_for(bool(on), timeout=1.0)
        return bool(sense.value)

    @weblab.task(device="led")
    def read_led() -> bool:
        """What the input wired to the LED's pin reads now."""
        return bool(current_devices["led"].input(LED_IN).value)

    return DemoTasks(program_firmware, set_led, read_led, None, None)
