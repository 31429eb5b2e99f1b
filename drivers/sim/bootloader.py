"""Optiboot 4.4, the Arduino Uno's bootloader, as a program the simulated chip runs byte by byte.

:func:`optiboot` follows the main loop of ``optiboot.c`` (the version an Uno ships with)
statement by statement. It is a generator: each time the chip would do something that takes
time or touches the UART it yields a request, and the board (:mod:`.arduino`) gives that
request its time on the simulated clock::

    GETCH                wait for the next received byte (the board sends it back);
                         a byte without a framing error resets the watchdog
    Putch(data)          write bytes to the UART (the CPU waits while its 2-byte buffer is full)
    Busy(seconds)        the CPU does not read the UART (LED flashes): bytes pile up in the FIFO
    Watchdog(seconds)    watchdogConfig(): a new timeout, counted from now
    WATCHDOG_RESET       wdr: the watchdog counts its timeout again from now
    SpmStart()           start a page erase or write (4.5 ms on the chip); the CPU goes on
    SPM_WAIT             boot_spm_busy_wait(): the CPU waits for the erase or write
    HANG                 ``while (1);``: nothing more until the watchdog resets the chip

What the real bootloader does, and the simulation therefore does too:

* it answers ``GET_PARAMETER`` 0x81/0x82 with its version (4.4) and 0x03 for anything else;
  ``UNIVERSAL`` always with 0x00 (so avrdude reads fuses and signature bytes as 0x00 there);
  ``READ_SIGN`` with the part's signature; every other command (``GET_SYNC``,
  ``ENTER_PROGMODE``, ``CHIP_ERASE``, an unknown byte...) with just INSYNC OK once its
  ``CRC_EOP`` has come. ``SET_DEVICE``/``SET_DEVICE_EXT`` swallow 20/5 argument bytes.
* a command whose ``CRC_EOP`` is not where it must be gets no reply at all (no NOSYNC): the
  bootloader sets its watchdog to 16 ms and spins, and the watchdog reset starts the
  application. ``LEAVE_PROGMODE`` does the same after answering INSYNC OK: it is how the
  bootloader hands over to the application.
* ``PROG_PAGE`` reads only the low byte of the length (0 means 256) and ignores the memory
  type (EEPROM data would land in flash); a page below the NRWW section is erased while its
  bytes arrive, one in it afterwards; INSYNC goes out before the write and OK after it, and
  the CPU reads nothing meanwhile. A short page is completed from what the page buffer held.
* ``LOAD_ADDRESS`` takes a word address; on parts with more than 128 KiB (ATmega2560) the
  upper bits come from ``UNIVERSAL 0x4D`` (load extended address), as Optiboot 8 does there.

:class:`Memory` holds the flash and applies page erases and writes (the boot section is
protected by the lock bits, so writes there are ignored).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from .. import stk500_protocol as P
from ..parts import Part

__all__ = [
    "GETCH",
    "HANG",
    "LED_TOGGLE",
    "PAGE_OPERATION",
    "SPM_WAIT",
    "WATCHDOG_RESET",
    "Busy",
    "Memory",
    "Putch",
    "Request",
    "SpmStart",
    "Watchdog",
    "optiboot",
]

#: optiboot's version, as GET_PARAMETER 0x81/0x82 report it
VERSION = (4, 4)
#: flash_led(): TCNT1 = -(F_CPU / (1024 * 16)) at 16 MHz, one toggle every 62.5 ms
LED_TOGGLE = 0.0625
#: the watchdog timeouts optiboot uses: while waiting for the host, and to start the sketch
WATCHDOG_1S = 1.0
WATCHDOG_16MS = 0.016
#: tWD_FLASH of the ATmega328P datasheet: one page erase, or one page write (max 4.5 ms)
PAGE_OPERATION = 0.0045


class _Signal:
    """A request that carries nothing: GETCH, SPM_WAIT, HANG, WATCHDOG_RESET (one each)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Putch:
    data: bytes


@dataclass(frozen=True)
class Busy:
    seconds: float


@dataclass(frozen=True)
class Watchdog:
    seconds: float


@dataclass(frozen=True)
class SpmStart:
    """A page erase or page write starts (``erase`` tells which, for the record)."""

    erase: bool


GETCH = _Signal("GETCH")
SPM_WAIT = _Signal("SPM_WAIT")
HANG = _Signal("HANG")
WATCHDOG_RESET = _Signal("WATCHDOG_RESET")

Request = _Signal | Putch | Busy | Watchdog | SpmStart
#: what optiboot() yields, is sent (a received byte after GETCH, else 0) and returns
Program = Generator[Request, int, None]


