"""config/: the Raspberry Pi deployment files parse, validate, and really serve a lab.

The slow test starts gunicorn with config/gunicorn.conf.py, SCRIPT_NAME=/lab1, the example lab
(config/wsgi_app.py) and config/lab.example.toml exactly as labruntime-web.service does, then
speaks the RLMS protocol to it over HTTP under the /lab1 prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from labruntime.drivers import validate_device_url
from labruntime.testing import FakeRLMS

CONFIG = Path(__file__).resolve().parent.parent / "config"
DEVICE_MAPS = ["devices.sim.toml", "devices.rig.toml"]
UNITS = ["labruntime-web.service", "labruntime-worker.service"]
LAB_USER, LAB_PASSWORD = "weblabdeusto", "rlms-password-of-the-tests"
SHIPPED_SECRETS = {  # what lab.example.toml asks the operator to change (init_app refuses them)
    'WEBLAB_PASSWORD = "change-me-rlms-password"': f'WEBLAB_PASSWORD = "{LAB_PASSWORD}"',
    'SECRET_KEY = "change-me-to-a-long-random-string"': 'SECRET_KEY = "secret-key-of-the-tests"',
}


def example_config(tmp_path: Path) -> Path:
    """lab.example.toml with its "change-me" secrets changed, as the operator must."""
    text = (CONFIG / "lab.example.toml").read_text()
    for old, new in SHIPPED_SECRETS.items():
        assert old in text, f"lab.example.toml no longer has {old!r}: update this test"
        text = text.replace(old, new)
    path = tmp_path / "lab1.toml"
    path.write_text(text)
    return path


def _toml(name: str) -> dict[str, Any]:
    with (CONFIG / name).open("rb") as fh:
        return tomllib.load(fh)


def _devices(name: str) -> dict[str, str]:
    data = _toml(name)
    return {**data["WEBLAB_DEVICES"], **data.get("HIL_DEVICES", {})}


def _stop_redis_of(instance: Path, timeout: float = 10.0) -> None:
    """Stop the embedded Redis a lab started in ``instance`` (its pid file), if it runs: what
    the redis unit's ExecStop does, without importing labruntime's internals."""
    pidfile = instance / "redis" / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
        if b"redis-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return  # a stale pid file: that pid is another program now
        os.kill(pid, signal.SIGTERM)  # redis-server shuts down cleanly on SIGTERM
    except (OSError, ValueError):
        return
    if not _gone(pid, timeout):
        os.kill(pid, signal.SIGKILL)


def _gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for process ``pid`` to exit; whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)  # waiting for another process's exit: no notification exists
    return False


# -- device maps and the lab config ------------------------------------------------------------
@pytest.mark.parametrize("name", DEVICE_MAPS)
def test_device_maps_load_into_flask_config(name):
    app = Flask(__name__)
    assert app.config.from_file(str(CONFIG / name), load=tomllib.load, text=False)
    devices = app.config["WEBLAB_DEVICES"]
    assert isinstance(devices, dict) and {"board", "led"} <= devices.keys()
    assert all(isinstance(url, str) for url in devices.values())


@pytest.mark.parametrize("name", DEVICE_MAPS)
def test_device_urls_validate_without_hardware(name):
    for device, url in _devices(name).items():
        parsed = validate_device_url(url)
        assert parsed.raw == url, device


@pytest.mark.parametrize("device", sorted(_devices("devices.sim.toml")))
def test_every_simulated_device_passes_device_check(device):
    """What config/README.md tells an operator to run: ``labruntime device check URL``."""
    url = _devices("devices.sim.toml")[device]
    labruntime = Path(sys.executable).with_name("labruntime")
    result = subprocess.run(
        [str(labruntime), "device", "check", "--json", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    report = json.loads(result.stdout)
    assert report["safe"]["ok"] is True, report
    assert report["device"]["url"] == url
    if device == "board_nosync":  # a board made not to answer: the check says so, exit 1
        assert result.returncode == 1, result.stdout + result.stderr
        assert "no answer from the bootloader" in result.stderr
        assert report["check"]["ok"] is False
        return
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["check"]["ok"] is True, report


def test_sim_and_rig_maps_offer_the_same_devices():
    def roles(devices: dict[str, str]) -> set[str]:
        names = set(devices)
        if "loopback" in names or {"loop_out", "loop_in"} <= names:
            names -= {"loopback", "loop_out", "loop_in"}
            names.add("<loopback>")
        return names

    sim, rig = (_devices(name) for name in DEVICE_MAPS)
    assert roles(rig) == {"board", "board_nosync", "led", "<loopback>"}
    # unplugging a board on cue needs a switchable USB hub: simulated only
    assert roles(sim) == roles(rig) | {"board_unplug"}
    assert rig["board"].startswith("stk500:/dev/arduino-uno?") and "reset=gpio:" in rig["board"]
    assert rig["led"].startswith("gpio:17?") and "safe=0" in rig["led"]


def test_hil_plugin_finds_the_sim_map_by_default():
    from importlib.metadata import entry_points

    (plugin,) = entry_points(group="pytest11", name="labruntime_hil")  # the HIL plugin
    devices = plugin.load().resolve_device_map(None, {}, CONFIG.parent)
    assert dict(devices) == _devices("devices.sim.toml")
    assert devices.source.endswith("devices.sim.toml")


def test_example_lab_config_is_accepted_by_weblab(tmp_path):
    from labruntime import WebLab

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.from_file(str(example_config(tmp_path)), load=tomllib.load, text=False)
    app.config.from_file(str(CONFIG / "devices.rig.toml"), load=tomllib.load, text=False)
    WebLab(app)  # validates every WEBLAB_* key (and the device URLs) without starting Redis
    assert app.config["WEBLAB_TASK_THREADS_PROCESS"] == 0
    assert app.config["SESSION_COOKIE_NAME"] == "lab1sess"
    assert app.config["SESSION_COOKIE_PATH"] == "/lab1"


# -- systemd, udev, nginx ------------------------------------------------------------------------
def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> values (a key such as Environment may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (CONFIG / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{name}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_run_as_the_lab_user_with_device_groups(name):
    unit = _unit(name)
    service = unit["Service"]
    assert service["User"] == ["lab"]
    assert {"dialout", "gpio"} <= set(service["SupplementaryGroups"][0].split())
    assert service["ExecStart"][0].startswith("/opt/labruntime/venv/bin/")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    env = dict(value.partition("=")[::2] for value in service["Environment"])
    # the web server and the worker share the lab's instance folder (its embedded Redis)
    assert env["LABRUNTIME_INSTANCE"] == "/var/lib/labruntime/lab1"


def test_worker_unit_stops_with_sigterm_and_time_to_dispose():
    service = _unit("labruntime-worker.service")["Service"]
    assert service["KillSignal"] == ["SIGTERM"]
    dispose_timeout = _toml("lab.example.toml")["WEBLAB_DISPOSE_TIMEOUT"]
    assert float(service["TimeoutStopSec"][0].rstrip("s")) > dispose_timeout + 5
    exec_start = service["ExecStart"][0]
    assert " loop " in exec_start and "--device board " in exec_start
    stop_timeout = float(exec_start.split("--stop-timeout ", 1)[1].split()[0])
    assert dispose_timeout < stop_timeout < float(service["TimeoutStopSec"][0]) - 5
    # systemd expands % specifiers: a literal % must be written %%.
    assert "%" not in exec_start.replace("%%", "")


def test_worker_unit_takes_device_urls_from_the_device_map():
    """One source of truth: the unit names devices; their URLs come from devices.toml."""
    service = _unit("labruntime-worker.service")["Service"]
    args = service["ExecStart"][0].split()
    named = [args[at + 1] for at, arg in enumerate(args) if arg == "--device"]
    assert named == ["board", "led"]  # bare names: no URL repeated in the unit
    env = dict(value.partition("=")[::2] for value in service["Environment"])
    assert env["LABRUNTIME_DEVICES"] == "/etc/labruntime/devices.toml"
    for name in DEVICE_MAPS:  # the README copies either map there
        assert set(named) <= _toml(name)["WEBLAB_DEVICES"].keys(), name


def test_web_unit_sets_script_name_and_uses_gunicorn_conf():
    service = _unit("labruntime-web.service")["Service"]
    assert "SCRIPT_NAME=/lab1" in service["Environment"]
    assert (
        "gunicorn -c /etc/labruntime/gunicorn.conf.py wsgi_app:application"
        in (service["ExecStart"][0])
    )


def test_udev_rule_names_the_board_by_serial_number():
    rules = (CONFIG / "udev" / "99-labruntime.rules").read_text()
    active = [line for line in rules.splitlines() if line and not line.startswith("#")]
    assert any('SYMLINK+="arduino-uno"' in line and "ATTRS{serial}" in line for line in active)


def test_nginx_example_proxies_two_labs_with_their_prefixes():
    conf = (CONFIG / "nginx" / "labs.conf").read_text()
    assert "location /lab1/" in conf and "proxy_pass http://127.0.0.1:8080;" in conf
    assert "location /lab2/" in conf and "proxy_pass http://127.0.0.1:8081;" in conf
    assert conf.count("proxy_set_header X-Forwarded-Proto $scheme;") >= 2


# -- gunicorn for real ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def _wait_until_serving(
    proc: subprocess.Popen[bytes], port: int, prefix: str, deadline: float
) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode} before serving")
        try:
            if _get(port, f"{prefix}/weblab/sessions/api").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)  # gunicorn has no readiness signal outside systemd's sd_notify
    raise AssertionError(f"gunicorn did not serve {prefix}/weblab/sessions/api within 30 s")


@contextlib.contextmanager
def gunicorn_lab(
    workdir: Path, script_name: str, config: Path, instance: Path | None = None
) -> Iterator[int]:
    """gunicorn as labruntime-web.service runs it, on a free port; its process group killed."""
    port = _free_port()
    instance = instance or workdir / "instance"
    env = {
        **os.environ,
        "SCRIPT_NAME": script_name,
        "LABRUNTIME_BIND": f"127.0.0.1:{port}",
        "LABRUNTIME_CONFIG": str(config),
        "LABRUNTIME_DEVICES": str(CONFIG / "devices.sim.toml"),
        "LABRUNTIME_INSTANCE": str(instance),
        "LABRUNTIME_LOCK_DIR": str(workdir / "locks"),
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in config/
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    cmd = [str(gunicorn), "-c", str(CONFIG / "gunicorn.conf.py"), "wsgi_app:application"]
    log_path = workdir / f"gunicorn{script_name.replace('/', '-')}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=CONFIG, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            try:
                _wait_until_serving(proc, port, script_name, time.monotonic() + 30)
            except AssertionError as exc:
                log.flush()
                raise AssertionError(f"{exc}\n{log_path.read_text()[-3000:]}") from None
            yield port
        finally:
            _stop_group(proc)
            _stop_redis_of(instance)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        proc.wait(timeout=10)


@pytest.fixture
def gunicorn_lab1(tmp_path: Path) -> Iterator[int]:
    """The example lab, as labruntime-web.service serves it: its port."""
    with gunicorn_lab(tmp_path, "/lab1", example_config(tmp_path)) as port:
        yield port


@pytest.mark.slow
def test_gunicorn_serves_the_rlms_protocol_under_script_name(gunicorn_lab1):
    port = gunicorn_lab1
    api = _get(port, "/lab1/weblab/sessions/api")
    assert api.status == 200 and api.getheader("Content-Type") == "application/json"
    assert json.loads(api.body) == {"api_version": "1"}
    # Only under the prefix: gunicorn refuses a path outside SCRIPT_NAME (nginx never sends one)
    assert _get(port, "/weblab/sessions/api").status != 200

    rlms = FakeRLMS(f"http://127.0.0.1:{port}/lab1", LAB_USER, LAB_PASSWORD)
    assert rlms.api() == {"api_version": "1"}
    assert rlms.test() == {"valid": True}
    wrong = FakeRLMS(f"http://127.0.0.1:{port}/lab1", LAB_USER, "not-the-password")
    assert wrong.test()["valid"] is False
    assert wrong.calls[-1].status == 401

    started = rlms.start({}, username="alice", assigned_time=120)
    # WEBLAB_SCHEME=https from the example config, the prefix from SCRIPT_NAME
    assert started.url.startswith(f"https://127.0.0.1:{port}/lab1/")
    assert 0 < rlms.status(started.session_id) <= 5

    link = started.url.replace("https://", "http://", 1).split(f":{port}", 1)[1]
    callback = _get(port, link)
    assert callback.status == 302
    assert callback.getheader("Location").endswith("/lab1/")
    cookie = callback.getheader("Set-Cookie")
    assert cookie.startswith("lab1sess=") and "Path=/lab1" in cookie

    # The example lab's page keeps polling (else the student counts as gone after
    # WEBLAB_TIMEOUT = 15 s and the RLMS ends the session): its poll URL answers for the student.
    page = _get(port, "/lab1/", headers={"Cookie": cookie.split(";", 1)[0]})
    assert page.status == 200 and b"Hello alice" in page.body
    poll_url = f"/lab1/callback/{started.session_id}/poll"
    assert f'"{poll_url}"'.encode() in page.body and b"<script>" in page.body
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", poll_url, headers={"Cookie": cookie.split(";", 1)[0]})
    polled = json.loads(conn.getresponse().read())
    conn.close()
    assert polled["success"] is True and polled["time_left"] > 100

    assert rlms.dispose(started.session_id)["message"] == "Deleted"
    assert rlms.status(started.session_id) == -1


def _gunicorn_conf() -> Any:
    """config/gunicorn.conf.py as a module (it is plain Python that gunicorn executes)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lab_gunicorn_conf", CONFIG / "gunicorn.conf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ in config/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


