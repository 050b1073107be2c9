# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the memory tests: saved /proc and /sys/fs/cgroup trees (tests/unit/fixtures/memory/<case>), and saved
process tables written into a copy of such a tree as /proc/PID files, so that the real reader (procfs) reads them."""

from __future__ import annotations

import itertools
import os
import shutil
import typing as t

from ansible_collections.opsguard.anqicms.plugins.module_utils import memory, procfs

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'memory')
MIB = 1024 * 1024
KIB = 1024
BTIME = 1795775022
_COPIES = itertools.count()


def root(case: str) -> str:
    return os.path.abspath(os.path.join(FIXTURES, case))


def thresholds(**over: float) -> dict[str, float]:
    th = dict(memory.DEFAULT_THRESHOLDS)
    th.update(over)
    return th


def record(pid: int, name: str, exe: str, rss_mib: float, ppid: int = 1, unit: str | None = None,
           memory_path: str | None = None, cmdline: str = '') -> dict[str, t.Any]:
    cgroups: dict[str, str] = {}
    if unit:
        cgroups['systemd'] = '/system.slice/' + unit
    if memory_path:
        cgroups['memory'] = memory_path
    return {'pid': pid, 'ppid': ppid, 'name': name, 'exe': exe, 'cmdline': cmdline or exe, 'rss': int(rss_mib * MIB),
            'cgroups': cgroups, 'uss': None, 'pss': None, 'swap': None}


class SavedProcess:
    """One row of a saved process table: what /proc/PID/{stat,statm,exe,cmdline} of that process said."""

    def __init__(self, pid: int, ppid: int, name: str, exe: str, rss: int, cmdline: list[str] | None = None) -> None:
        self.pid, self.ppid, self.name, self.exe, self.rss = pid, ppid, name, exe, rss
        self.cmdline = cmdline or ([exe] if exe else [name])


def write_process(proc: str, row: SavedProcess) -> None:
    """Write (or overwrite) the files of one process under ``proc``; an existing cgroup or smaps_rollup file stays."""
    base = os.path.join(proc, str(row.pid))
    os.makedirs(base, exist_ok=True)
    pages = row.rss // procfs.PAGE_SIZE
    # fields after the comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    # priority nice num_threads itrealvalue starttime vsize rss
    rest = ['S', str(row.ppid), str(row.pid)] + ['0'] * 14 + ['1', '0', '12345', '0', str(pages)]
    with open(os.path.join(base, 'stat'), 'w', encoding='utf-8') as handle:
        handle.write('%d (%s) %s\n' % (row.pid, row.name[:15], ' '.join(rest)))
    with open(os.path.join(base, 'statm'), 'w', encoding='ascii') as handle:
        handle.write('%d %d 0 0 0 0 0\n' % (pages, pages))
    with open(os.path.join(base, 'cmdline'), 'w', encoding='utf-8') as handle:
        handle.write(''.join(arg + '\0' for arg in row.cmdline))
    link = os.path.join(base, 'exe')
    if os.path.lexists(link):
        os.unlink(link)
    if row.exe:
        os.symlink(row.exe, link)  # dangling: only its text is read, like a readlink of /proc/PID/exe


def saved(table: list[SavedProcess], case_root: str, tmp: t.Any) -> str:
    """A copy of the saved tree case_root under tmp with the process table written into its /proc."""
    copy = os.path.join(str(tmp), 'tree-%d' % next(_COPIES))
    shutil.copytree(case_root, copy, symlinks=True)
    os.makedirs(os.path.join(copy, 'proc'), exist_ok=True)
    for row in table:
        write_process(os.path.join(copy, 'proc'), row)
    return copy
