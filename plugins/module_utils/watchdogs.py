# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Watchdogs: what could start a stopped process again (cron lines running an instance's start.sh, a unit's Restart=)."""

from __future__ import annotations

import os
import re

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs
from ansible_collections.opsguard.anqicms.plugins.module_utils.procfs import PROC

CRON_FILES = ('/etc/crontab',)
CRON_DIRS = ('/etc/cron.d', '/var/spool/cron/crontabs', '/var/spool/cron')


def cron_watchdogs(directory: str, exe: str, files: tuple | None = None) -> list:
    """Cron lines that would start this instance again: a start.sh in its directory, or its binary."""
    paths = list(files) if files is not None else list(CRON_FILES)
    if files is None:
        for d in CRON_DIRS:
            try:
                paths.extend(os.path.join(d, n) for n in sorted(os.listdir(d)) if not n.startswith('.'))
            except (IOError, OSError):
                continue
    directory = directory.rstrip('/') or '/'
    start_sh = os.path.join(directory, 'start.sh')
    dir_re = re.compile(r'(?<![\w./-])' + re.escape(directory) + r'/?(?![\w.-])')
    found = []
    for path in paths:
        if not os.path.isfile(path):
            continue
        try:
            lines = procfs.read(path).splitlines()
        except (IOError, OSError):
            continue
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith('#'):
                continue
            hit = start_sh in text or (exe and re.search(re.escape(exe) + r'(?![\w.-])', text))
            if not hit and dir_re.search(text) and re.search(r'(?<![\w.-])(\./)?start\.sh\b', text):
                hit = True
            if hit:
                found.append({'type': 'cron', 'file': path, 'line_number': number, 'line': text})
    return found


def watchdogs(identity: procfs.Identity, unit: dict | None = None, restart_of=None, proc: str = PROC,
              cron_files: tuple | None = None) -> list:
    """Cron lines for the identity's directory and binary, then its systemd unit with its Restart= setting.

    unit: the ``systemctl show`` properties when the process is stopped through its unit (its Restart= is known);
    otherwise the service is the one whose cgroup holds the process, and ``restart_of(unit_name)`` (``None``
    without systemd) looks its Restart= up.
    """
    exe = procfs.strip_deleted(identity.exe)
    found = cron_watchdogs(os.path.dirname(exe), exe, cron_files)
    unit_name = unit.get('Id') if unit else procfs.systemd_unit_of(identity.pid, proc)
    if unit_name:
        restart = unit.get('Restart') if unit else None
        if restart is None and restart_of is not None:
            restart = restart_of(unit_name)
        found.append({'type': 'systemd', 'unit': unit_name, 'restart': restart})
    return found