def _sid(session_id: str) -> str:
    return "sid:" + hashlib.sha256(session_id.encode()).hexdigest()[:8]


def test_gunicorn_conf_masks_session_ids_and_url_passwords():
    mask = _gunicorn_conf().mask_secrets
    sid = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd"  # 43 chars, like create_token()
    line = f'"GET /lab1/callback/{sid}/poll HTTP/1.1" 200 "https://h/lab1/callback/{sid}"'
    assert mask(line) == line.replace(sid, _sid(sid))
    assert mask("/lab1/callback/short-id") == f"/lab1/callback/{_sid('short-id')}"
    status = f"/lab1/weblab/sessions/{sid}/status"
    assert mask(status) == f"/lab1/weblab/sessions/{_sid(sid)}/status"
    for route in (
        "/weblab/sessions/api",
        "/weblab/sessions/test",
        "/weblab/sessions/status/multiple",
    ):
        assert mask(route) == route
    assert mask(f"start session {sid} for 'alice'") == f"start session {_sid(sid)} for 'alice'"
    assert mask("redis://:s3cret@localhost:6379/0 down") == "redis://:***@localhost:6379/0 down"
    assert mask("redis://lab:s3cret@db/0") == "redis://lab:***@db/0"
    assert mask("uuid 0123456789abcdef0123456789abcdef") == "uuid 0123456789abcdef0123456789abcdef"


