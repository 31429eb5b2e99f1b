"""A process holding the board dies mid-programming (kill -9); the next holder recovers it.

Also a board unplugged mid-programming (simulated: ``fault=disconnect@50``; a rig would need a
switchable USB hub, so the rig map has no ``board_unplug`` and that test skips there).

For the killed holder the board must outlive the process that programs it: on the rig it is
the real board; with ``sim:arduino`` or ``sim:avr`` (the AVR twin running Optiboot) the test
starts one simulated board itself and both processes reach it as ``stk500:<its tty>``, exactly
as they would reach a USB port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from labruntime.drivers import DeviceBusyError, DeviceIOError, open_device, parse_device_url

CHILD = textwrap.dedent(
    """
    import sys

    from labruntime.drivers import open_device
    from labruntime.drivers.image import FirmwareImage

    url, image_path = sys.argv[1], sys.argv[2]
    board = open_device(url, name="doomed holder")
    print("opened", flush=True)
    image = FirmwareImage(open(image_path, "rb").read(), 0, image_path)

    def progress(event):
        print(event.stage, event.done, event.total, flush=True)

    board.program(image, progress=progress)
    print("finished", flush=True)
    """
)


@pytest.fixture
def shared_board_url(hil_device_map) -> Iterator[str]:
    """A URL for the board that several processes can open in turn."""
    url = hil_device_map.get("board")
    if url is None:
        pytest.skip(f"no HIL device 'board' in the device map ({hil_device_map.source})")
    parsed = parse_device_url(url)
    if (parsed.scheme, parsed.target) == ("sim", "avr"):
        yield from _shared_twin(parsed.options)
        return
    if (parsed.scheme, parsed.target) != ("sim", "arduino"):
        yield url
        return
    from labruntime.drivers.sim.arduino import SimulatedArduino

    baud = int(parsed.options.get("baud", "115200"))
    part = parsed.options.get("part", "atmega328p")
    with SimulatedArduino(baudrate=baud, part=part) as board:
        yield f"stk500:{board.start()}?baudrate={baud}&part={part}&reset=none"


def _shared_twin(options: dict[str, str]) -> Iterator[str]:
    """An AVR twin started here, reached by both processes as ``stk500:<its pty>`` (opening
    the port resets the chip, as an Uno's DTR does: ``reset=none``)."""
    from labruntime.drivers.sim.avr import twin_available
    from labruntime.drivers.sim.avr_twin import AvrTwin

    ok, why = twin_available()
    if not ok:
        pytest.skip(f"the AVR twin cannot run here: {why}")
    baud = int(options.get("baudrate", "115200"))
    mcu = options.get("mcu", "atmega328p")
    with AvrTwin(mcu, baudrate=baud) as twin:
        yield f"stk500:{twin.tty_path}?baudrate={baud}&part={mcu}&reset=none"


def _kill_group(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_killed_holder_leaves_a_board_the_next_holder_recovers(
    shared_board_url, large_image, blink_image, tmp_path: Path
):
    image_path = tmp_path / "large.bin"
    image_path.write_bytes(large_image.data)
    script = tmp_path / "holder.py"
    script.write_text(CHILD)
    errors = tmp_path / "holder.err"
    with (
        errors.open("w") as err,
        subprocess.Popen(
            [sys.executable, str(script), shared_board_url, str(image_path)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline().strip()
            assert first == "opened", errors.read_text()
            # while it programs, the board is its own: a second holder is refused, naming it
            with pytest.raises(DeviceBusyError) as busy:
                open_device(shared_board_url)
            assert str(proc.pid) in str(busy.value)
            for line in proc.stdout:  # the child's output ends if it dies: no endless wait
                stage, done, total = line.split()
                if stage == "write" and int(done) * 4 >= int(total):
                    break
            else:
                pytest.fail("the holder ended before a quarter was written: " + errors.read_text())
            os.killpg(proc.pid, signal.SIGKILL)  # mid-page, maybe: the lease is not released
            proc.wait(timeout=10)
        finally:
            _kill_group(proc)
    # The next holder opens at once: replies to the dead holder's last command may still be on
    # the wire; the driver drains them and syncs twice (as avrdude does).
    with open_device(shared_board_url, name="next holder") as board:
        assert board.lease is not None and board.lease.previous_unclean
        assert board.describe()["previous_unclean"] is True
        assert board.last_safe is not None and board.last_safe.ok  # driven safe at open
        result = board.program(blink_image)
        assert result.verified
    with open_device(shared_board_url) as again:  # released cleanly this time
        assert not again.lease.previous_unclean


def test_a_board_unplugged_mid_program_fails_with_an_io_error_then_works(
    hil_device, large_image, blink_image
):
    board = hil_device("board_unplug")
    with pytest.raises(DeviceIOError) as info:
        board.program(large_image)
    message = str(info.value)
    assert "check the USB cable" in message or "unplugged" in message, message
    assert board.safe().ok
    assert board.program(blink_image).verified  # the port is reopened by the next operation
