#!/usr/bin/env bash
# Prepare everything `make test` and `make demo` need, skipping whatever is already in place:
#   1. Debian packages (only when run as root; see hacking/apt-packages.txt),
#   2. the control-node virtualenv .venv from the pinned requirement files (collection, tests, docs),
#   3. the collection made importable as .collections/ansible_collections/opsguard/anqicms (a symlink).
# A second run only compares hashes and exits within a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
# The control node's Python: the distribution's build of that version when it has venv (Debian builds CPython with
# PGO and LTO: Ansible's controller, ansible-test and pylint use about 20 % less CPU than on a plain source build,
# such as pyenv's default), else the first python3 on PATH. PYTHON=... chooses another.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    distro=/usr/bin/python$PYTHON_VERSION
    if [ -x "$distro" ] && "$distro" -c 'import venv, ensurepip' 2>/dev/null; then
        PYTHON=$distro
    fi
fi
VENV=${VENV:-$ROOT/.venv}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages --------------------------------------------------------
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    mapfile -t wanted < <(grep -Ev '^\s*(#|$)' hacking/apt-packages.txt)
    missing=()
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        # Packages are installed for the test hosts, not for this machine: never start
        # their services here (a MariaDB writing to /var/lib/mysql under the hosts'
        # overlays would corrupt them).
        policy_created=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            policy_created=1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        [ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
    else
        log "Debian packages: all ${#wanted[@]} present"
    fi
else
    log "not root: skipping Debian packages (see hacking/apt-packages.txt)"
fi

# Every test host's systemd takes about 7 inotify instances; the kernel's default of 128 per user (machine-wide
# for root) leaves hosts `degraded` once a few fleets run side by side.
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/fs/inotify/max_user_instances ] \
        && [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 1024 ]; then
    echo 1024 > /proc/sys/fs/inotify/max_user_instances
    log "fs.inotify.max_user_instances raised to 1024 for the test fleet"
fi

# 2. virtualenv -------------------------------------------------------------
req_files=(requirements.txt tests/requirements.txt hacking/docs/requirements.txt)
base=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')
req_hash=$({ cat "${req_files[@]}" tests/constraints.txt; echo "$base"; } | sha256sum | cut -c1-16)
stamp="$VENV/.opsguard-$req_hash"
if [ ! -e "$stamp" ]; then
    log "creating $VENV with $base from ${req_files[*]} (constraints: tests/constraints.txt)"
    # A virtualenv made from another interpreter, or whose interpreter is gone, is made again rather than reused
    # (only a directory with the pyvenv.cfg of a virtualenv is ever removed).
    current=$("$VENV/bin/python" -c 'import os, sys; print(os.path.realpath(sys._base_executable))' 2>/dev/null || true)
    if [ -f "$VENV/pyvenv.cfg" ] && [ "$current" != "$base" ]; then
        rm -rf -- "$VENV"
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c tests/constraints.txt "${req_files[@]/#/-r}"
    rm -f "$VENV"/.opsguard-*
    touch "$stamp"
else
    log "virtualenv: up to date ($VENV)"
fi

# 3. the collection, importable ---------------------------------------------
link=.collections/ansible_collections/opsguard/anqicms
if [ "$(readlink "$link" 2>/dev/null)" != "../../.." ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn ../../.. "$link"
    log "collection linked at $link"
fi
