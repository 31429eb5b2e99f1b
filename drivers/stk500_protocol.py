"""STK500v1 protocol constants (Atmel AVR061), as spoken by Optiboot and avrdude -c arduino.

Every command ends with ``CRC_EOP`` (0x20); every reply starts with ``STK_INSYNC`` (0x14) and
ends with ``STK_OK`` (0x10). Flash addresses in ``STK_LOAD_ADDRESS`` are word addresses (byte
address / 2), little-endian; page lengths in ``STK_PROG_PAGE``/``STK_READ_PAGE`` are big-endian.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CRC_EOP",
    "STK_FAILED",
    "STK_INSYNC",
    "STK_NODEVICE",
    "STK_NOSYNC",
    "STK_OK",
    "STK_UNKNOWN",
    "ProtocolError",
    "ProtocolTimeout",
    "Stk500Link",
    "load_address",
    "prog_page",
    "read_page",
]

# Replies
STK_OK = 0x10
STK_FAILED = 0x11
STK_UNKNOWN = 0x12
STK_NODEVICE = 0x13
STK_INSYNC = 0x14
STK_NOSYNC = 0x15
CRC_EOP = 0x20

# Commands
STK_GET_SYNC = 0x30
STK_GET_SIGN_ON = 0x31
STK_SET_PARAMETER = 0x40
STK_GET_PARAMETER = 0x41
STK_SET_DEVICE = 0x42
STK_SET_DEVICE_EXT = 0x45
STK_ENTER_PROGMODE = 0x50
STK_LEAVE_PROGMODE = 0x51
STK_CHIP_ERASE = 0x52
STK_CHECK_AUTOINC = 0x53
STK_LOAD_ADDRESS = 0x55
STK_UNIVERSAL = 0x56
STK_PROG_FLASH = 0x60
STK_PROG_DATA = 0x61
STK_PROG_FUSE = 0x62
STK_PROG_LOCK = 0x63
STK_PROG_PAGE = 0x64
STK_PROG_FUSE_EXT = 0x65
STK_READ_FLASH = 0x70
STK_READ_DATA = 0x71
STK_READ_FUSE = 0x72
STK_READ_LOCK = 0x73
STK_READ_PAGE = 0x74
STK_READ_SIGN = 0x75
STK_READ_OSCCAL = 0x76
STK_READ_FUSE_EXT = 0x77
STK_READ_OSCCAL_EXT = 0x78

# Parameters of STK_GET_PARAMETER
PARM_HW_VER = 0x80
PARM_SW_MAJOR = 0x81
PARM_SW_MINOR = 0x82

MEM_FLASH = ord("F")
MEM_EEPROM = ord("E")

#: Bytes on the wire for the framing around a page: LOAD_ADDRESS (4) + its reply (2) and the
#: PROG_PAGE/READ_PAGE header+EOP (5) + reply framing (2).
PAGE_OVERHEAD = 4 + 2 + 5 + 2


def load_address(byte_address: int) -> bytes:
    """``STK_LOAD_ADDRESS`` for a flash byte address (sent as a little-endian word address)."""
    word = (byte_address >> 1) & 0xFFFF
    return bytes((STK_LOAD_ADDRESS, word & 0xFF, word >> 8, CRC_EOP))


def prog_page(data: bytes, memtype: int = MEM_FLASH) -> bytes:
    """``STK_PROG_PAGE`` carrying ``data`` (length big-endian, then memory type 'F' or 'E')."""
    n = len(data)
    return bytes((STK_PROG_PAGE, n >> 8, n & 0xFF, memtype)) + bytes(data) + bytes((CRC_EOP,))


def read_page(length: int, memtype: int = MEM_FLASH) -> bytes:
    """``STK_READ_PAGE`` of ``length`` bytes at the loaded address."""
    return bytes((STK_READ_PAGE, length >> 8, length & 0xFF, memtype, CRC_EOP))


def universal_ext_address(ext: int) -> bytes:
    """``STK_UNIVERSAL`` "load extended address" (flash above 128 KiB, e.g. ATmega2560)."""
    return bytes((STK_UNIVERSAL, 0x4D, 0x00, ext & 0xFF, 0x00, CRC_EOP))


class Stk500Link:
    """One STK500v1 conversation over an open pyserial port. No retries, no policy.

    Each method writes one command (or a pipelined pair) and reads exactly the number of
    bytes the reply must have; the port's read timeout only matters when the board stops
    answering. ``ProtocolError`` reports a reply that is not what STK500v1 says.

    Pipelining: LOAD_ADDRESS goes out together with the PROG_PAGE or READ_PAGE that follows
    it, saving a round trip per page. That is safe on a real Optiboot: while it sends the two
    bytes answering LOAD_ADDRESS, at most two bytes of the next command arrive, which the
    AVR's UART buffers. Nothing is sent after a PROG_PAGE before its reply, because the chip
    does not read the UART while it erases and writes the page.
    """

    def __init__(self, port: Any) -> None:
        self.port = port
        self._ext: int | None = None

    def exchange(self, command: bytes, reply_len: int, what: str) -> bytes:
        """Send ``command``, read ``reply_len`` bytes; ``ProtocolTimeout`` if fewer come."""
        self.port.write(command)
        reply = self.port.read(reply_len)
        if len(reply) < reply_len:
            raise ProtocolTimeout(what, reply)
        return reply

    def command(self, command: bytes, body_len: int, what: str) -> bytes:
        """A command answered by INSYNC, ``body_len`` bytes, OK; returns the body."""
        reply = self.exchange(command, body_len + 2, what)
        _check_framing(reply, 0, body_len, what)
        return reply[1 : 1 + body_len]

    def sync_once(self) -> bytes:
        """One GET_SYNC; the (up to two) bytes answered within the port's read timeout.

        Anything already received is dropped first, so the answer is to this GET_SYNC or late.
        """
        self.port.reset_input_buffer()
        self.port.write(bytes((STK_GET_SYNC, CRC_EOP)))
        return bytes(self.port.read(2))

    def read_signature(self) -> bytes:
        return self.command(bytes((STK_READ_SIGN, CRC_EOP)), 3, "reading the signature")

    def get_parameter(self, parm: int) -> int:
        return self.command(bytes((STK_GET_PARAMETER, parm, CRC_EOP)), 1, "get parameter")[0]

    def enter_progmode(self) -> None:
        self._ext = None
        self.command(bytes((STK_ENTER_PROGMODE, CRC_EOP)), 0, "entering programming mode")

    def leave_progmode(self) -> None:
        self.command(bytes((STK_LEAVE_PROGMODE, CRC_EOP)), 0, "leaving programming mode")

    def _ext_prefix(self, address: int) -> tuple[bytes, int]:
        ext = address >> 17
        if ext == self._ext or (self._ext is None and ext == 0):
            return b"", 0
        self._ext = ext
        return universal_ext_address(ext), 3

    def write_page(self, address: int, data: bytes) -> None:
        """LOAD_ADDRESS + PROG_PAGE sent back to back, then both replies read."""
        prefix, extra = self._ext_prefix(address)
        what = f"writing the page at 0x{address:X}"
        reply = self.exchange(prefix + load_address(address) + prog_page(data), extra + 4, what)
        if extra:
            _check_framing(reply, 0, 1, what)
        _check_framing(reply, extra, 0, what)
        _check_framing(reply, extra + 2, 0, what)

    def read_page(self, address: int, length: int) -> bytes:
        """LOAD_ADDRESS + READ_PAGE sent back to back; returns the page read."""
        prefix, extra = self._ext_prefix(address)
        what = f"reading back the page at 0x{address:X}"
        reply = self.exchange(
            prefix + load_address(address) + read_page(length), extra + 4 + length, what
        )
        if extra:
            _check_framing(reply, 0, 1, what)
        _check_framing(reply, extra, 0, what)
        _check_framing(reply, extra + 2, length, what)
        return reply[extra + 3 : extra + 3 + length]


class ProtocolError(Exception):
    """A reply broke STK500v1 framing (``reply`` holds the bytes received)."""

    def __init__(self, what: str, reply: bytes, detail: str) -> None:
        super().__init__(f"{detail} while {what} (got {reply.hex(' ') or 'nothing'})")
        self.what = what
        self.reply = reply


class ProtocolTimeout(ProtocolError):
    """Fewer bytes than the reply needs arrived within the port's read timeout."""

    def __init__(self, what: str, reply: bytes) -> None:
        super().__init__(what, reply, "the board stopped answering")


def _check_framing(reply: bytes, start: int, body_len: int, what: str) -> None:
    if reply[start] != STK_INSYNC:
        detail = "the board replied NOSYNC" if reply[start] == STK_NOSYNC else "lost sync"
        raise ProtocolError(what, reply, detail)
    end = reply[start + 1 + body_len]
    if end != STK_OK:
        raise ProtocolError(what, reply, f"the board answered 0x{end:02X} instead of OK")
