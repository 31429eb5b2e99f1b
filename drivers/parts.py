"""AVR parts known to the STK500v1 programmer and the simulated board.

Each entry gives what a bootloader-based programmer needs: the signature to check, the flash
size, the page size, the size of the bootloader section at the top of flash (which a
bootloader cannot overwrite, so an image must fit below it) and the EEPROM size. The sizes
assume Optiboot (512 bytes) on the 328P and 168; the ATmega2560 entry assumes an 8 KiB boot
section (note that stock Arduino Mega boards ship an STK500v2 bootloader, which this driver
does not speak).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PARTS", "Part", "get_part"]


@dataclass(frozen=True)
class Part:
    """An AVR microcontroller as seen through its bootloader."""

    name: str
    signature: bytes
    flash_size: int
    page_size: int
    bootloader_size: int
    eeprom_size: int
    #: avrdude's -p name, for messages and the external-tool driver.
    avrdude_name: str
    #: size of the No-Read-While-Write section at the top of flash (the bootloader runs there;
    #: a page below it can be erased while the bootloader goes on receiving)
    nrww_size: int = 4096

    @property
    def app_size(self) -> int:
        """Bytes of flash a bootloader can program (everything below the boot section)."""
        return self.flash_size - self.bootloader_size

    @property
    def nrww_start(self) -> int:
        """First address of the No-Read-While-Write section."""
        return self.flash_size - self.nrww_size

    @property
    def pages(self) -> int:
        return self.app_size // self.page_size

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "signature": self.signature.hex(),
            "flash_size": self.flash_size,
            "page_size": self.page_size,
            "bootloader_size": self.bootloader_size,
            "app_size": self.app_size,
            "eeprom_size": self.eeprom_size,
        }


PARTS: dict[str, Part] = {
    part.name: part
    for part in (
        Part("atmega328p", bytes.fromhex("1e950f"), 32768, 128, 512, 1024, "m328p"),
        Part("atmega328", bytes.fromhex("1e9514"), 32768, 128, 512, 1024, "m328"),
        Part("atmega168", bytes.fromhex("1e9406"), 16384, 128, 512, 512, "m168", 2048),
        Part("atmega168p", bytes.fromhex("1e940b"), 16384, 128, 512, 512, "m168p", 2048),
        Part("atmega2560", bytes.fromhex("1e9801"), 262144, 256, 8192, 4096, "m2560", 8192),
    )
}

_ALIASES = {part.avrdude_name: part.name for part in PARTS.values()}


def get_part(name: str) -> Part:
    """The part called ``name`` (``atmega328p`` or avrdude's ``m328p``); KeyError if unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return PARTS[key]
    except KeyError:
        known = ", ".join(sorted(PARTS))
        raise KeyError(f"unknown AVR part {name!r}; known parts: {known}") from None
