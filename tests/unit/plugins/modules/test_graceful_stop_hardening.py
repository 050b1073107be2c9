# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""graceful_stop on absurd input and on faults after a signal (issue 11, items 2 and 3, and their siblings).

Every refusal is checked against a live process that records each SIGTERM it gets (and ignores it): the
process must still run and have recorded nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs, sockets, stopping
from ansible_collections.opsguard.anqicms.plugins.modules import graceful_stop
from ansible_collections.opsguard.anqicms.tests.utils.wait import poll

SLEEP = shutil.which('sleep') or '/bin/sleep'
with open('/proc/sys/kernel/pid_max') as _f:
    PID_MAX = int(_f.read())

# Ignores SIGTERM but writes one line per SIGTERM it receives to the file given as argv[1].
TERM_RECORDER = '''
import signal, sys, time
path = sys.argv[1]
def on_term(*args):
    with open(path, 'a') as f:
        f.write('TERM\\n')
signal.signal(signal.SIGTERM, on_term)
print('READY', flush=True)
while True:
    time.sleep(60)
'''


class Target(object):
    def __init__(self, proc: subprocess.Popen, record: str) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.record = record

    def terms(self) -> int:
        try:
            with open(self.record) as f:
                return f.read().count('TERM')
        except FileNotFoundError:
            return 0

    def terms_received(self, expected: int = 1, timeout: float = 5.0) -> int:
        """terms() once the target has had time to handle the signals sent (its handler writes the record)."""
        poll(lambda: self.terms() >= expected, timeout, 0.01)
        return self.terms()

    def untouched(self) -> bool:
        return self.proc.poll() is None and self.terms() == 0