@pytest.mark.slow
def test_gunicorn_logs_labruntime_lines_without_session_ids(tmp_path):
    """gunicorn with gunicorn.conf.py: labruntime's session lines reach the log at INFO (what
    journald keeps), and neither they nor the access log hold the session id in full."""
    with gunicorn_lab(tmp_path, "/lab1", example_config(tmp_path)) as port:
        rlms = FakeRLMS(f"http://127.0.0.1:{port}/lab1", LAB_USER, LAB_PASSWORD)
        started = rlms.start({}, username="alice", assigned_time=120)
        link = started.url.split(f":{port}", 1)[1]
        cookie = _get(port, link).getheader("Set-Cookie").split(";", 1)[0]
        assert _get(port, "/lab1/", headers={"Cookie": cookie}).status == 200
        assert rlms.status(started.session_id) > 0
        assert rlms.dispose(started.session_id)["message"] == "Deleted"
    log = (tmp_path / "gunicorn-lab1.log").read_text()
    sid, hashed = started.session_id, _sid(started.session_id)
    assert sid not in log, log
    # the access log: every request, the session id as its short hash
    assert f'"GET /lab1/callback/{hashed} HTTP/1.1" 302' in log, log
    assert f'"GET /lab1/weblab/sessions/{hashed}/status HTTP/1.1" 200' in log, log
    assert f'"POST /lab1/weblab/sessions/{hashed} HTTP/1.1" 200' in log, log
    # labruntime's own lines, at INFO, with the same hash to follow the session
    lab_lines = [line for line in log.splitlines() if "[INFO] labruntime" in line]
    assert any(f"start session {hashed}" in line for line in lab_lines), log
    assert any(f"dispose session {hashed}" in line for line in lab_lines), log


