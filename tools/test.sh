#!/usr/bin/env bash
# Installs everything the test suite needs and runs it. Safe to run again.
#  - Debian packages the tests drive for real (avrdude, chromium, nginx-light), when run as root
#    or with sudo; without them, the tests that need them say why they skipped. Installing
#    nginx-light would start Debian's nginx on port 80: it is kept from starting (policy-rc.d
#    for the install) and disabled; the tests only run `nginx -t` and their own nginx on free
#    ports.
#  - A virtual environment in .venv with labruntime (editable) and its test extras, plus the
#    browser extra (playwright) where it has wheels (x86_64, aarch64); elsewhere the browser
#    tests skip.
#  - Then the checks: ruff (lint, format), mypy (types), pytest (tests/ and hil_tests/).
# Extra arguments go to pytest, e.g.  bash tools/test.sh -k sessions -x
set -euo pipefail
cd "$(dirname "$0")/.."

debs=()
command -v avrdude >/dev/null 2>&1 || debs+=(avrdude)
command -v chromium >/dev/null 2>&1 || debs+=(chromium)
{ [ -e /usr/include/simavr/sim_avr.h ] && command -v avr-gcc >/dev/null 2>&1 \
    && [ -e /usr/share/arduino/hardware/arduino/avr/bootloaders/optiboot/optiboot.c ]; } \
    || debs+=(simavr libsimavr-dev gcc gcc-avr avr-libc arduino-core-avr)  # the sim:avr twin
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || debs+=(nginx-light)
if ((${#debs[@]})); then
    if [ "$(id -u)" = 0 ]; then apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        apt=(sudo env DEBIAN_FRONTEND=noninteractive apt-get)
    else apt=(); fi
    if ((${#apt[@]})); then
        echo "installing Debian packages: ${debs[*]}"
        root=("${apt[@]:0:${#apt[@]}-1}")  # the same sudo/env prefix, without apt-get
        # No service starts during the install (nginx would take port 80), unless the system
        # already has its own policy.
        policy=/usr/sbin/policy-rc.d
        own_policy=0
        if [ ! -e "$policy" ]; then
            "${root[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
            own_policy=1
        fi
        "${apt[@]}" update -qq >/dev/null
        "${apt[@]}" install -y -qq --no-install-recommends "${debs[@]}" >/dev/null || status=$?
        if ((own_policy)); then "${root[@]}" rm -f "$policy"; fi
        if [ "${status:-0}" != 0 ]; then exit "$status"; fi
        if [[ " ${debs[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null 2>&1; then
            "${root[@]}" systemctl disable --now nginx >/dev/null 2>&1 || true  # not at boot
        fi
    else
        echo "note: not root and no sudo: ${debs[*]} not installed; the tests that need them will skip"
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
case "$(uname -m)" in
    x86_64 | aarch64) extras='.[test,browser,speed]' ;;  # playwright, hiredis have wheels there
    *) extras='.[test]' ;;  # 32-bit Pi: no playwright wheel (the browser tests skip), no hiredis
esac
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$extras"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/python -m mypy  # the [tool.mypy] section of pyproject.toml: labruntime, drivers included
suites=(tests); [ -d hil_tests ] && suites+=(hil_tests)
.venv/bin/python -m pytest -q "${suites[@]}" "$@"

# The oldest supported Flask (2.2, with Werkzeug 2.2, as weblablib labs use): the weblablib
# compat, session and task suites again, in their own venv (about a minute and a half).
if [ "${LABRUNTIME_SKIP_FLASK2:-0}" != 1 ]; then
    [ -x .venv-flask2/bin/python ] || python3 -m venv .venv-flask2
    .venv-flask2/bin/python -m pip install -q --disable-pip-version-check \
        "flask==2.2.5" "werkzeug==2.2.3" -e '.[test]'
    echo "Flask 2.2 / Werkzeug 2.2: tests/compat tests/session tests/tasks (not slow)"
    .venv-flask2/bin/python -m pytest -q -m 'not slow' tests/compat tests/session tests/tasks
fi
