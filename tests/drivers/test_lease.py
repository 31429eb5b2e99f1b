"""Device leases across real processes: busy names the holder, kill -9 frees the device."""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labruntime.drivers import DeviceBusyError, DeviceIOError, DeviceLease
from labruntime.drivers import lease as lease_module
from labruntime.drivers.lease import lock_dir, path_key
from tests._helpers import skip_unless_user_can_import

try:
    _GROUP = grp.getgrgid(65534).gr_name  # the lab's group in these tests (nogroup)
except KeyError:
    _GROUP = "nogroup"

HOLDER = """
import sys
from labruntime.drivers.lease import DeviceLease
lease = DeviceLease.acquire(sys.argv[1])
print("held", flush=True)
sys.stdin.read()          # hold until the test closes our stdin
lease.release()
print("released", flush=True)
"""


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "/dev/ttyTEST0", "--marker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def test_second_process_gets_busy_naming_the_holder(holder: subprocess.Popen[str]) -> None:
    with pytest.raises(DeviceBusyError) as info:
        DeviceLease.acquire("/dev/ttyTEST0")
    message = str(info.value)
    assert f"pid {holder.pid}" in message
    assert "--marker" in message  # the holder's command line
    assert info.value.holder is not None and info.value.holder["pid"] == holder.pid


def test_clean_release_lets_the_next_holder_in_with_previous_clean(
    holder: subprocess.Popen[str],
) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.close()
    assert holder.stdout.readline().strip() == "released"
    assert holder.wait(5) == 0
    with DeviceLease.acquire("/dev/ttyTEST0") as lease:
        assert lease.held
        assert lease.previous is not None and lease.previous["pid"] == holder.pid
        assert lease.previous_unclean is False
    assert not lease.held


def test_kill_9_frees_the_lock_and_marks_previous_unclean(holder: subprocess.Popen[str]) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(5)
    lease = DeviceLease.acquire("/dev/ttyTEST0")
    try:
        assert lease.previous_unclean is True
        assert lease.previous is not None and lease.previous["pid"] == holder.pid
    finally:
        lease.release()
    lease.release()  # idempotent
    again = DeviceLease.acquire("/dev/ttyTEST0")
    assert again.previous_unclean is False
    again.release()


def test_same_process_second_acquirer_is_busy_too() -> None:
    first = DeviceLease.acquire("gpio:GPIO17")
    try:
        with pytest.raises(DeviceBusyError, match=f"this process pid {os.getpid()}"):
            DeviceLease.acquire("gpio:GPIO17")
        other = DeviceLease.acquire("gpio:GPIO18")  # another key is independent
        other.release()
    finally:
        first.release()
    DeviceLease.acquire("gpio:GPIO17").release()


def test_lease_file_holds_json_about_the_holder(lock_dir: Path) -> None:
    import json

    with DeviceLease.acquire("/dev/ttyACM0") as lease:
        info = json.loads(lease.path.read_text())
        assert lease.path.parent == lock_dir
        assert info["pid"] == os.getpid() and info["clean"] is False
        assert info["key"] == "/dev/ttyACM0" and info["argv"] and info["host"] and info["since"]
    assert json.loads(lease.path.read_text())["clean"] is True


def test_lock_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABRUNTIME_LOCK_DIR", str(tmp_path / "x"))
    assert lock_dir() == tmp_path / "x"
    monkeypatch.delenv("LABRUNTIME_LOCK_DIR")
    monkeypatch.setattr(lease_module, "SHARED_LOCK_DIR", tmp_path / "no" / "such" / "labruntime")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert lock_dir() == tmp_path / "labruntime"  # no shared directory: a per-user one
    assert stat.S_IMODE((tmp_path / "labruntime").stat().st_mode) == 0o700
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert lock_dir() == Path(f"/tmp/labruntime-{os.getuid()}")


