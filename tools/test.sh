#!/usr/bin/env bash
# Installs everything the test suite needs and runs it. Safe to run again.
#  - Debian packages the tests drive for real (avrdude, chromium), when run as root or with sudo;
#    without them, the tests that need them say why they skipped.
#  - A virtual environment in .venv with labruntime (editable) and its test extras.
# Extra arguments go to pytest, e.g.  bash tools/test.sh -k sessions -x
set -euo pipefail
cd "$(dirname "$0")/.."

debs=()
command -v avrdude >/dev/null 2>&1 || debs+=(avrdude)
command -v chromium >/dev/null 2>&1 || debs+=(chromium)
command -v nginx >/dev/null 2>&1 || debs+=(nginx-light)
if ((${#debs[@]})); then
    if [ "$(id -u)" = 0 ]; then apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        apt=(sudo env DEBIAN_FRONTEND=noninteractive apt-get)
    else apt=(); fi
    if ((${#apt[@]})); then
        echo "installing Debian packages: ${debs[*]}"
        "${apt[@]}" update -qq >/dev/null
        "${apt[@]}" install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
    else
        echo "note: not root and no sudo: ${debs[*]} not installed; the tests that need them will skip"
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
suites=(tests); [ -d hil_tests ] && suites+=(hil_tests)
.venv/bin/python -m pytest -q "${suites[@]}" "$@"