class Memory:
    """The flash of one part, with the page buffer and the lock bits of the boot section."""

    def __init__(self, part: Part, *, corrupt_at: int | None = None) -> None:
        self.part = part
        self.flash = bytearray(b"\xff" * part.flash_size)
        self.corrupt_at = corrupt_at
        #: SPM's temporary page buffer: what a short PROG_PAGE leaves unwritten comes from here
        self.buffer = bytearray(b"\xff" * part.page_size)
        #: RAMPZ: the upper address bits on parts with more than 64 KiB words
        self.rampz = 0
        self.pages_written = 0

    @property
    def has_program(self) -> bool:
        """True if the reset vector is programmed (erased flash runs nothing)."""
        return self.flash[0:2] != b"\xff\xff"

    def _page(self, address: int) -> int:
        return address - address % self.part.page_size

    def erase_page(self, address: int) -> None:
        page = self._page(address)
        if page < self.part.app_size:
            self.flash[page : page + self.part.page_size] = b"\xff" * self.part.page_size

    def write_page(self, address: int, data: bytes) -> None:
        """Fill the page buffer from ``address`` on (wrapping in the page) and write the page."""
        size = self.part.page_size
        for i, value in enumerate(data[:size]):
            self.buffer[(address + i) % size] = value
        page = self._page(address)
        if page >= self.part.app_size:
            return  # the lock bits protect the boot section from SPM
        # a page write can only clear bits: it ANDs the buffer into the (erased) page
        current = self.flash[page : page + size]
        self.flash[page : page + size] = bytes(
            a & b for a, b in zip(current, self.buffer, strict=True)
        )
        if self.corrupt_at is not None and page <= self.corrupt_at < page + size:
            self.flash[self.corrupt_at] ^= 0xFF
        self.pages_written += 1

    def read(self, address: int, length: int) -> bytes:
        end = address + length
        data = bytes(self.flash[address:end])
        return data + b"\xff" * (length - len(data))


def optiboot(memory: Memory, *, flashes: int = 3, noleave: bool = False) -> Program:
    """Optiboot 4.4's main(), from after the start-up delay; ``noleave``: LEAVE is lost."""
    part = memory.part
    yield Watchdog(WATCHDOG_1S)
    for _ in range(2 * flashes):  # flash_led(LED_START_FLASHES * 2)
        yield Busy(LED_TOGGLE)
        yield WATCHDOG_RESET
    address = 0
    while True:
        ch = yield GETCH
        if ch == P.STK_GET_PARAMETER:
            which = yield GETCH
            yield from _verify_space()
            value = {P.PARM_SW_MAJOR: VERSION[0], P.PARM_SW_MINOR: VERSION[1]}.get(which, 0x03)
            yield Putch(bytes((value,)))
        elif ch == P.STK_SET_DEVICE:
            yield from _get_n(20)
        elif ch == P.STK_SET_DEVICE_EXT:
            yield from _get_n(5)
        elif ch == P.STK_LOAD_ADDRESS:
            low = yield GETCH
            high = yield GETCH
            word = low | (high << 8)
            address = (memory.rampz << 16) | (word << 1)
            yield from _verify_space()
        elif ch == P.STK_UNIVERSAL:
            if part.flash_size > 0x20000:
                first = yield GETCH
                if first == 0x4D:  # load extended address: RAMPZ
                    yield GETCH
                    memory.rampz = ((yield GETCH) << 1) & 0xFF
                    yield from _get_n(1)
                else:
                    yield from _get_n(3)
            else:
                yield from _get_n(4)
            yield Putch(b"\x00")
        elif ch == P.STK_PROG_PAGE:
            yield GETCH  # length, high byte: ignored
            length = (yield GETCH) or 256
            yield GETCH  # memory type: ignored
            early = address < part.nrww_start
            if early:  # in the RWW section: erase while the data comes in
                memory.erase_page(address)
                yield SpmStart(erase=True)
            data = bytearray()
            for _ in range(length):
                data.append((yield GETCH))
            if not early:
                memory.erase_page(address)
                yield SpmStart(erase=True)
            yield from _verify_space()
            yield SPM_WAIT
            memory.write_page(address, bytes(data))
            yield SpmStart(erase=False)
            yield SPM_WAIT
        elif ch == P.STK_READ_PAGE:
            yield GETCH
            length = (yield GETCH) or 256
            yield GETCH
            yield from _verify_space()
            yield Putch(memory.read(address, length))
            address += length
        elif ch == P.STK_READ_SIGN:
            yield from _verify_space()
            yield Putch(part.signature)
        elif ch == P.STK_LEAVE_PROGMODE:
            if noleave:  # the fault: the command never arrived
                yield GETCH
                continue
            yield Watchdog(WATCHDOG_16MS)
            yield from _verify_space()
        else:
            yield from _verify_space()
        yield Putch(bytes((P.STK_OK,)))


def _verify_space() -> Program:
    if (yield GETCH) != P.CRC_EOP:
        yield Watchdog(WATCHDOG_16MS)
        while True:
            yield HANG
    yield Putch(bytes((P.STK_INSYNC,)))


def _get_n(count: int) -> Program:
    for _ in range(count):
        yield GETCH
    yield from _verify_space()
