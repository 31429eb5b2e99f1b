"""``sim:``: simulated devices, one module per target, loaded on first use of its target.

* ``sim:gpio`` (:mod:`.gpio`): a GPIO board on gpiozero's MockFactory with wired loopback pairs;
* ``sim:arduino`` (:mod:`.arduino`): an Arduino Uno behind Optiboot 4.4 on a pseudo-terminal,
  in real time, programmed by the native ``stk500`` driver; its parts are the bootloader run
  byte by byte (:mod:`.bootloader`), the UART with its 3-byte receiver (:mod:`.uart`), the pty
  that stands in for the USB serial port (:mod:`.pty`) and the faults it can be told to show
  (:mod:`.faults`);
* ``sim:avr`` (:mod:`.avr`): a twin whose AVR, simulated cycle by cycle by simavr in real time,
  boots Optiboot and runs the uploaded program; its process is :mod:`.avr_twin`, its builds
  :mod:`.avr_build`.

A target module exposes ``open_url``, ``validate`` and ``GRAMMAR`` like a scheme's driver
module; :data:`TARGETS` is the table the registry dispatches ``sim:<target>`` URLs with.
"""

from __future__ import annotations

__all__ = ["TARGETS"]

#: sim:<target> -> module (relative to this package) holding open_url, validate and GRAMMAR
TARGETS: dict[str, str] = {
    "gpio": ".gpio",
    "arduino": ".arduino",
    "avr": ".avr",
}
