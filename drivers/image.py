"""Firmware images: Intel HEX and raw binary, loaded into one contiguous block of bytes.

``load_image(source)`` takes Intel HEX text (a ``str``, never read as a file name), a
``pathlib.Path``, the bytes of a file, or an existing image:

* Intel HEX (``.hex``, ``.ihex``, ``.ihx``, or content starting with ``:``): records 00 (data),
  01 (end of file), 02 (extended segment address), 03 (start segment address), 04 (extended
  linear address) and 05 (start linear address). Every line's checksum is checked; gaps
  between records are filled with 0xFF (erased flash); overlapping records are refused.
* raw binary (``.bin``/``.img``, or bytes with ``raw=True``): loaded at address 0. Anything
  else that is not HEX (an ELF, a text file) is refused rather than programmed.

Errors are :class:`ImageError` and name the file and the line. ``image.check_fits(part)``
refuses an image that does not fit below the part's bootloader, before a board is touched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ImageError
from .parts import Part

__all__ = ["FirmwareImage", "load_image", "parse_ihex"]

log = logging.getLogger(__name__)

_HEX_SUFFIXES = {".hex", ".ihex", ".ihx"}
_BIN_SUFFIXES = {".bin", ".img"}
_HEX_DIGITS = set("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class FirmwareImage:
    """``data`` to be placed at flash address ``base``; ``source`` names where it came from."""

    data: bytes
    base: int = 0
    source: str = "<bytes>"
    start_address: int | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def end(self) -> int:
        """One past the last address the image occupies."""
        return self.base + len(self.data)

    def check_fits(self, part: Part) -> None:
        """ImageError (naming both sizes) if the image reaches into the bootloader or beyond."""
        if self.end > part.app_size:
            raise ImageError(
                f"{self.source}: image ends at 0x{self.end:X} ({self.end} bytes) but "
                f"{part.name} has only {part.app_size} bytes of flash below its "
                f"{part.bootloader_size}-byte bootloader; build for the right part or make "
                "the program smaller"
            )

    def pages(self, page_size: int) -> list[tuple[int, bytes]]:
        """The image as whole pages ``(address, page_size bytes)``, padded with 0xFF."""
        start = self.base - self.base % page_size
        end = -(-self.end // page_size) * page_size
        padded = b"\xff" * (self.base - start) + self.data + b"\xff" * (end - self.end)
        return [
            (start + off, padded[off : off + page_size]) for off in range(0, len(padded), page_size)
        ]

    def to_ihex(self, record_size: int = 16) -> str:
        """Intel HEX text for the image (04 records where the address passes 64 KiB)."""
        lines: list[str] = []
        upper = -1
        off = 0
        while off < len(self.data):
            addr = self.base + off
            # a record never crosses a 64 KiB boundary
            n = min(record_size, len(self.data) - off, 0x10000 - (addr & 0xFFFF))
            if addr >> 16 != upper:
                upper = addr >> 16
                lines.append(_record(0, 0x04, upper.to_bytes(2, "big")))
            lines.append(_record(addr & 0xFFFF, 0x00, self.data[off : off + n]))
            off += n
        lines.append(_record(0, 0x01, b""))
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"<FirmwareImage {self.source} 0x{self.base:X}+{len(self.data)}>"


def _record(addr: int, rtype: int, data: bytes) -> str:
    body = bytes((len(data), addr >> 8, addr & 0xFF, rtype)) + data
    return ":" + (body + bytes(((-sum(body)) & 0xFF,))).hex().upper()


def _fail(source: str, lineno: int, problem: str) -> ImageError:
    return ImageError(f"{source} line {lineno}: {problem}")


def parse_ihex(text: str, source: str = "<hex>") -> FirmwareImage:
    """Parse Intel HEX text into a contiguous image (gaps filled with 0xFF)."""
    chunks: list[tuple[int, bytes, int]] = []
    offset = 0
    start: int | None = None
    seen_eof = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if seen_eof:
            log.debug("%s line %d: ignoring text after the end-of-file record", source, lineno)
            break
        if not line.startswith(":"):
            raise _fail(source, lineno, f"a record must start with ':' (got {line[:10]!r})")
        digits = line[1:]
        bad = next((c for c in digits if c not in _HEX_DIGITS), None)
        if bad is not None:
            raise _fail(source, lineno, f"bad hex digit {bad!r} in record")
        if len(digits) % 2 or len(digits) < 10:
            raise _fail(source, lineno, f"record has {len(digits)} hex digits; malformed")
        rec = bytes.fromhex(digits)
        length, addr, rtype = rec[0], (rec[1] << 8) | rec[2], rec[3]
        if len(rec) != length + 5:
            raise _fail(
                source,
                lineno,
                f"record says {length} data bytes but carries {len(rec) - 5}",
            )
        if sum(rec) & 0xFF:
            expected = (-sum(rec[:-1])) & 0xFF
            raise _fail(
                source,
                lineno,
                f"bad checksum 0x{rec[-1]:02X} (expected 0x{expected:02X}); the file is corrupt",
            )
        data = rec[4:-1]
        if rtype == 0x00:
            if data:
                chunks.append((offset + addr, data, lineno))
        elif rtype == 0x01:
            seen_eof = True
        elif rtype in (0x02, 0x04):
            if length != 2:
                raise _fail(source, lineno, f"record type {rtype:02X} needs 2 data bytes")
            value = int.from_bytes(data, "big")
            offset = value << 4 if rtype == 0x02 else value << 16
        elif rtype in (0x03, 0x05):
            if length != 4:
                raise _fail(source, lineno, f"record type {rtype:02X} needs 4 data bytes")
            value = int.from_bytes(data, "big")
            start = ((value >> 16) << 4) + (value & 0xFFFF) if rtype == 0x03 else value
        else:
            raise _fail(source, lineno, f"unknown record type 0x{rtype:02X} (expected 00-05)")
    if not seen_eof:
        log.warning("%s: no end-of-file record (:00000001FF); using the records read", source)
    if not chunks:
        raise ImageError(f"{source}: no data records; nothing to program")
    return FirmwareImage(_assemble(chunks, source), min(c[0] for c in chunks), source, start)


def _assemble(chunks: list[tuple[int, bytes, int]], source: str) -> bytes:
    chunks = sorted(chunks, key=lambda c: c[0])
    base = chunks[0][0]
    end = max(a + len(d) for a, d, _ in chunks)
    if end - base > 16 * 1024 * 1024:
        raise ImageError(
            f"{source}: data spans 0x{base:X}..0x{end:X} (over 16 MiB); not a flash image"
        )
    buf = bytearray(b"\xff" * (end - base))
    covered_to = base
    for addr, data, lineno in chunks:
        if addr < covered_to:
            raise _fail(source, lineno, f"data at 0x{addr:X} overlaps an earlier record")
        buf[addr - base : addr - base + len(data)] = data
        covered_to = addr + len(data)
    return bytes(buf)


_ELF_MAGIC = b"\x7fELF"
_EXCERPT = 24


def _excerpt(content: bytes | str) -> str:
    """A short, printable excerpt of rejected input (never the whole of it)."""
    text = content if isinstance(content, str) else content[:_EXCERPT].decode("ascii", "replace")
    text = text.strip()[:_EXCERPT]
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return repr(shown) + ("..." if len(content) > _EXCERPT else "")


def _looks_like_hex(content: bytes) -> bool:
    head = content.lstrip()[:1]
    if head != b":":
        return False
    try:
        content[:4096].decode("ascii")
    except UnicodeDecodeError:
        return False
    return True


def _refuse_not_hex(label: str, content: bytes, what: str) -> ImageError:
    if content.startswith(_ELF_MAGIC):
        return ImageError(
            f"{label}: this is an ELF file; program the .hex built next to it "
            "(avr-objcopy -O ihex -R .eeprom firmware.elf firmware.hex)"
        )
    if not content.strip():
        return ImageError(f"{label}: {what} is empty; nothing to program")
    return ImageError(
        f"{label}: {what} is not Intel HEX (it starts with {_excerpt(content)}); send the "
        "program as Intel HEX text, or pass raw=True if it is a raw binary image"
    )


def load_image(
    source: str | os.PathLike[str] | bytes | bytearray | FirmwareImage,
    *,
    raw: bool = False,
    name: str | None = None,
) -> FirmwareImage:
    """Load a firmware image. What each kind of ``source`` means:

    * :class:`FirmwareImage`: passed through.
    * ``str``: Intel HEX **text** (what a student uploads). A ``str`` is never opened as a file,
      whatever it holds: a lab passes on what a student sent without that text ever naming a
      file on the worker.
    * ``pathlib.Path`` (any ``os.PathLike``): a file. ``.hex``/``.ihex``/``.ihx`` are HEX,
      ``.bin``/``.img`` raw binary, ``.elf`` refused (program the ``.hex`` built beside it);
      other names are read as HEX when the content is HEX, else refused unless ``raw=True``.
    * ``bytes``: the content of a file: HEX when it is HEX text; raw binary only with
      ``raw=True``; anything else (an ELF, a text file) is refused.

    Errors are :class:`ImageError`; they name the source and quote at most a short excerpt.
    """
    if isinstance(source, FirmwareImage):
        return source
    if isinstance(source, str):
        label = name or "<hex text>"
        if raw:
            raise ImageError(
                f"{label}: raw=True needs bytes or a pathlib.Path, not a str (a str is Intel "
                "HEX text)"
            )
        if not source.lstrip().startswith(":"):
            hint = ""
            if "\n" not in source.strip() and len(source) < 4096:
                hint = (
                    "; a str is never read as a file name: to program a file pass "
                    "pathlib.Path(...) instead"
                )
            raise ImageError(
                f"{label}: not Intel HEX text (it starts with {_excerpt(source)}){hint}"
            )
        return parse_ihex(source, label)
    if isinstance(source, bytes | bytearray):
        label = name or "<bytes>"
        content = bytes(source)
        if _looks_like_hex(content) and not raw:
            is_hex = True
        elif raw:
            is_hex = False
        else:
            raise _refuse_not_hex(label, content, "the content")
    elif isinstance(source, os.PathLike):
        path = Path(source)
        label = name or str(path)
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{label}: no such firmware file; check the path") from None
        except IsADirectoryError:
            raise ImageError(f"{label}: is a folder, not a firmware file") from None
        except OSError as exc:
            raise ImageError(f"{label}: cannot read the firmware file: {exc.strerror}") from exc
        suffix = path.suffix.lower()
        if suffix == ".elf" or content.startswith(_ELF_MAGIC):
            raise _refuse_not_hex(label, content, "the file")
        if suffix in _HEX_SUFFIXES:
            is_hex = True
        elif suffix in _BIN_SUFFIXES or raw:
            is_hex = False
        elif _looks_like_hex(content):
            is_hex = True
        else:
            raise _refuse_not_hex(label, content, "the file")
    else:
        raise ImageError(
            f"cannot load a firmware image from a {type(source).__name__}: pass Intel HEX text "
            "(str), the bytes of a file, a pathlib.Path or a FirmwareImage"
        )
    if is_hex:
        try:
            text = content.decode("ascii")
        except UnicodeDecodeError as exc:
            lineno = content[: exc.start].count(b"\n") + 1
            raise _fail(label, lineno, "non-ASCII byte in an Intel HEX file") from None
        return parse_ihex(text, label)
    if not content:
        raise ImageError(f"{label}: the firmware file is empty")
    return FirmwareImage(content, 0, label)