def test_a_per_user_lock_dir_of_someone_else_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LABRUNTIME_LOCK_DIR")
    monkeypatch.setattr(lease_module, "SHARED_LOCK_DIR", tmp_path / "no" / "such" / "labruntime")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "labruntime").mkdir(mode=0o777)
    (tmp_path / "labruntime").chmod(0o777)  # others may write it: another user could plant
    with pytest.raises(DeviceIOError, match="not this user's own"):
        lock_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: root creates the shared directory")
def test_root_creates_the_shared_dir_for_the_lab_group_and_refuses_a_planted_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LABRUNTIME_LOCK_DIR")
    monkeypatch.setenv("LABRUNTIME_LOCK_GROUP", _GROUP)
    run_lock = tmp_path / "run-lock"  # stands for /run/lock: root's, sticky, world-writable
    run_lock.mkdir()
    run_lock.chmod(0o1777)
    shared = run_lock / "labruntime"
    monkeypatch.setattr(lease_module, "SHARED_LOCK_DIR", shared)
    assert lock_dir() == shared
    st = shared.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 65534, 0o3770)
    with DeviceLease.acquire("k") as lease:  # a lease file of the group, closed to others
        st = lease.path.stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 0o660)
    planted = shared / lease_module._file_name("planted")  # a file of a user outside the lab
    planted.write_text("{}")
    os.chown(planted, 65533, 65533)
    planted.chmod(0o666)
    with pytest.raises(DeviceIOError, match="lease file .* is not to be trusted"):
        DeviceLease.acquire("planted")
    shared.chmod(0o750)
    assert lock_dir() == shared  # root's, others cannot write: trusted
    os.chown(shared, 65534, 65534)  # created first by another user (after a reboot)
    shared.chmod(0o1777)
    with pytest.raises(DeviceIOError, match="not to be trusted") as info:
        lock_dir()
    assert "tmpfiles.d" in str(info.value)
    monkeypatch.setenv("LABRUNTIME_LOCK_GROUP", "no-such-group-here")
    os.chown(shared, 65534, 0)
    shared.chmod(0o770)
    with pytest.raises(DeviceIOError, match="not to be trusted"):
        lock_dir()


def test_unusable_lock_dir_is_a_clear_io_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DeviceIOError, match="LABRUNTIME_LOCK_DIR"):
        DeviceLease.acquire("k", directory=blocker / "locks")


def test_path_key_resolves_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "ttyACM0"
    target.touch()
    link = tmp_path / "by-id-arduino"
    link.symlink_to(target)
    assert path_key(str(link)) == path_key(str(target)) == str(target)


def test_a_fresh_device_ignores_what_an_earlier_holder_of_its_key_left(
    holder: subprocess.Popen[str], caplog: pytest.LogCaptureFixture
) -> None:
    os.kill(holder.pid, signal.SIGKILL)  # dies holding /dev/ttyTEST0: the file says unclean
    holder.wait(5)
    with caplog.at_level("WARNING", logger="labruntime.drivers.lease"):
        with DeviceLease.acquire("/dev/ttyTEST0", fresh=True) as lease:
            assert lease.previous_unclean is False and lease.previous is None
    assert "did not release it cleanly" not in caplog.text


def test_lease_files_are_0660_and_never_followed_through_a_symlink(tmp_path: Path) -> None:
    with DeviceLease.acquire("k", directory=tmp_path) as lease:
        assert stat.S_IMODE(lease.path.stat().st_mode) == 0o660  # whatever the umask
    lease.path.chmod(0o666)  # as an older version made them: closed to others at next use
    with DeviceLease.acquire("k", directory=tmp_path) as lease:
        assert stat.S_IMODE(lease.path.stat().st_mode) == 0o660
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    with DeviceLease.acquire("other", directory=tmp_path) as lease:
        path = lease.path
    path.unlink()
    path.symlink_to(victim)
    with pytest.raises(DeviceIOError, match="cannot open the lease file"):
        DeviceLease.acquire("other", directory=tmp_path)
    assert victim.read_text() == "keep me"


