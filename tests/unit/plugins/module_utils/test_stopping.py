# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signalling and stopping (plugins/module_utils/stopping.py) of real processes spawned here."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import bounds, procfs, stopping
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.process_helpers import (
    SLEEP,
    alive,
    ready_process,
    started,
    term_recorder,
    terms,
    wait_for,
)


class TestSignals:
    @pytest.mark.parametrize('value,number', [('SIGTERM', 15), ('term', 15), ('15', 15), ('SIGKILL', 9), ('INT', 2)])
    def test_signal_number(self, value, number):
        assert stopping.signal_number(value) == number

    @pytest.mark.parametrize('value', ['SIGFOO', '0', '999', 'SIG_IGN', ''])
    def test_signal_number_bad(self, value):
        with pytest.raises(procfs.ProcessError):
            stopping.signal_number(value)

    @pytest.mark.parametrize('value', ['²', '١٥', '99999', '0', '-9', 'SIG_DFL', 'SIGNALS', 'NSIG', 'SIG\0TERM', '1' * 5000])
    def test_signal_number_hostile(self, value):
        with pytest.raises(procfs.ProcessError, match='unknown signal'):
            stopping.signal_number(value)


@pytest.mark.parametrize('use_pidfd', [True, False], ids=['pidfd', 'kill'])
class TestStop:
    def test_graceful(self, procs, use_pidfd):
        proc = ready_process(procs, '''
            import os, signal, time
            def on_term(*a):
                time.sleep(0.5)
                os._exit(0)
            signal.signal(signal.SIGTERM, on_term)
            print('READY', flush=True)
            time.sleep(60)
        ''')
        ident = procfs.read_identity(proc.pid)
        report = stopping.stop_processes([ident], signal.SIGTERM, 10, True, use_pidfd=use_pidfd)
        assert report['outcome'] == 'stopped_gracefully'
        assert [s['signal'] for s in report['signals']] == ['SIGTERM']
        assert report['signals'][0]['via'] == ('pidfd' if use_pidfd else 'kill')
        assert report['rss_freed_bytes'] > 0
        assert proc.wait(timeout=5) == 0

    def test_term_ignored_is_forced(self, procs, use_pidfd):
        proc = ready_process(procs, '''
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print('READY', flush=True)
            time.sleep(60)
        ''')
        ident = procfs.read_identity(proc.pid)
        report = stopping.stop_processes([ident], signal.SIGTERM, 0.5, True, use_pidfd=use_pidfd)
        assert report['outcome'] == 'stopped_forced'
        assert [s['signal'] for s in report['signals']] == ['SIGTERM', 'SIGKILL']
        assert proc.wait(timeout=5) == -signal.SIGKILL

    def test_term_ignored_without_escalation_survives(self, procs, use_pidfd):
        proc = ready_process(procs, '''
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print('READY', flush=True)
            time.sleep(60)
        ''')
        report = stopping.stop_processes([procfs.read_identity(proc.pid)], signal.SIGTERM, 0.2, False, use_pidfd=use_pidfd)
        assert [s['pid'] for s in report['survivors']] == [proc.pid]
        assert proc.poll() is None

    def test_whole_tree_is_gone(self, procs, use_pidfd):
        parent = ready_process(procs, '''
            import subprocess, sys, time
            code = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)'
            kids = [subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE) for i in range(3)]
            for k in kids:
                k.stdout.readline()
            print('READY', flush=True)
            time.sleep(60)
        ''')
        members = procfs.snapshot_tree(procfs.read_identity(parent.pid), True)
        assert len(members) == 4
        report = stopping.stop_processes(members, signal.SIGTERM, 0.5, True, use_pidfd=use_pidfd)
        parent.wait(timeout=5)
        wait_for(lambda: not any(alive(m.pid) for m in members))
        assert report['outcome'] == 'stopped_forced'
        assert sorted(s['pid'] for s in report['signals'] if s['signal'] == 'SIGKILL') == sorted(m.pid for m in members[1:])

    def test_child_born_during_shutdown_is_killed_too(self, procs, use_pidfd):
        parent = ready_process(procs, """
            import signal, subprocess, sys, time
            born = []
            code = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'
            def on_term(*a):
                born.append(subprocess.Popen([sys.executable, '-c', code]))
            signal.signal(signal.SIGTERM, on_term)
            print('READY', flush=True)
            while True:
                time.sleep(60)
        """)
        members = procfs.snapshot_tree(procfs.read_identity(parent.pid), True)
        assert len(members) == 1
        report = stopping.stop_processes(members, signal.SIGTERM, 1.0, True, use_pidfd=use_pidfd)
        parent.wait(timeout=5)
        assert report['outcome'] == 'stopped_forced'
        assert len(report['pids']) == 2, report
        late = report['pids'][1]
        assert {'SIGKILL'} == set(s['signal'] for s in report['signals'] if s['pid'] == late)
        wait_for(lambda: not alive(late))

    def test_unproven_identity_is_never_signalled(self, procs, use_pidfd):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        impostor = procfs.Identity(ident.pid, ident.ppid, ident.start_ticks + 1, ident.exe, ident.name, 'S')
        report = stopping.stop_processes([impostor], signal.SIGKILL, 0.2, True, use_pidfd=use_pidfd)
        assert report['outcome'] == 'already_stopped'
        assert report['signals'] == []
        assert proc.poll() is None and alive(proc.pid)


