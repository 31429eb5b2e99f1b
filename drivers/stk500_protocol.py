"""STK500v1 protocol constants (Atmel AVR061), as spoken by Optiboot and avrdude -c arduino.

Every command ends with ``CRC_EOP`` (0x20); every reply starts with ``STK_INSYNC`` (0x14) and
ends with ``STK_OK`` (0x10). Flash addresses in ``STK_LOAD_ADDRESS`` are word addresses (byte
address / 2), little-endian; page lengths in ``STK_PROG_PAGE``/``STK_READ_PAGE`` are big-endian.
"""

from __future__ import annotations

__all__ = [
    "CRC_EOP",
    "STK_FAILED",
    "STK_INSYNC",
    "STK_NODEVICE",
    "STK_NOSYNC",
    "STK_OK",
    "STK_UNKNOWN",
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
