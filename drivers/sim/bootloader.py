"""The STK500v1 bootloader of the simulated board: a byte-level model of Optiboot, no I/O.

:class:`Bootloader` holds the flash and EEPROM of one part and answers complete STK500v1
commands. :func:`command_length` tells the transport how many bytes the command at the head
of its receive buffer needs, so the transport (:mod:`.arduino`) can pace and frame them.

Answers follow Optiboot 8.0 where avrdude ``-c arduino`` looks: ``GET_PARAMETER`` gives
hardware version 3 and software version 8.0 (3 for anything else); ``UNIVERSAL`` answers
signature reads, typical Arduino fuse values and the extended-address command, and 0x00 to the
rest (chip erase does nothing, as on Optiboot, which erases each page as it writes it). A
known command not ending in ``CRC_EOP`` gets ``STK_NOSYNC`` and is dropped; an unknown byte not
followed by ``CRC_EOP`` is dropped silently (line noise), so the host can resynchronise.
Writes into the bootloader section are ignored (as the lock bits would).
"""

from __future__ import annotations

import logging

from .. import stk500_protocol as P
from ..parts import Part

__all__ = ["Bootloader", "command_length"]

log = logging.getLogger(__name__)

_FIXED = {
    P.STK_GET_SYNC: 2,
    P.STK_GET_SIGN_ON: 2,
    P.STK_SET_PARAMETER: 4,
    P.STK_GET_PARAMETER: 3,
    P.STK_SET_DEVICE: 22,
    P.STK_ENTER_PROGMODE: 2,
    P.STK_LEAVE_PROGMODE: 2,
    P.STK_CHIP_ERASE: 2,
    P.STK_CHECK_AUTOINC: 2,
    P.STK_LOAD_ADDRESS: 4,
    P.STK_UNIVERSAL: 6,
    P.STK_PROG_FLASH: 4,
    P.STK_PROG_DATA: 3,
    P.STK_PROG_FUSE: 4,
    P.STK_PROG_LOCK: 3,
    P.STK_PROG_FUSE_EXT: 5,
    P.STK_READ_FLASH: 2,
    P.STK_READ_DATA: 2,
    P.STK_READ_FUSE: 2,
    P.STK_READ_LOCK: 2,
    P.STK_READ_PAGE: 5,
    P.STK_READ_SIGN: 2,
    P.STK_READ_OSCCAL: 2,
    P.STK_READ_FUSE_EXT: 2,
    P.STK_READ_OSCCAL_EXT: 3,
}

# Typical Arduino Uno fuses: low, high, extended, lock.
_FUSES = {"low": 0xFF, "high": 0xDE, "ext": 0xFD, "lock": 0xCF}


def command_length(buf: bytes | bytearray) -> int | None:
    """Bytes (including CRC_EOP) of the command at the start of ``buf``; None if unknown yet."""
    if not buf:
        return None
    cmd = buf[0]
    if cmd in _FIXED:
        return _FIXED[cmd]
    if cmd == P.STK_SET_DEVICE_EXT:
        return None if len(buf) < 2 else buf[1] + 2
    if cmd == P.STK_PROG_PAGE:
        return None if len(buf) < 3 else 5 + ((buf[1] << 8) | buf[2])
    return 2  # unknown command: expect just the EOP after it