def wait_exec(proc: subprocess.Popen, exe: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ident = procfs.read_identity(proc.pid)
        if ident is not None and ident.exe == os.path.realpath(exe):
            return
        time.sleep(0.01)
    raise AssertionError('process %d did not exec %s' % (proc.pid, exe))


@pytest.fixture
def target(procs, tmp_path):
    record = str(tmp_path / 'terms')
    proc = procs([sys.executable, '-c', TERM_RECORDER, record], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'READY'
    return Target(proc, record)


# ------------------------------------------------------------ item 2: durations


@pytest.mark.parametrize('option', ['timeout', 'kill_timeout', 'drain_timeout', 'port_release_timeout'])
@pytest.mark.parametrize('value', [1e10, float('inf'), float('-inf'), float('nan'), 1e308, -1, -0.001, 86400.5, 'nan', 'inf', '1e400'])
def test_absurd_duration_refused_before_any_signal(run_main, target, option, value):
    result = run_main(graceful_stop.main, {'pid': target.pid, option: value, 'drain': True})
    assert result['failed'] and not result['changed']
    assert result['msg'].startswith(os.uname()[1] + ': ') and option in result['msg']
    assert 'from 0 to 86400' in result['msg'] and 'invalid option value' in result['msg'] and 'nothing signalled' in result['msg']
    assert 'exception' not in result
    assert target.untouched()


def test_longest_timeout_accepted(run_main, procs):
    proc = procs([SLEEP, '60'])
    wait_exec(proc, SLEEP)
    result = run_main(graceful_stop.main, {'pid': proc.pid, 'timeout': 86400, 'kill_timeout': 86400, 'drain_timeout': 86400,
                                           'port_release_timeout': 86400, 'drain': True})
    assert result['outcome'] == 'stopped_gracefully' and result['changed']
    assert proc.wait(timeout=5) == -15


def test_zero_timeout_escalates_at_once(run_main, target):
    result = run_main(graceful_stop.main, {'pid': target.pid, 'timeout': 0})
    assert result['outcome'] == 'stopped_forced'
    assert [s['signal'] for s in result['signals']] == ['SIGTERM', 'SIGKILL']
    assert target.proc.wait(timeout=5) == -9


# ------------------------------------------------------------ item 3: identity options


@pytest.mark.parametrize('args,words', [
    ({'cmdline_pattern': '('}, ['cmdline_pattern', 'not a valid Python regular expression']),
    ({'cmdline_pattern': '[z-a]'}, ['cmdline_pattern', 'not a valid']),
    ({'cmdline_pattern': '(' * 3000 + ')' * 3000}, ['cmdline_pattern', 'at most 4096 characters']),
    ({'cmdline_pattern': '(' * 1500 + ')' * 1500}, ['cmdline_pattern']),
    ({'cmdline_pattern': ''}, ['cmdline_pattern', 'non-empty']),
    ({'name': ''}, ['name', 'non-empty']),
    ({'name': 'py\0thon'}, ['name', 'NUL']),
    ({'exe': ''}, ['exe', 'non-empty']),
    ({'exe': 'bin/python3'}, ['exe must be an absolute path']),
    ({'signal': '²'}, ['unknown signal']),
    ({'signal': '١٥'}, ['unknown signal']),
    ({'signal': '0'}, ['unknown signal']),
    ({'signal': '99999999999999999999'}, ['unknown signal']),
    ({'signal': 'SIG_IGN'}, ['unknown signal']),
    ({'drain_ports': [0], 'drain': True}, ['drain_ports', 'between 1 and 65535']),
    ({'drain_ports': [80, 65536], 'drain': True}, ['drain_ports', '65536']),
    ({'drain_ports': [-1]}, ['drain_ports']),
    ({'diagnostics_dir': 'relative/dir'}, ['diagnostics_dir must be an absolute path']),
    ({'diagnostics_dir': '/etc/hostname'}, ['diagnostics_dir', 'not a directory']),
])
def test_bad_option_with_live_target_refused(run_main, target, args, words):
    result = run_main(graceful_stop.main, dict(args, pid=target.pid))
    assert result['failed'] and not result['changed'] and 'exception' not in result
    assert all(w in result['msg'] for w in words), result['msg']
    assert target.untouched()


@pytest.mark.parametrize('args,words', [
    ({'port': 0}, ['port', 'between 1 and 65535', 'got 0']),
    ({'port': -1}, ['port', 'got -1']),
    ({'port': 70000}, ['port', 'got 70000']),
    ({'port': 2 ** 64}, ['port']),
    ({'pid': 0}, ['pid must be a process ID']),
    ({'pid': -5}, ['pid must be a process ID', 'got -5']),
    ({'pid': 2 ** 40}, ['pid must be a process ID', 'pid_max']),
    ({'pid': 2 ** 64}, ['pid must be a process ID']),
    ({'pid': PID_MAX}, ['pid must be a process ID']),
    ({'pidfile': ''}, ['pidfile', 'non-empty']),
    ({'pidfile': 'run/x.pid'}, ['pidfile must be an absolute path']),
    ({'pidfile': '/run/x\0.pid'}, ['pidfile', 'NUL']),
    ({'systemd_unit': ''}, ['systemd_unit', 'non-empty']),
    ({'systemd_unit': 'anqicms-*.service'}, ['systemd_unit must be one unit name', 'no glob']),
    ({'systemd_unit': 'a b.service'}, ['systemd_unit must be one unit name']),
    ({'systemd_unit': '--all'}, ['systemd_unit must be one unit name']),
    ({'systemd_unit': 'x' * 300 + '.service'}, ['systemd_unit must be one unit name']),
    ({'exe': '/opt/anqicms/\0anqicms'}, ['exe', 'NUL']),
])
def test_bad_target_is_refused_not_already_stopped(run_main, target, args, words):
    """Item 3: these used to answer outcome=already_stopped (or crash); they name the option and are refused."""
    result = run_main(graceful_stop.main, dict(args, exe=args.get('exe', '/nonexistent/opsguard-test')))
    assert result['failed'] and not result['changed'] and result.get('outcome') is None
    assert all(w in result['msg'] for w in words), result['msg']
    assert 'exception' not in result
    assert target.untouched()


def test_exe_through_symlink_and_dotdot_finds_the_process(run_main, procs, tmp_path):
    """/proc/PID/exe is resolved: a symlinked or ../ path to the binary used to report already_stopped."""
    real_dir = tmp_path / 'release-2'
    real_dir.mkdir()
    binary = str(real_dir / 'anqicms')
    shutil.copy(SLEEP, binary)
    os.symlink(str(real_dir), str(tmp_path / 'current'))
    proc = procs([binary, '60'])
    for exe in (str(tmp_path / 'current' / 'anqicms'), str(real_dir / '..' / 'release-2' / 'anqicms')):
        wait_exec(proc, binary)
        result = run_main(graceful_stop.main, {'exe': exe}, check=True)
        assert result['outcome'] == 'would_stop' and result['identity']['pid'] == proc.pid, result
    assert proc.poll() is None


def test_unwritable_diagnostics_dir_fails_before_the_signal(run_main, target):
    result = run_main(graceful_stop.main, {'pid': target.pid, 'diagnostics_dir': '/proc/opsguard-no-such-dir/diag'})
    assert result['failed'] and not result['changed'] and result['signals'] == []
    assert 'cannot write diagnostics' in result['msg'] and 'nothing signalled' in result['msg']
    assert 'exception' not in result
    assert target.untouched()


# ------------------------------------------------------------ faults after the first signal


def test_unexpected_error_after_sigterm_reports_the_change(run_main, target, monkeypatch):
    def broken_wait(tracked, timeout, interval=0.02):
        raise RuntimeError('simulated fault while waiting')

    monkeypatch.setattr(stopping, 'wait_gone', broken_wait)
    result = run_main(graceful_stop.main, {'pid': target.pid, 'timeout': 5})
    assert result['failed'] and result['changed']
    assert [(s['signal'], s['pid']) for s in result['signals']] == [('SIGTERM', target.pid)]
    assert 'RuntimeError: simulated fault while waiting' in result['msg']
    assert 'the stop did not finish' in result['msg'] and 'SIGTERM to PID %d' % target.pid in result['msg']
    assert target.terms_received() == 1 and target.proc.poll() is None


def test_refusal_after_sigterm_reports_the_change(run_main, target, monkeypatch):
    real_send = stopping.Tracked.send

    def send(self, signum):
        if signum == 9:
            raise procfs.ProcessError('cannot send SIGKILL to PID %d: simulated' % self.ident.pid)
        return real_send(self, signum)

    monkeypatch.setattr(stopping.Tracked, 'send', send)
    result = run_main(graceful_stop.main, {'pid': target.pid, 'timeout': 0.2})
    assert result['failed'] and result['changed'] and result['outcome'] is None
    assert [s['signal'] for s in result['signals']] == ['SIGTERM']
    assert 'cannot send SIGKILL' in result['msg'] and 'signals sent before this: SIGTERM to PID %d' % target.pid in result['msg']
    assert target.terms_received() == 1 and target.proc.poll() is None


def test_error_after_the_stop_still_reports_it(run_main, procs, monkeypatch):
    def broken_release(ports, timeout, interval=0.05, proc='/proc'):
        raise OSError(24, 'Too many open files')

    monkeypatch.setattr(sockets, 'wait_port_released', broken_release)
    proc = procs([sys.executable, '-c', 'import socket, time\ns = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)\n'
                  'print(s.getsockname()[1], flush=True)\ntime.sleep(60)'], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    result = run_main(graceful_stop.main, {'port': port, 'timeout': 5})
    assert result['failed'] and result['changed']
    assert result['outcome'] == 'stopped_gracefully' and [s['signal'] for s in result['signals']] == ['SIGTERM']
    assert 'OSError' in result['msg'] and 'SIGTERM to PID %d' % proc.pid in result['msg']
    assert proc.wait(timeout=5) == -15


def test_identity_change_before_signal_is_not_a_change(run_main, target, monkeypatch):
    """A refusal between the checks and the signal sent nothing: changed stays false."""
    real = procfs.read_identity
    calls = []

    def flaky(pid, proc='/proc', need_tgid=False):
        ident = real(pid, proc, need_tgid)
        calls.append(pid)
        if ident is not None and pid == target.pid and len([c for c in calls if c == target.pid]) > 3:
            return procfs.Identity(ident.pid, ident.ppid, ident.start_ticks + 1, ident.exe, ident.name, ident.state)
        return ident

    monkeypatch.setattr(procfs, 'read_identity', flaky)
    result = run_main(graceful_stop.main, {'pid': target.pid, 'timeout': 0.2})
    assert result['failed'] and not result['changed'] and result['signals'] == []
    assert 'nothing signalled' in result['msg'] or 'not signalled' in result['msg']
    assert target.untouched()


def _show(props: dict) -> str:
    return ''.join('%s=%s\n' % item for item in props.items())


def test_systemd_path_failure_after_stop_reports_the_change(run_main, target, monkeypatch):
    """systemd_unit: `systemctl stop` was sent, then `systemctl kill` fails: changed=true and the stop is listed."""
    calls = []
    props = {'Id': 'site1.service', 'LoadState': 'loaded', 'ActiveState': 'active', 'SubState': 'running',
             'MainPID': str(target.pid), 'Restart': 'no', 'KillSignal': '15', 'KillMode': 'control-group', 'ControlGroup': ''}

    def systemctl(self, args):
        if args[0] == 'show':
            return 0, _show(props), ''
        calls.append(args)
        if args[0] == 'stop':
            os.kill(target.pid, 15)
            return 0, '', ''
        return 1, '', 'simulated'

    monkeypatch.setattr(graceful_stop.Stopper, 'systemctl', systemctl)
    result = run_main(graceful_stop.main, {'systemd_unit': 'site1.service', 'timeout': 0.2})
    assert result['failed'] and result['changed']
    assert [(s['signal'], s['via']) for s in result['signals']] == [('SIGTERM', 'systemd')]
    assert 'systemctl kill --signal=SIGKILL' in result['msg'] and 'failed (rc=1): simulated' in result['msg']
    assert 'signals sent before this: SIGTERM' in result['msg']
    assert [c[0] for c in calls] == ['stop', 'kill']
    deadline = time.monotonic() + 5
    while not target.terms() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert target.terms_received() == 1 and target.proc.poll() is None


@pytest.mark.parametrize('main_pid', ['', '0', 'abc', '-5', '99999999999', '1e3'])
def test_systemd_garbage_main_pid_refused(run_main, monkeypatch, main_pid):
    def systemctl(self, args):
        assert args[0] == 'show', args
        return 0, _show({'Id': 'site1.service', 'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': main_pid}), ''

    monkeypatch.setattr(graceful_stop.Stopper, 'systemctl', systemctl)
    result = run_main(graceful_stop.main, {'systemd_unit': 'site1.service'})
    assert result['failed'] and not result['changed'] and result['signals'] == []
    assert 'has no main PID' in result['msg'] or 'does not exist here' in result['msg']
