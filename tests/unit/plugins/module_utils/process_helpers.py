# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the process tests: real processes spawned here, fixture files for parsing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs
from ansible_collections.opsguard.anqicms.tests.utils.wait import wait_for  # noqa: F401  (used by the tests through this module)

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'process')
SLEEP = shutil.which('sleep') or '/bin/sleep'


def fixture(*parts: str) -> str:
    return os.path.join(FIXTURES, *parts)


def read_fixture(*parts: str) -> str:
    with open(fixture(*parts)) as f:
        return f.read()


def started(proc: subprocess.Popen, exe: str = SLEEP):
    """Identity of proc once it has exec'd exe (before that /proc shows the forked parent)."""
    real = os.path.realpath(exe)

    def execd():
        ident = procfs.read_identity(proc.pid)
        return ident if ident and ident.exe == real and procfs.read_cmdline(proc.pid) else None

    return wait_for(execd)


def ready_process(spawn, code: str, binary: str | None = None) -> subprocess.Popen:
    """Start a python process that prints READY once its set-up (signal handlers, sockets) is done."""
    proc = spawn([binary or sys.executable, '-c', textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith('READY'), line
    return proc


def alive(pid: int) -> bool:
    return procfs.read_identity(pid) is not None


LISTENER = '''
import signal, socket, sys, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)
print('READY', s.getsockname()[1], flush=True)
held = []
while True:
    c, a = s.accept(); held.append(c)
'''

TERM_RECORDER = '''
    import signal, sys, time
    def on_term(*args):
        with open(sys.argv[1], 'a') as f:
            f.write('TERM\\n')
    signal.signal(signal.SIGTERM, on_term)
    print('READY', flush=True)
    while True:
        time.sleep(60)
'''

with open('/proc/sys/kernel/pid_max') as _f:
    PID_MAX = int(_f.read())


def term_recorder(spawn, record: str) -> subprocess.Popen:
    """A process that ignores SIGTERM but writes one line per SIGTERM to record."""
    proc = spawn([sys.executable, '-c', textwrap.dedent(TERM_RECORDER), record], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith('READY')
    return proc


def terms(record: str) -> int:
    return open(record).read().count('TERM') if os.path.exists(record) else 0
