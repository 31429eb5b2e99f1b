"""A stand-in for a programming tool (avrdude, esptool...), run as a real subprocess by tests.

Usage: fake_tool.py MODE IMAGE [EXTRA...]. Modes:
  avrdude-pipe   avrdude's progress when stderr is not a terminal ("Writing | ####..."), exit 0
  avrdude-tty    avrdude's "\\rWriting | ###   | 40% 0.10s" bar, exit 0
  esptool        "Writing at 0x00001000... (25 %)" lines, exit 0
  fail           a few lines then an avrdude-like error, exit 1
  hang           spawns a grandchild (sleep), writes "PID GRANDCHILD_PID" to $FAKE_TOOL_PIDS,
                 prints 10%, then sleeps; with EXTRA "ignore-term" it ignores SIGTERM
Every mode first checks that IMAGE exists and prints its size.
"""

import os
import signal
import subprocess
import sys
import time


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def main() -> int:
    mode, image = sys.argv[1], sys.argv[2]
    extra = sys.argv[3:]
    out(f"fake: image {image} has {os.path.getsize(image)} bytes; extra={extra}\n")
    if mode == "avrdude-pipe":
        for word in ("Writing", "Reading"):
            out(f"\n{word} | ")
            for _ in range(50):
                out("#")
                time.sleep(0.002)
            out(" | 100% 0.10s\n\n")
        out("avrdude: 30 bytes of flash verified\n")
        return 0
    if mode == "avrdude-tty":
        for pct in range(0, 101, 20):
            bar = ("#" * (pct // 2)).ljust(50)
            out(f"\rWriting | {bar} | {pct}% 0.{pct:02d}s")
            time.sleep(0.01)
        out("\n\navrdude done.  Thank you.\n")
        return 0
    if mode == "esptool":
        for pct in (0, 25, 50, 75, 100):
            out(f"Writing at 0x{0x1000 + pct * 64:08x}... ({pct} %)\n")
        out("Hash of data verified.\n")
        return 0
    if mode == "fail":
        out("avrdude: stk500_recv(): programmer is not responding\n")
        out("avrdude: stk500_getsync() attempt 10 of 10: not in sync: resp=0x00\n")
        return 1
    if mode == "hang":
        if "ignore-term" in extra:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(os.environ["FAKE_TOOL_PIDS"], "w") as fh:
            fh.write(f"{os.getpid()} {child.pid}")
        out("Writing | ##### | 10% 0.01s\n")
        time.sleep(60)
        return 0
    out(f"unknown mode {mode}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