OTHER_USER = """
import json, sys
from pathlib import Path
import labruntime.drivers.lease as lease_module
from labruntime.drivers.errors import DeviceBusyError, DeviceIOError
from labruntime.drivers.lease import DeviceLease, lock_dir
lease_module.SHARED_LOCK_DIR = Path(sys.argv[1])  # stands for /run/lock/labruntime
try:
    with DeviceLease.acquire("/dev/ttyACM0") as lease:
        print(json.dumps({"dir": str(lock_dir()), "took": True}))
except DeviceBusyError as exc:
    print(json.dumps({"dir": str(lock_dir()), "busy": str(exc), "holder": exc.holder}))
except DeviceIOError as exc:
    print(json.dumps({"io": str(exc)}))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run second users (nobody, and one outside the group)",
)
def test_other_users_and_the_shared_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's group (here nogroup) shares the leases; a user outside it can neither take
    nor flock them; the holder is named by the kernel; a planted directory is refused."""
    skip_unless_user_can_import(65534, 65534, "labruntime.drivers.lease")
    skip_unless_user_can_import(65533, 65533, "labruntime.drivers.lease")
    run_lock = Path(tempfile.mkdtemp(prefix="run-lock-"))  # /tmp: reachable by nobody
    try:
        run_lock.chmod(0o1777)
        shared = run_lock / "labruntime"
        monkeypatch.delenv("LABRUNTIME_LOCK_DIR")
        monkeypatch.setenv("LABRUNTIME_LOCK_GROUP", _GROUP)
        monkeypatch.setattr(lease_module, "SHARED_LOCK_DIR", shared)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("LABRUNTIME_LOCK_DIR", "XDG_RUNTIME_DIR")
        }

        def as_user(uid: int, gid: int, script: str = OTHER_USER) -> dict:
            command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            out = subprocess.run(
                [*command, sys.executable, "-c", script, str(shared)],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                cwd=run_lock,
            )
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)

        member, outsider = (65534, 65534), (65533, 65533)
        with DeviceLease.acquire("/dev/ttyACM0") as lease:  # the service (here: root)
            assert lease.path.parent == shared
            seen = as_user(*member)
            assert seen["dir"] == str(shared)
            assert "busy" in seen and f"pid {os.getpid()}" in seen["busy"]
            assert seen["holder"]["pid"] == os.getpid() and seen["holder"]["from"] == "kernel"
            kept_out = as_user(*outsider)  # cannot even open the file to flock it
            assert "io" in kept_out and _GROUP in kept_out["io"], kept_out
        assert json.loads(lease.path.read_text())["clean"] is True
        assert as_user(*member) == {"dir": str(shared), "took": True}  # group-writable file
        assert "io" in as_user(*outsider)
        shutil.rmtree(shared)
        planted = "import os, sys; os.mkdir(sys.argv[1]); os.chmod(sys.argv[1], 0o1777)"
        subprocess.run(
            ["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups"]
            + [sys.executable, "-c", planted, str(shared)],
            check=True,
            timeout=60,
        )  # after a reboot, another user creates the shared directory first
        with pytest.raises(DeviceIOError, match="not to be trusted"):
            DeviceLease.acquire("/dev/ttyACM0")
    finally:
        shutil.rmtree(run_lock)


def test_the_holder_named_comes_from_the_kernel_not_from_a_forged_file(
    holder: subprocess.Popen[str],
) -> None:
    with pytest.raises(DeviceBusyError) as info:
        DeviceLease.acquire("/dev/ttyTEST0")
    path = Path(lock_dir()) / lease_module._file_name("/dev/ttyTEST0")
    forged = {"pid": 1, "argv": ["/lib/systemd/systemd-udevd"], "host": "x", "since": "then"}
    path.write_text(json.dumps(forged))  # anyone who can write the file could do this
    with pytest.raises(DeviceBusyError) as info:
        DeviceLease.acquire("/dev/ttyTEST0")
    message = str(info.value)
    assert f"pid {holder.pid}" in message and "--marker" in message, message
    assert "systemd-udevd" not in message and info.value.holder["pid"] == holder.pid