class TestStopBounded:
    @pytest.mark.parametrize('kwargs', [{'timeout': 1e10}, {'timeout': float('inf')}, {'timeout': float('nan')},
                                        {'kill_timeout': float('nan')}, {'kill_timeout': 1e10}, {'timeout': -1}])
    def test_absurd_wait_refused_before_sigterm(self, procs, tmp_path, kwargs):
        """Item 2: timeout=1e10/inf overflowed select() after SIGTERM; nan sent SIGKILL at once."""
        record = str(tmp_path / 'terms')
        proc = term_recorder(procs, record)
        args = dict({'timeout': 0.2, 'kill_timeout': 5}, **kwargs)
        with pytest.raises(procfs.ProcessError, match='must be a number of seconds'):
            stopping.stop_processes([procfs.read_identity(proc.pid)], signal.SIGTERM, args['timeout'], True, args['kill_timeout'])
        assert proc.poll() is None and terms(record) == 0

    def test_longest_wait_does_not_overflow(self, procs):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        tracked = [stopping.Tracked(ident)]
        os.kill(proc.pid, signal.SIGTERM)
        assert stopping.wait_gone(tracked, bounds.MAX_WAIT_SECONDS) == []
        proc.wait(timeout=5)

    def test_signals_known_after_a_fault(self, procs, tmp_path, monkeypatch):
        record = str(tmp_path / 'terms')
        proc = term_recorder(procs, record)

        def broken(*args, **kwargs):
            raise RuntimeError('fault')

        monkeypatch.setattr(stopping, 'wait_gone', broken)
        sent = []
        with pytest.raises(RuntimeError):
            stopping.stop_processes([procfs.read_identity(proc.pid)], signal.SIGTERM, 1, True, signals=sent)
        assert [(s['pid'], s['signal']) for s in sent] == [(proc.pid, 'SIGTERM')]
        wait_for(lambda: terms(record) == 1)


# ---------------------------------------------------------------- the systemd path, with systemctl played by the test


class FakeSystemctl:
    """Plays ``systemctl`` for one unit whose main process is a real process of this test.

    ``stop`` sends SIGTERM to it (like KillSignal=15), ``kill --signal=SIGKILL`` sends SIGKILL; ``show`` reports the unit
    active while the process runs. ``fail`` names the first argument of a call that answers rc=1.
    """

    def __init__(self, proc: subprocess.Popen, load_state: str = 'loaded', control_group: str = '', fail: str = '') -> None:
        self.proc = proc
        self.load_state = load_state
        self.control_group = control_group
        self.fail = fail
        self.calls: list = []
        self.main_pid = proc.pid

    def __call__(self, args: list) -> tuple:
        self.calls.append(list(args))
        if args[0] == self.fail:
            return 1, '', 'Failed to %s: simulated' % args[0]
        if args[0] == 'show':
            if '--value' in args:
                return 0, 'on-failure\n', ''
            running = self.proc.poll() is None
            props = {'Id': 'site1.service', 'LoadState': self.load_state, 'ActiveState': 'active' if running else 'inactive',
                     'SubState': 'running' if running else 'dead', 'MainPID': str(self.main_pid if running else 0),
                     'Restart': 'on-failure', 'KillSignal': '15', 'KillMode': 'control-group', 'ControlGroup': self.control_group,
                     'Result': 'success', 'ExecMainCode': '1', 'ExecMainStatus': '0'}
            return 0, ''.join('%s=%s\n' % item for item in props.items()), ''
        if args[0] == 'stop':
            os.kill(self.proc.pid, signal.SIGTERM)
            return 0, '', ''
        if args[0] == 'kill':
            os.kill(self.proc.pid, signal.SIGKILL)
            return 0, '', ''
        raise AssertionError('unexpected systemctl call %r' % (args,))


