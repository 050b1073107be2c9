# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The graceful_stop module run in-process against real processes spawned by the test."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs, sockets
from ansible_collections.opsguard.anqicms.plugins.modules import graceful_stop
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.process_helpers import LISTENER
from ansible_collections.opsguard.anqicms.tests.utils.module_harness import run_module_main

SLEEP = shutil.which('sleep') or '/bin/sleep'


def run_module(capsys, args: dict, check: bool = False) -> dict:
    del capsys  # the harness captures the module's output itself
    return run_module_main(graceful_stop.main, args, check=check)


def wait_exec(proc: subprocess.Popen, exe: str) -> procfs.Identity:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ident = procfs.read_identity(proc.pid)
        if ident is not None and ident.exe == os.path.realpath(exe) and procfs.read_cmdline(proc.pid):
            return ident
        time.sleep(0.02)
    raise AssertionError('process %d did not start %s' % (proc.pid, exe))


@pytest.fixture
def instances(tmp_path, procs):
    """Two instances of one program, each with its own binary (like two AnQiCMS directories)."""
    result = []
    for name in ('site1', 'site2'):
        d = tmp_path / name
        d.mkdir()
        exe = str(d / 'anqicms')
        shutil.copy(SLEEP, exe)
        proc = procs([exe, '60'])
        wait_exec(proc, exe)
        result.append((exe, proc))
    return result


@pytest.mark.parametrize('args,expected', [
    ({}, 'one of the following is required'),
    ({'pid': 1, 'port': 80}, 'mutually exclusive'),
    ({'exe': 'anqicms'}, 'exe must be an absolute path'),
    ({'pid': 12345, 'timeout': -1}, 'timeout must be a number of seconds from 0 to 86400'),
    ({'pid': 12345, 'signal': 'SIGNOPE'}, 'unknown signal'),
])
def test_bad_arguments(capsys, args, expected):
    result = run_module(capsys, args)
    assert result['failed'] and expected in result['msg']


def test_stop_one_instance_by_exe(capsys, instances):
    (exe1, proc1), (dummy, proc2) = instances
    result = run_module(capsys, {'exe': exe1, 'timeout': 5})
    assert result['changed'] and result['outcome'] == 'stopped_gracefully'
    assert result['identity']['pid'] == proc1.pid and result['identity']['exe'] == exe1
    assert [s['signal'] for s in result['signals']] == ['SIGTERM']
    assert proc1.wait(timeout=5) == -15
    assert proc2.poll() is None
    again = run_module(capsys, {'exe': exe1})
    assert not again['changed'] and again['outcome'] == 'already_stopped' and again['signals'] == []
    assert proc2.poll() is None


def test_check_mode_sends_nothing(capsys, instances, tmp_path):
    (exe1, proc1), dummy = instances
    diag = tmp_path / 'diag'
    result = run_module(capsys, {'exe': exe1, 'diagnostics_dir': str(diag)}, check=True)
    assert result['changed'] and result['outcome'] == 'would_stop'
    assert result['signals'] == [] and result['diagnostics_path'] is None
    assert any('SIGTERM' in step for step in result['plan'])
    assert proc1.poll() is None and not diag.exists()


def test_pidfile_of_other_instance_refused(capsys, instances, tmp_path):
    (exe1, proc1), (dummy, proc2) = instances
    pidfile = tmp_path / 'site1.pid'
    pidfile.write_text('%d\n' % proc2.pid)
    result = run_module(capsys, {'pidfile': str(pidfile), 'exe': exe1})
    assert result['failed'] and 'nothing signalled' in result['msg']
    assert result['msg'].startswith(os.uname()[1] + ':')
    assert result['signals'] == []
    assert proc1.poll() is None and proc2.poll() is None


def test_pidfile_of_unrelated_process_refused(capsys, instances, procs, tmp_path):
    (exe1, proc1), dummy = instances
    unrelated = procs([SLEEP, '60'])
    wait_exec(unrelated, SLEEP)
    pidfile = tmp_path / 'site1.pid'
    pidfile.write_text('%d\n' % unrelated.pid)
    result = run_module(capsys, {'pidfile': str(pidfile), 'name': 'anqicms'})
    assert result['failed'] and 'its name is sleep' in result['msg']
    assert unrelated.poll() is None and proc1.poll() is None


def test_pid_with_diagnostics(capsys, instances, tmp_path):
    (exe1, proc1), dummy = instances
    diag = tmp_path / 'diag'
    result = run_module(capsys, {'pid': proc1.pid, 'exe': exe1, 'diagnostics_dir': str(diag)})
    assert result['outcome'] == 'stopped_gracefully'
    with open(result['diagnostics_path']) as f:
        data = json.load(f)
    assert data['identity']['pid'] == proc1.pid and data['cmdline'] == [exe1, '60']
    assert 'VmRSS' in data['status']


def test_drain_reports_connections_left(capsys, procs):
    proc = procs([sys.executable, '-c', textwrap.dedent(LISTENER)], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().split()[1])
    client = socket.create_connection(('127.0.0.1', port))
    try:
        deadline = time.monotonic() + 5
        while not sockets.client_connections(sockets.read_tcp(proc.pid), [port]) and time.monotonic() < deadline:
            time.sleep(0.02)
        result = run_module(capsys, {'port': port, 'drain': True, 'drain_timeout': 0.3, 'timeout': 5})
    finally:
        client.close()
    assert result['outcome'] == 'stopped_gracefully'
    assert result['drain']['connections_at_start'] == 1 and result['drain']['connections_left'] == 1
    assert result['drain']['timed_out'] and result['ports'] == [port]
    assert result['port_released'] is True
    assert proc.wait(timeout=5) == -15


def test_escalation_disabled_fails_and_leaves_process(capsys, procs):
    proc = procs([sys.executable, '-c', 'import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(1, flush=True)\ntime.sleep(60)'],
                 stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    result = run_module(capsys, {'pid': proc.pid, 'timeout': 0.3, 'escalate': False})
    assert result['failed'] and 'still running after SIGTERM' in result['msg']
    assert result['outcome'] is None and [s['pid'] for s in result['survivors']] == [proc.pid]
    assert proc.poll() is None
    forced = run_module(capsys, {'pid': proc.pid, 'timeout': 0.3})
    assert forced['outcome'] == 'stopped_forced'
    assert [s['signal'] for s in forced['signals']] == ['SIGTERM', 'SIGKILL']
    assert proc.wait(timeout=5) == -9