def test_readme_explains_every_file():
    readme = (CONFIG / "README.md").read_text()
    files = [
        p.relative_to(CONFIG).as_posix()
        for p in CONFIG.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    missing = [f for f in files if f != "README.md" and f"`{f}`" not in readme]
    assert not missing, f"config/README.md does not explain {missing}"


def _lab_config(tmp_path: Path, lab: str, redis_url: str, base: str) -> Path:
    """lab.example.toml as the README says to adapt it for ``lab``, on a shared Redis."""
    text = example_config(tmp_path).read_text()
    replaced = {
        'SESSION_COOKIE_NAME = "lab1sess"': f'SESSION_COOKIE_NAME = "{lab}sess"',
        'SESSION_COOKIE_PATH = "/lab1"': f'SESSION_COOKIE_PATH = "/{lab}"',
        'WEBLAB_REDIS_BASE = "lab1"': f'WEBLAB_REDIS_BASE = "{base}{lab}"',
        'SECRET_KEY = "secret-key-of-the-tests"': f'SECRET_KEY = "secret-key-of-{lab}-tests"',
        '# WEBLAB_REDIS_URL = "redis://localhost:6379/0"': f'WEBLAB_REDIS_URL = "{redis_url}"',
    }
    for old, new in replaced.items():
        assert old in text, f"lab.example.toml no longer has {old!r}: update this test"
        text = text.replace(old, new)
    path = tmp_path / f"{lab}.toml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_two_labs_behind_one_host_stay_apart(tmp_path, redis_url, redis_base):
    lab1_dir, lab2_dir = tmp_path / "lab1", tmp_path / "lab2"
    lab1_dir.mkdir()
    lab2_dir.mkdir()
    with (
        gunicorn_lab(lab1_dir, "/lab1", _lab_config(tmp_path, "lab1", redis_url, redis_base)) as p1,
        gunicorn_lab(lab2_dir, "/lab2", _lab_config(tmp_path, "lab2", redis_url, redis_base)) as p2,
    ):
        lab1 = FakeRLMS(f"http://127.0.0.1:{p1}/lab1", LAB_USER, LAB_PASSWORD)
        lab2 = FakeRLMS(f"http://127.0.0.1:{p2}/lab2", LAB_USER, LAB_PASSWORD)
        one = lab1.start({}, username="alice", assigned_time=120)
        assert one.url.startswith(f"https://127.0.0.1:{p1}/lab1/")
        # same Redis server, different WEBLAB_REDIS_BASE: lab2 does not know lab1's session
        assert lab1.status(one.session_id) > 0
        assert lab2.status(one.session_id) == -1
        assert lab2.dispose(one.session_id)["message"] == "Not found"
        two = lab2.start({}, username="bob", assigned_time=120)
        link = two.url.split(f":{p2}", 1)[1]
        cookie = _get(p2, link).getheader("Set-Cookie")
        assert cookie.startswith("lab2sess=") and "Path=/lab2" in cookie
        assert lab1.dispose(one.session_id)["message"] == "Deleted"
        assert lab2.dispose(two.session_id)["message"] == "Deleted"


# -- nginx in front of both labs (runs where Debian's nginx is installed) ------------------------
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def _nginx_config(tmp_path: Path, ports: dict[str, int], cert: Path, key: Path) -> Path:
    """labs.conf with test ports and certificate, inside a minimal nginx.conf."""
    site = (CONFIG / "nginx" / "labs.conf").read_text()
    replaced = {
        "    listen [::]:80;\n": "",
        "    listen [::]:443 ssl http2;\n": "",
        "listen 80;": f"listen 127.0.0.1:{ports['http']};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{ports['https']} ssl http2;",
        "/etc/nginx/ssl/labs.crt": str(cert),
        "/etc/nginx/ssl/labs.key": str(key),
        "http://127.0.0.1:8080;": f"http://127.0.0.1:{ports['lab1']};",
        "http://127.0.0.1:8081;": f"http://127.0.0.1:{ports['lab2']};",
    }
    for old, new in replaced.items():
        assert old in site, f"nginx/labs.conf no longer has {old!r}: update this test"
        site = site.replace(old, new)
    (tmp_path / "labs.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"daemon off;\nmaster_process off;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'} warn;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {tmp_path / 'labs.conf'};\n}}\n"
    )
    return main


def _https_get(port: int, path: str, cert: Path, cookie: str | None = None) -> Any:
    context = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


@contextlib.contextmanager
def running_nginx(tmp_path: Path, config: Path, port: int, cert: Path) -> Iterator[None]:
    assert NGINX is not None
    args = [NGINX, "-c", str(config), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    with subprocess.Popen(args, start_new_session=True) as proc:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    _https_get(port, "/lab1/weblab/sessions/api", cert)
                    break
                except OSError:
                    assert proc.poll() is None, (tmp_path / "error.log").read_text()
                    assert time.monotonic() < deadline, "nginx did not start within 20 s"
                    time.sleep(0.05)
            yield
        finally:
            _stop_group(proc)


@pytest.mark.slow
@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_nginx_example_serves_both_labs_over_https(tmp_path, redis_url, redis_base, monkeypatch):
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # FakeRLMS's https trusts the test cert
    dirs = {lab: tmp_path / lab for lab in ("lab1", "lab2", "nginx")}
    for path in dirs.values():
        path.mkdir()
    configs = {lab: _lab_config(tmp_path, lab, redis_url, redis_base) for lab in ("lab1", "lab2")}
    with (
        gunicorn_lab(dirs["lab1"], "/lab1", configs["lab1"]) as lab1_port,
        gunicorn_lab(dirs["lab2"], "/lab2", configs["lab2"]) as lab2_port,
    ):
        ports = {"http": _free_port(), "https": _free_port(), "lab1": lab1_port, "lab2": lab2_port}
        config = _nginx_config(dirs["nginx"], ports, cert, key)
        with running_nginx(dirs["nginx"], config, ports["https"], cert):
            https = ports["https"]
            plain = _get(ports["http"], "/lab1/weblab/sessions/api")
            assert plain.status == 301 and plain.getheader("Location").startswith("https://")
            rlms = {
                lab: FakeRLMS(f"https://127.0.0.1:{https}/{lab}", LAB_USER, LAB_PASSWORD)
                for lab in ("lab1", "lab2")
            }
            assert rlms["lab1"].api() == rlms["lab2"].api() == {"api_version": "1"}
            assert rlms["lab1"].test() == {"valid": True}

            started = rlms["lab1"].start({}, username="alice", assigned_time=120)
            # the public link: https, the host nginx was asked for, the lab's prefix
            assert started.url.startswith("https://127.0.0.1/lab1/callback/"), started.url
            link = started.url.split("127.0.0.1", 1)[1]
            callback = _https_get(https, link, cert)
            assert callback.status == 302
            assert callback.getheader("Location").endswith("/lab1/")
            cookie = callback.getheader("Set-Cookie")
            assert cookie.startswith("lab1sess=") and "Path=/lab1" in cookie
            assert "Secure" in cookie
            page = _https_get(https, "/lab1/", cert, cookie=cookie.split(";", 1)[0])
            assert page.status == 200 and b"Hello alice" in page.body
            assert rlms["lab2"].status(started.session_id) == -1
            assert rlms["lab1"].dispose(started.session_id)["message"] == "Deleted"


@pytest.mark.slow
def test_worker_unit_command_starts_and_stops_on_sigterm(tmp_path):
    """The worker's ExecStart as written (its environment, the app, loop, its --device names)
    holds the devices of the map in LABRUNTIME_DEVICES (the simulated one here) and ends
    cleanly on SIGTERM: what systemd relies on."""
    service = _unit("labruntime-worker.service")["Service"]
    args = service["ExecStart"][0].split()
    args[0] = str(Path(sys.executable).with_name(Path(args[0]).name))
    instance = tmp_path / "instance"
    env = {
        **os.environ,
        "LABRUNTIME_CONFIG": str(example_config(tmp_path)),
        "LABRUNTIME_DEVICES": str(CONFIG / "devices.sim.toml"),
        "LABRUNTIME_INSTANCE": str(instance),
        "LABRUNTIME_LOCK_DIR": str(tmp_path / "locks"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    stop_within = float(service["TimeoutStopSec"][0])
    try:
        with subprocess.Popen(
            args,
            cwd=CONFIG,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as proc:
            # a deadline on every read below: a hung worker is killed, its output then ends
            watchdog = threading.Timer(stop_within + 30, os.killpg, (proc.pid, signal.SIGKILL))
            watchdog.start()
            try:
                assert proc.stdout is not None
                banner = ""
                while "SIGTERM to stop" not in banner:  # the loop's banner: it is running
                    line = proc.stdout.readline()
                    assert line, banner
                    banner += line
                # the URLs came from the map, not from the unit
                assert "board" in banner and "led" in banner, banner
                proc.send_signal(signal.SIGTERM)  # KillSignal=SIGTERM
                rest = proc.stdout.read()  # ends when the process exits
                assert proc.wait(timeout=stop_within) == 0, rest
                assert "stopped" in rest
            finally:
                watchdog.cancel()
                if proc.poll() is None:
                    _stop_group(proc)
    finally:
        _stop_redis_of(instance)


@pytest.mark.slow
def test_redis_unit_starts_a_forking_server_and_stops_it(tmp_path):
    """labruntime-redis.service: ExecStart leaves the server running (Type=forking) with the pid
    file systemd watches; ExecStop ends it."""
    service = _unit("labruntime-redis.service")["Service"]
    assert service["Type"] == ["forking"]
    instance = tmp_path / "instance"
    env = {
        **os.environ,
        "LABRUNTIME_CONFIG": str(example_config(tmp_path)),
        "LABRUNTIME_DEVICES": str(CONFIG / "devices.sim.toml"),
        "LABRUNTIME_INSTANCE": str(instance),
    }

    def run(line: str) -> subprocess.CompletedProcess[str]:
        args = line.split()
        args[0] = str(Path(sys.executable).with_name(Path(args[0]).name))
        return subprocess.run(args, cwd=CONFIG, env=env, capture_output=True, text=True, timeout=60)

    pidfile = Path(service["PIDFile"][0].replace("/var/lib/labruntime/lab1", str(instance)))
    try:
        started = run(service["ExecStart"][0])
        assert started.returncode == 0, started.stdout + started.stderr
        pid = int(pidfile.read_text())
        os.kill(pid, 0)  # the daemon outlives the command, as Type=forking expects
        stopped = run(service["ExecStop"][0])
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert _gone(pid, 10), f"redis-server {pid} still running after ExecStop"
    finally:
        _stop_redis_of(instance)


# -- the test command on a Pi ---------------------------------------------------------------------
def test_test_extras_install_on_a_32_bit_pi_and_nginx_stays_off():
    """``pip install -e '.[test]'`` (config/README.md's HIL step) must not pull playwright, which
    has no wheel for 32-bit ARM; tools/test.sh adds the browser extra where it has one, and
    keeps the nginx-light it installs from serving port 80."""
    root = CONFIG.parent
    with (root / "pyproject.toml").open("rb") as fh:
        extras = tomllib.load(fh)["project"]["optional-dependencies"]
    assert not [dep for dep in extras["test"] if dep.startswith(("playwright", "hiredis"))]
    assert [dep for dep in extras["browser"] if dep.startswith("playwright")]
    assert [dep for dep in extras["speed"] if dep.startswith("hiredis")]
    script = (root / "tools" / "test.sh").read_text()
    assert "x86_64 | aarch64) extras='.[test,browser,speed]'" in script  # + hiredis
    assert "*) extras='.[test]'" in script
    assert "exit 101" in script and "policy-rc.d" in script  # no service start while installing
    assert "systemctl disable --now nginx" in script
    readme = (root / "README.md").read_text()
    assert "nginx-light" in readme and "port 80" in readme