class RestartingSystemctl(FakeSystemctl):
    """The unit's process was killed and systemd waits RestartSec before it starts again: the first ``restarting``
    answers of ``show`` are SubState=auto-restart without a main PID, then the unit runs ``proc``."""

    def __init__(self, proc: subprocess.Popen, restarting: int) -> None:
        super().__init__(proc)
        self.restarting = restarting

    def __call__(self, args: list) -> tuple:
        if args[0] == 'show' and '--value' not in args and self.restarting > 0:
            self.restarting -= 1
            self.calls.append(list(args))
            return 0, ('Id=site1.service\nLoadState=loaded\nActiveState=activating\nSubState=auto-restart\nMainPID=0\n'
                       'Restart=on-failure\nKillSignal=15\nControlGroup=\n'), ''
        return super().__call__(args)


IGNORES_TERM = '''
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print('READY', flush=True)
    time.sleep(60)
'''


class TestSystemd:
    def test_show_parses_the_properties_and_restart_of_reads_one(self, procs):
        proc = procs([SLEEP, '30'])
        started(proc)
        systemctl = FakeSystemctl(proc)
        unit = stopping.Systemd(systemctl).show('site1.service')
        assert unit['Id'] == 'site1.service' and unit['MainPID'] == str(proc.pid) and unit['KillSignal'] == '15'
        assert systemctl.calls[0][:2] == ['show', '--property=' + ','.join(stopping.UNIT_PROPERTIES)]
        assert systemctl.calls[0][-2:] == ['--', 'site1.service']
        assert stopping.Systemd(systemctl).restart_of('site1.service') == 'on-failure'
        assert stopping.Systemd(FakeSystemctl(proc, fail='show')).restart_of('site1.service') is None

    def test_resolve_a_running_unit_proves_its_main_process_and_lists_its_cgroup(self, procs, tmp_path):
        proc = procs([SLEEP, '30'])
        other = procs([SLEEP, '31'])
        started(proc)
        started(other)
        (tmp_path / 'system.slice' / 'site1.service').mkdir(parents=True)
        (tmp_path / 'system.slice' / 'site1.service' / 'cgroup.procs').write_text('%d\n%d\n' % (proc.pid, other.pid))
        systemd = stopping.Systemd(FakeSystemctl(proc, control_group='/system.slice/site1.service'), cgroup_roots=(str(tmp_path),))
        found = systemd.resolve('site1.service', exe=os.path.realpath(SLEEP), name='sleep')
        assert found['identity'].pid == proc.pid
        assert [m.pid for m in found['members']] == [proc.pid, other.pid]
        assert found['target'].startswith('systemd unit site1.service (active) has main PID %d' % proc.pid)
        with pytest.raises(procfs.ProcessError, match='does not match: its executable is'):
            systemd.resolve('site1.service', exe='/opt/anqicms/site1/anqicms')
        assert proc.poll() is None and other.poll() is None

    def test_resolve_a_stopped_unit_and_refuse_an_unknown_one(self, procs):
        proc = procs([SLEEP, '0'])
        proc.wait()
        found = stopping.Systemd(FakeSystemctl(proc)).resolve('site1.service')
        assert found['identity'] is None and found['members'] is None
        assert found['target'] == 'systemd unit site1.service is inactive'
        with pytest.raises(procfs.ProcessError, match='cannot be used .LoadState=not-found.'):
            stopping.Systemd(FakeSystemctl(proc, load_state='not-found')).resolve('site1.service')

    def test_a_unit_waiting_to_restart_is_given_time_and_its_new_process_proven(self, procs):
        # The kernel killed the main process and systemd restarts the unit after RestartSec: nothing to stop yet, and
        # nothing is done to the unit (a stop now could meet a process started a moment later, unproven).
        proc = procs([SLEEP, '30'])
        started(proc)
        systemctl = RestartingSystemctl(proc, restarting=3)
        found = stopping.Systemd(systemctl).resolve('site1.service', exe=os.path.realpath(SLEEP), restart_wait=10)
        assert found['identity'].pid == proc.pid
        assert 'after systemd restarted it' in found['target']
        assert [c[0] for c in systemctl.calls] == ['show'] * 4
        with pytest.raises(procfs.ProcessError, match='waiting to restart after its process ended .SubState=auto-restart.'):
            stopping.Systemd(RestartingSystemctl(proc, restarting=1000)).resolve('site1.service', restart_wait=0.5)
        with pytest.raises(procfs.ProcessError, match='waiting to restart'):
            stopping.Systemd(RestartingSystemctl(proc, restarting=1)).resolve('site1.service')  # no wait given
        assert proc.poll() is None

    def test_stop_through_systemd(self, procs):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        systemctl = FakeSystemctl(proc)
        systemd = stopping.Systemd(systemctl, poll=0.01)
        found = systemd.resolve('site1.service')
        signals: list = []
        report = systemd.stop(ident, found['members'], found['unit'], 5, True, 5, signals)
        assert report['outcome'] == 'stopped_gracefully' and report['survivors'] == []
        assert [(s['pid'], s['signal'], s['via']) for s in signals] == [(proc.pid, 'SIGTERM', 'systemd')]
        assert report['unit_after']['ActiveState'] == 'inactive'
        assert [c[0] for c in systemctl.calls] == ['show', 'show', 'stop', 'show']
        assert systemctl.calls[2] == ['stop', '--no-block', '--', 'site1.service']
        assert proc.wait(timeout=5) == -signal.SIGTERM

    def test_a_unit_that_ignores_its_kill_signal_is_killed_only_with_escalation(self, procs):
        proc = ready_process(procs, IGNORES_TERM)
        ident = procfs.read_identity(proc.pid)
        systemctl = FakeSystemctl(proc)
        systemd = stopping.Systemd(systemctl, poll=0.01)
        found = systemd.resolve('site1.service')
        signals: list = []
        report = systemd.stop(ident, found['members'], found['unit'], 0.3, False, 5, signals)
        assert report['outcome'] is None and [s['pid'] for s in report['survivors']] == [proc.pid]
        assert 'kill' not in [c[0] for c in systemctl.calls] and proc.poll() is None
        signals = []
        report = systemd.stop(ident, found['members'], found['unit'], 0.3, True, 5, signals)
        assert report['outcome'] == 'stopped_forced'
        assert [s['signal'] for s in signals] == ['SIGTERM', 'SIGKILL']
        assert systemctl.calls[-2][:2] == ['kill', '--signal=SIGKILL']
        assert proc.wait(timeout=5) == -signal.SIGKILL

    def test_a_failing_systemctl_is_a_refusal_that_names_the_command(self, procs):
        proc = ready_process(procs, IGNORES_TERM)
        ident = procfs.read_identity(proc.pid)
        systemd = stopping.Systemd(FakeSystemctl(proc, fail='kill'), poll=0.01)
        found = systemd.resolve('site1.service')
        signals: list = []
        with pytest.raises(procfs.ProcessError, match=r'systemctl kill --signal=SIGKILL -- site1.service failed \(rc=1\): Failed to kill'):
            systemd.stop(ident, found['members'], found['unit'], 0.2, True, 5, signals)
        assert [s['signal'] for s in signals] == ['SIGTERM']  # what was done is known to the caller

    def test_a_main_pid_that_changed_between_checks_stops_nothing(self, procs):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        systemctl = FakeSystemctl(proc)
        systemd = stopping.Systemd(systemctl)
        found = systemd.resolve('site1.service')
        systemctl.main_pid = proc.pid + 100000
        signals: list = []
        with pytest.raises(procfs.ProcessError, match='changed its main PID'):
            systemd.stop(ident, found['members'], found['unit'], 1, True, 1, signals)
        assert signals == [] and 'stop' not in [c[0] for c in systemctl.calls] and proc.poll() is None