class Bootloader:
    """Flash, EEPROM and command state of one simulated Optiboot."""

    def __init__(self, part: Part, *, corrupt_at: int | None = None) -> None:
        self.part = part
        self.flash = bytearray(b"\xff" * part.flash_size)
        self.eeprom = bytearray(b"\xff" * part.eeprom_size)
        self.corrupt_at = corrupt_at
        self.word_address = 0
        self.ext_address = 0
        self.progmode = False
        self.pages_written = 0

    def reset(self) -> None:
        """What a hardware reset does: command state cleared, memories kept."""
        self.word_address = 0
        self.ext_address = 0
        self.progmode = False

    @property
    def flash_address(self) -> int:
        return (self.ext_address << 17) | (self.word_address << 1)

    def execute(self, frame: bytes) -> tuple[int, bytes]:
        """Answer the command at the start of ``frame``: (bytes consumed, reply)."""
        if frame[-1] != P.CRC_EOP:
            if frame[0] not in _FIXED and frame[0] not in (P.STK_SET_DEVICE_EXT, P.STK_PROG_PAGE):
                return 1, b""  # line noise: drop the byte
            log.debug("sim bootloader: no CRC_EOP after command 0x%02X; NOSYNC", frame[0])
            return len(frame), bytes((P.STK_NOSYNC,))
        body = self._answer(frame[0], frame[1:-1])
        if body is None:
            return len(frame), bytes((P.STK_INSYNC, P.STK_UNKNOWN))
        return len(frame), bytes((P.STK_INSYNC,)) + body + bytes((P.STK_OK,))

    def _answer(self, cmd: int, args: bytes) -> bytes | None:
        if cmd not in _FIXED and cmd not in (P.STK_SET_DEVICE_EXT, P.STK_PROG_PAGE):
            return None
        if cmd == P.STK_GET_PARAMETER:
            return bytes(({0x80: 3, P.PARM_SW_MAJOR: 8, P.PARM_SW_MINOR: 0}.get(args[0], 3),))
        if cmd == P.STK_GET_SIGN_ON:
            return b"AVR STK"
        if cmd == P.STK_ENTER_PROGMODE:
            self.progmode = True
            self.pages_written = 0
        elif cmd == P.STK_LEAVE_PROGMODE:
            self.progmode = False
        elif cmd == P.STK_LOAD_ADDRESS:
            self.word_address = args[0] | (args[1] << 8)
        elif cmd == P.STK_UNIVERSAL:
            return bytes((self._universal(args),))
        elif cmd == P.STK_PROG_PAGE:
            self._prog_page(args[2], args[3:])
        elif cmd == P.STK_READ_PAGE:
            return self._read_page(args[2], (args[0] << 8) | args[1])
        elif cmd == P.STK_READ_SIGN:
            return self.part.signature
        elif cmd == P.STK_READ_FLASH:
            addr = self.flash_address
            self.word_address = (self.word_address + 1) & 0xFFFF
            return bytes(self.flash[addr : addr + 2])
        elif cmd == P.STK_READ_DATA:
            addr = self.word_address % max(1, len(self.eeprom))
            return bytes((self.eeprom[addr],))
        elif cmd == P.STK_READ_FUSE:
            return bytes((_FUSES["low"], _FUSES["high"]))
        elif cmd == P.STK_READ_FUSE_EXT:
            return bytes((_FUSES["low"], _FUSES["high"], _FUSES["ext"]))
        elif cmd == P.STK_READ_LOCK:
            return bytes((_FUSES["lock"],))
        elif cmd in (P.STK_READ_OSCCAL, P.STK_READ_OSCCAL_EXT):
            return b"\x80"
        return b""

    def _universal(self, args: bytes) -> int:
        a, b, c = args[0], args[1], args[2]
        if a == 0x4D:  # load extended address
            self.ext_address = c
            return 0
        if a == 0x30:  # read signature byte c
            return self.part.signature[c % 3]
        return {
            (0x50, 0x00): _FUSES["low"],
            (0x58, 0x08): _FUSES["high"],
            (0x50, 0x08): _FUSES["ext"],
            (0x58, 0x00): _FUSES["lock"],
        }.get((a, b), 0)

    def _prog_page(self, memtype: int, data: bytes) -> None:
        if memtype == P.MEM_EEPROM:
            addr = self.word_address
            end = min(addr + len(data), len(self.eeprom))
            self.eeprom[addr:end] = data[: max(0, end - addr)]
            return
        addr = self.flash_address
        page = self.part.page_size
        limit = self.part.app_size
        # Optiboot erases the page(s) it writes first
        first = addr - addr % page
        last = min(-(-(addr + len(data)) // page) * page, limit)
        if first < last:
            self.flash[first:last] = b"\xff" * (last - first)
        end = min(addr + len(data), limit)
        if end > addr:
            self.flash[addr:end] = data[: end - addr]
        if self.corrupt_at is not None and addr <= self.corrupt_at < end:
            self.flash[self.corrupt_at] ^= 0xFF
        if addr + len(data) > limit:
            log.debug("sim bootloader: ignored a write into the boot section at 0x%X", limit)
        self.pages_written += 1

    def _read_page(self, memtype: int, length: int) -> bytes:
        if memtype == P.MEM_EEPROM:
            addr = self.word_address
            data = self.eeprom[addr : addr + length]
        else:
            addr = self.flash_address
            data = self.flash[addr : addr + length]
        return bytes(data) + b"\xff" * (length - len(data))
