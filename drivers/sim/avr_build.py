"""Building what the AVR twin runs: the simavr harness and the Optiboot bootloader.

Both are compiled at first use into a cache folder and reused while their sources and build
commands stay the same (the file name carries a hash of both):

* the harness, ``avr_twin.c`` next to this module, with ``gcc`` against ``libsimavr`` (Debian
  and Raspberry Pi OS: ``apt-get install simavr libsimavr-dev gcc``);
* the bootloader, Optiboot 4.4 as the Arduino Uno ships it, built with ``avr-gcc`` from the
  source the ``arduino-core-avr`` package installs (``apt-get install gcc-avr avr-libc
  arduino-core-avr``). The package's own ``optiboot_atmega328.hex`` cannot be used: built with
  avr-gcc 5.4 it is 532 bytes, runs past the end of the flash and overlaps its version word;
  the flags below bring the same source to 496 bytes, inside the 512-byte boot section.

The cache folder is, in order: the ``cache_dir`` argument (a lab passes its instance folder),
``$LABRUNTIME_CACHE_DIR``, ``$XDG_CACHE_HOME/labruntime``, ``~/.cache/labruntime``.
:func:`twin_available` says whether all of it can be built here, and why not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import DriverError
from ..image import load_image

__all__ = [
    "BOOTLOADERS",
    "Bootloader",
    "TwinUnavailableError",
    "build_bootloader",
    "build_harness",
    "cache_root",
    "twin_available",
]

log = logging.getLogger(__name__)

HARNESS_SOURCE = Path(__file__).with_name("avr_twin.c")
OPTIBOOT_DIR = Path("/usr/share/arduino/hardware/arduino/avr/bootloaders/optiboot")

INSTALL_SIMAVR = "apt-get install simavr libsimavr-dev gcc"
INSTALL_AVR_GCC = "apt-get install gcc-avr avr-libc arduino-core-avr"

_HARNESS_FLAGS = ["-O2", "-Wall", "-I/usr/include/simavr"]
_HARNESS_LIBS = ["-lsimavr", "-lutil"]
#: avr-gcc flags that fit Optiboot 4.4 into 512 bytes (see the module docstring)
_OPTIBOOT_FLAGS = [
    "-Os",
    "-fno-inline-small-functions",
    "-fno-split-wide-types",
    "-mshort-calls",
    "-mrelax",
    "-fno-caller-saves",
    "-fno-tree-scev-cprop",
    "-fno-tree-loop-optimize",
    "-fno-ivopts",
    "-fno-move-loop-invariants",
    "-fno-jump-tables",
    "-fno-gcse",
    "-fno-reorder-blocks",
    "-fno-inline",
    "-DLED_START_FLASHES=3",
    "-DBAUD_RATE=115200",
]


class TwinUnavailableError(DriverError, RuntimeError):
    """The AVR twin cannot run here (simavr, gcc or avr-gcc missing); the message says why."""


@dataclass(frozen=True)
class Bootloader:
    """A bootloader as the twin loads it: raw bytes at ``base`` (the boot section's start)."""

    path: Path
    base: int
    size: int
    source: str


#: MCU -> (avr-gcc -mmcu, boot section start, boot section size, F_CPU it is built for)
BOOTLOADERS: dict[str, tuple[str, int, int, int]] = {
    "atmega328p": ("atmega328p", 0x7E00, 512, 16_000_000),
    "atmega168": ("atmega168", 0x3E00, 512, 16_000_000),
}

_lock = threading.Lock()


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder the twin's builds are cached in (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir) / "avr-twin"
    env = os.environ.get("LABRUNTIME_CACHE_DIR")
    if env:
        return Path(env) / "avr-twin"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "labruntime" / "avr-twin"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(cmd: list[str], what: str, install: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise TwinUnavailableError(
            f"cannot build {what}: {cmd[0]} is not installed. Install it with: {install}"
        ) from None
    except subprocess.TimeoutExpired:
        raise TwinUnavailableError(f"building {what} took more than 120 s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise TwinUnavailableError(
            f"building {what} failed ({' '.join(cmd[:2])} ... exit {proc.returncode}). Is "
            f"everything installed? ({install}). Compiler said:\n{tail}"
        )


def _make_root(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TwinUnavailableError(
            f"cannot create the AVR twin's build cache {root}: {exc}. Point LABRUNTIME_CACHE_DIR "
            "at a writable folder (e.g. the lab's instance folder)"
        ) from exc
    return root


def _publish(build: Path, final: Path) -> Path:
    os.replace(build, final)  # atomic: a concurrent build of the same file wins or loses whole
    return final


def build_harness(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The compiled harness (built now if needed); TwinUnavailableError naming what to install."""
    if shutil.which("gcc") is None:
        raise TwinUnavailableError(
            f"the AVR twin needs gcc, which is missing. Install: {INSTALL_SIMAVR}"
        )
    if not Path("/usr/include/simavr/sim_avr.h").exists():
        raise TwinUnavailableError(
            "the AVR twin needs simavr's library and headers (libsimavr-dev), which are "
            f"missing. Install: {INSTALL_SIMAVR}"
        )
    source = HARNESS_SOURCE.read_bytes()
    cmd_key = " ".join(_HARNESS_FLAGS + _HARNESS_LIBS).encode()
    root = cache_root(cache_dir)
    final = root / f"avr_twin-{_digest(source, cmd_key)}"
    with _lock:
        if final.exists():
            return final
        _make_root(root)
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            out = Path(tmp) / "avr_twin"
            _run(
                ["gcc", *_HARNESS_FLAGS, "-o", str(out), str(HARNESS_SOURCE), *_HARNESS_LIBS],
                "the AVR twin (simavr harness)",
                INSTALL_SIMAVR,
            )
            log.info("built the AVR twin harness: %s", final)
            return _publish(out, final)


def build_bootloader(
    mcu: str = "atmega328p",
    f_cpu: int = 16_000_000,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Bootloader:
    """Optiboot for ``mcu`` as a raw binary (built now if needed)."""
    if mcu not in BOOTLOADERS:
        raise TwinUnavailableError(
            f"no Optiboot build for {mcu}; the twin knows {', '.join(sorted(BOOTLOADERS))}"
        )
    mmcu, base, size, _ = BOOTLOADERS[mcu]
    source_file = OPTIBOOT_DIR / "optiboot.c"
    if not source_file.exists():
        raise TwinUnavailableError(
            f"the AVR twin boots Optiboot, built from {source_file}, which is missing. "
            f"Install: {INSTALL_AVR_GCC}"
        )
    if shutil.which("avr-gcc") is None:
        raise TwinUnavailableError(
            f"the AVR twin builds its Optiboot bootloader with avr-gcc, which is missing. "
            f"Install: {INSTALL_AVR_GCC}"
        )
    flags = [*_OPTIBOOT_FLAGS, f"-mmcu={mmcu}", f"-DF_CPU={f_cpu}L"]
    headers = b"".join(
        (OPTIBOOT_DIR / h).read_bytes() for h in ("boot.h", "pin_defs.h", "stk500.h")
    )
    key = _digest(source_file.read_bytes(), headers, " ".join(flags).encode(), hex(base).encode())
    root = cache_root(cache_dir)
    final = root / f"optiboot-{mcu}-{f_cpu}-{key}.bin"
    with _lock:
        if not final.exists():
            _make_root(root)
            with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
                obj, elf, hexfile = (Path(tmp) / n for n in ("o.o", "o.elf", "o.hex"))
                what = f"the Optiboot bootloader for {mcu}"
                _run(
                    ["avr-gcc", *flags, "-c", "-o", str(obj), str(source_file)],
                    what,
                    INSTALL_AVR_GCC,
                )
                _run(
                    [
                        "avr-gcc",
                        f"-mmcu={mmcu}",
                        f"-Wl,--section-start=.text=0x{base:x}",
                        "-Wl,--relax",
                        "-Wl,--gc-sections",
                        "-nostartfiles",
                        "-nostdlib",
                        "-o",
                        str(elf),
                        str(obj),
                    ],
                    what,
                    INSTALL_AVR_GCC,
                )
                _run(["avr-objcopy", "-O", "ihex", str(elf), str(hexfile)], what, INSTALL_AVR_GCC)
                img = load_image(hexfile)
                if img.base != base or img.size > size:
                    raise TwinUnavailableError(
                        f"{what} came out at 0x{img.base:X}, {img.size} bytes: it does not fit "
                        f"the {size}-byte boot section at 0x{base:X} (another avr-gcc version?)"
                    )
                out = Path(tmp) / "boot.bin"
                out.write_bytes(img.data)
                log.info("built %s (%d bytes): %s", what, img.size, final)
                _publish(out, final)
    return Bootloader(final, base, final.stat().st_size, f"optiboot 4.4 ({source_file})")


def bootloader_from_file(
    path: str | os.PathLike[str], mcu: str, cache_dir: str | os.PathLike[str] | None = None
) -> Bootloader:
    """A bootloader the operator gives as an Intel HEX file (e.g. upstream Optiboot 8.3)."""
    img = load_image(Path(path))
    if mcu in BOOTLOADERS:
        _, base, size, _ = BOOTLOADERS[mcu]
        if img.base < base - 7 * 1024 or img.end > base + size:
            raise TwinUnavailableError(
                f"the bootloader {path} spans 0x{img.base:X}-0x{img.end:X}: not a boot section "
                f"of {mcu} (it must end by 0x{base + size:X})"
            )
    root = _make_root(cache_root(cache_dir))
    final = root / f"bootloader-{_digest(img.data, hex(img.base).encode())}.bin"
    if not final.exists():
        tmp = final.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(img.data)
        _publish(tmp, final)
    return Bootloader(final, img.base, img.size, str(path))


_available: dict[tuple[str, str], tuple[bool, str]] = {}


def twin_available(
    mcu: str = "atmega328p", cache_dir: str | os.PathLike[str] | None = None
) -> tuple[bool, str]:
    """``(True, what runs)`` if a ``sim:avr`` twin can run here, else ``(False, why + fix)``.

    Builds (or finds in the cache) the harness and the bootloader; the answer is remembered
    for the life of the process. The demo uses it to choose ``sim:avr`` or ``sim:arduino``.
    """
    key = (mcu, str(cache_root(cache_dir)))
    if key not in _available:
        try:
            harness = build_harness(cache_dir)
            boot = build_bootloader(mcu, cache_dir=cache_dir)
        except (TwinUnavailableError, OSError) as exc:
            _available[key] = (False, str(exc))
        else:
            _available[key] = (
                True,
                f"simavr twin of an {mcu} ({harness.name}, {boot.source}, {boot.size} bytes)",
            )
    return _available[key]
