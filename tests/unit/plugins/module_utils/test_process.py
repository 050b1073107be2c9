# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Identity logic of plugins/module_utils/process.py, exercised on real processes spawned here.

Fixture files are used only for parsing (/proc/PID/stat, /proc/net/tcp{,6}, crontabs).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import process as P

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'process')
SLEEP = shutil.which('sleep') or '/bin/sleep'


def fixture(*parts: str) -> str:
    return os.path.join(FIXTURES, *parts)


def read_fixture(*parts: str) -> str:
    with open(fixture(*parts)) as f:
        return f.read()


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError('condition not reached within %s s' % timeout)


def started(proc: subprocess.Popen, exe: str = SLEEP):
    """Identity of proc once it has exec'd exe (before that /proc shows the forked parent)."""
    real = os.path.realpath(exe)

    def execd():
        ident = P.read_identity(proc.pid)
        return ident if ident and ident.exe == real and P.read_cmdline(proc.pid) else None

    return wait_for(execd)


def ready_process(spawn, code: str, binary: str | None = None) -> subprocess.Popen:
    """Start a python process that prints READY once its set-up (signal handlers, sockets) is done."""
    proc = spawn([binary or sys.executable, '-c', textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith('READY'), line
    return proc


def alive(pid: int) -> bool:
    return P.read_identity(pid) is not None


LISTENER = '''
import signal, socket, sys, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)
print('READY', s.getsockname()[1], flush=True)
held = []
while True:
    c, a = s.accept(); held.append(c)
'''


# ---------------------------------------------------------------- parsing (fixtures)


class TestParsing:
    def test_stat_plain(self):
        stat = P.parse_stat(read_fixture('stat_plain'))
        assert stat['comm'] == 'python3'
        assert stat['ppid'] == 10742
        assert stat['start_ticks'] == 57683

    def test_stat_comm_with_spaces_and_parentheses(self):
        stat = P.parse_stat(read_fixture('stat_weird_comm'))
        assert stat['comm'] == 'an) qi (cms)'
        assert stat['state'] == 'R'
        assert stat['ppid'] == 10742
        assert stat['start_ticks'] == 57683

    @pytest.mark.parametrize('text', ['', 'garbage', '12 (x) S 1 2'])
    def test_stat_garbage(self, text):
        with pytest.raises(ValueError):
            P.parse_stat(text)

    def test_net_tcp6_addresses(self):
        entries = P.parse_net_tcp(read_fixture('net_tcp6'))
        listen = [e for e in entries if e['state'] == P.TCP_LISTEN]
        assert [(e['local'], e['local_port'], e['inode']) for e in listen] == [('::', 18555, 19240)]
        locals_ = sorted(e['local'] for e in entries if e['state'] == P.TCP_ESTABLISHED and e['local_port'] == 18555)
        assert locals_ == ['127.0.0.1', '::1']

    def test_net_tcp4_addresses(self):
        entries = P.parse_net_tcp(read_fixture('net_tcp'))
        assert P.listener_inodes(entries, 18556) == {19241}
        assert entries[0]['local'] == '127.0.0.1'

    def test_client_connections_count_server_side_only(self):
        entries = P.parse_net_tcp(read_fixture('net_tcp')) + P.parse_net_tcp(read_fixture('net_tcp6'))
        assert sorted(e['inode'] for e in P.client_connections(entries, [18555])) == [19243, 19247]
        assert [e['inode'] for e in P.client_connections(entries, [18556])] == [19245]
        assert P.client_connections(entries, [18557]) == []
        # Restricted to the owner's sockets: a foreign socket on the port is left out.
        assert [e['inode'] for e in P.client_connections(entries, [18555], {19243})] == [19243]

    def test_listening_ports(self):
        entries = P.parse_net_tcp(read_fixture('net_tcp')) + P.parse_net_tcp(read_fixture('net_tcp6'))
        assert P.listening_ports(entries, {19240, 19241, 19243}) == [18555, 18556]
        assert P.listening_ports(entries, {19243}) == []

    def test_cron_watchdogs(self):
        files = (fixture('cron', 'crontab'), fixture('cron', 'cron.d', 'anqicms'), fixture('cron', 'crontabs', 'root'))
        found = P.cron_watchdogs('/opt/anqicms/site1', '/opt/anqicms/site1/anqicms', files)
        got = [(os.path.basename(w['file']), w['line_number']) for w in found]
        assert got == [('crontab', 5), ('anqicms', 5), ('root', 2)]
        assert all(w['type'] == 'cron' for w in found)
        other = P.cron_watchdogs('/opt/anqicms/site2', '/opt/anqicms/site2/anqicms', files)
        assert [(os.path.basename(w['file']), w['line_number']) for w in other] == [('anqicms', 3)]
        assert P.cron_watchdogs('/opt/anqicms/site3', '/opt/anqicms/site3/anqicms', files) == []

    @pytest.mark.parametrize('value,number', [('SIGTERM', 15), ('term', 15), ('15', 15), ('SIGKILL', 9), ('INT', 2)])
    def test_signal_number(self, value, number):
        assert P.signal_number(value) == number

    @pytest.mark.parametrize('value', ['SIGFOO', '0', '999', 'SIG_IGN', ''])
    def test_signal_number_bad(self, value):
        with pytest.raises(P.ProcessError):
            P.signal_number(value)

    def test_pidfile_reading(self, tmp_path):
        assert P.read_pidfile(str(tmp_path / 'missing.pid')) == (None, None)
        good = tmp_path / 'good.pid'
        good.write_text('4242\n')
        assert P.read_pidfile(str(good))[0] == 4242
        for content in ('', 'abc', '-5', '0', '12abc'):
            bad = tmp_path / 'bad.pid'
            bad.write_text(content)
            with pytest.raises(P.ProcessError, match='does not hold a PID'):
                P.read_pidfile(str(bad))


# ---------------------------------------------------------------- identity on real processes


class TestIdentity:
    def test_identity_of_real_process(self, procs):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        assert ident.exe == os.path.realpath(SLEEP)
        assert ident.ppid == os.getpid()
        assert ident.same(P.read_identity(proc.pid))
        assert P.read_cmdline(proc.pid) == [SLEEP, '30']
        assert abs(ident.start_epoch() - time.time()) < 60

    def test_zombie_and_gone_are_not_running(self, procs):
        proc = procs([SLEEP, '30'])
        started(proc)
        proc.kill()
        wait_for(lambda: P.read_identity(proc.pid) is None)  # zombie until reaped
        proc.wait()
        assert P.read_identity(proc.pid) is None

    def test_reused_pid_is_a_different_identity(self, procs):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        earlier = P.Identity(ident.pid, ident.ppid, ident.start_ticks - 1, ident.exe, ident.name, 'S')
        other_exe = P.Identity(ident.pid, ident.ppid, ident.start_ticks, '/usr/bin/other', ident.name, 'S')
        assert not earlier.same(ident)
        assert not other_exe.same(ident)

    def test_descendants_and_roots(self, procs):
        parent = ready_process(procs, '''
            import subprocess, sys
            kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']) for i in range(2)]
            print('READY', flush=True)
            import time; time.sleep(60)
        ''')
        table = P.scan_processes()
        kids = P.descendants(parent.pid, table)
        try:
            assert len(kids) == 2 and all(k.ppid == parent.pid for k in kids)
            assert P.reduce_to_roots([parent.pid] + [k.pid for k in kids], table) == [parent.pid]
            unrelated = procs([SLEEP, '30'])
            started(unrelated)
            table = P.scan_processes()
            assert P.reduce_to_roots([parent.pid, kids[0].pid, unrelated.pid], table) == sorted([parent.pid, unrelated.pid])
        finally:
            for kid in kids:  # the grandchildren are ours (children of our child): do not leave them behind
                if kid.ppid == parent.pid:
                    os.kill(kid.pid, signal.SIGKILL)


# ---------------------------------------------------------------- target resolution


@pytest.fixture
def two_binaries(tmp_path):
    """Two instance directories, each with its own copy of sleep named anqicms."""
    paths = []
    for name in ('site1', 'site2'):
        d = tmp_path / name
        d.mkdir()
        shutil.copy(SLEEP, str(d / 'anqicms'))
        paths.append(str(d / 'anqicms'))
    return paths


class TestResolve:
    def test_pid_that_matches(self, procs):
        proc = procs([SLEEP, '30'])
        started(proc)
        found = P.resolve_target(pid=proc.pid, exe=os.path.realpath(SLEEP), name='sleep', cmdline_pattern=r'^\S+ 30$')
        assert found['running'] and found['identity'].pid == proc.pid

    @pytest.mark.parametrize('constraint,expected', [
        ({'exe': '/opt/anqicms/anqicms'}, 'its executable is'),
        ({'name': 'anqicms'}, 'its name is'),
        ({'cmdline_pattern': '-port 8001'}, 'does not match'),
    ])
    def test_pid_of_another_program_is_refused(self, procs, constraint, expected):
        proc = procs([SLEEP, '30'])
        started(proc)
        with pytest.raises(P.ProcessError, match=expected):
            P.resolve_target(pid=proc.pid, **constraint)
        assert proc.poll() is None

    def test_missing_pid_is_stopped(self, procs):
        proc = procs([SLEEP, '0'])
        proc.wait()
        found = P.resolve_target(pid=proc.pid)
        assert found == {'running': False, 'identity': None, 'reason': 'PID %d is not running' % proc.pid}

    def test_protected_pids_refused(self):
        for pid in (1, os.getpid(), os.getppid()):
            with pytest.raises(P.ProcessError, match='refused'):
                P.resolve_target(pid=pid)

    def test_thread_id_refused(self, procs):
        proc = ready_process(procs, '''
            import threading, time
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            print('READY', flush=True)
            time.sleep(60)
        ''')
        tids = [int(t) for t in os.listdir('/proc/%d/task' % proc.pid) if int(t) != proc.pid]
        assert tids
        with pytest.raises(P.ProcessError, match='is a thread of PID %d' % proc.pid):
            P.resolve_target(pid=tids[0])

    def test_pidfile_missing_is_stopped(self, tmp_path):
        found = P.resolve_target(pidfile=str(tmp_path / 'none.pid'))
        assert not found['running'] and 'does not exist' in found['reason']

    def test_stale_pidfile_is_stopped(self, procs, tmp_path, two_binaries):
        proc = procs([two_binaries[0], '0'])
        proc.wait()
        pidfile = tmp_path / 'stale.pid'
        pidfile.write_text('%d\n' % proc.pid)
        found = P.resolve_target(pidfile=str(pidfile), exe=two_binaries[0])
        assert not found['running'] and 'stale pidfile' in found['reason']

    def test_stale_pidfile_while_described_process_runs_elsewhere(self, procs, tmp_path, two_binaries):
        dead = procs([SLEEP, '0'])
        dead.wait()
        running = procs([two_binaries[0], '30'])
        started(running, two_binaries[0])
        pidfile = tmp_path / 'stale.pid'
        pidfile.write_text('%d\n' % dead.pid)
        with pytest.raises(P.ProcessError, match='is running: the target description does not fit'):
            P.resolve_target(pidfile=str(pidfile), exe=two_binaries[0])
        assert running.poll() is None

    def test_pidfile_pointing_at_other_instance_refused(self, procs, tmp_path, two_binaries):
        other = procs([two_binaries[1], '30'])
        started(other, two_binaries[1])
        pidfile = tmp_path / 'site1.pid'
        pidfile.write_text('%d\n' % other.pid)
        with pytest.raises(P.ProcessError, match='stale pidfile or reused PID'):
            P.resolve_target(pidfile=str(pidfile), exe=two_binaries[0])
        assert other.poll() is None

    def test_bare_pidfile_older_than_process_refused(self, procs, tmp_path):
        proc = procs([SLEEP, '30'])
        started(proc)
        pidfile = tmp_path / 'old.pid'
        pidfile.write_text('%d\n' % proc.pid)
        old = time.time() - 3600
        os.utime(str(pidfile), (old, old))
        with pytest.raises(P.ProcessError, match='PID\\s+was reused|was reused'):
            P.resolve_target(pidfile=str(pidfile))
        assert proc.poll() is None

    def test_bare_pidfile_written_after_start_accepted(self, procs, tmp_path):
        proc = procs([SLEEP, '30'])
        started(proc)
        pidfile = tmp_path / 'fresh.pid'
        pidfile.write_text('%d\n' % proc.pid)
        assert P.resolve_target(pidfile=str(pidfile))['identity'].pid == proc.pid

    def test_exe_picks_one_instance_among_two(self, procs, two_binaries):
        one = procs([two_binaries[0], '30'])
        two = procs([two_binaries[1], '30'])
        started(one, two_binaries[0])
        started(two, two_binaries[1])
        assert P.resolve_target(exe=two_binaries[0])['identity'].pid == one.pid
        assert P.resolve_target(exe=two_binaries[1])['identity'].pid == two.pid

    def test_exe_with_several_unrelated_processes_refused(self, procs, two_binaries):
        first = procs([two_binaries[0], '30'])
        second = procs([two_binaries[0], '31'])
        started(first, two_binaries[0])
        started(second, two_binaries[0])
        with pytest.raises(P.ProcessError, match='2 unrelated processes run'):
            P.resolve_target(exe=two_binaries[0])
        # A cmdline_pattern tells them apart.
        assert P.resolve_target(exe=two_binaries[0], cmdline_pattern=r' 31$')['identity'].pid == second.pid

    def test_exe_not_running_is_stopped(self, two_binaries):
        found = P.resolve_target(exe=two_binaries[0])
        assert not found['running'] and 'no process runs' in found['reason']

    def test_port(self, procs):
        proc = ready_process(procs, LISTENER)
        ident = P.read_identity(proc.pid)
        entries = P.read_tcp(proc.pid)
        port = P.listening_ports(entries, P.socket_inodes(proc.pid))[0]
        found = P.resolve_target(port=port, exe=ident.exe)
        assert found['identity'].pid == proc.pid
        with pytest.raises(P.ProcessError, match='its executable is'):
            P.resolve_target(port=port, exe='/opt/anqicms/site1/anqicms')

    def test_port_without_listener_is_stopped(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        assert not P.resolve_target(port=port)['running']


# ---------------------------------------------------------------- stopping


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
        ident = P.read_identity(proc.pid)
        report = P.stop_processes([ident], signal.SIGTERM, 10, True, use_pidfd=use_pidfd)
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
        ident = P.read_identity(proc.pid)
        report = P.stop_processes([ident], signal.SIGTERM, 0.5, True, use_pidfd=use_pidfd)
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
        report = P.stop_processes([P.read_identity(proc.pid)], signal.SIGTERM, 0.2, False, use_pidfd=use_pidfd)
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
        members = P.snapshot_tree(P.read_identity(parent.pid), True)
        assert len(members) == 4
        report = P.stop_processes(members, signal.SIGTERM, 0.5, True, use_pidfd=use_pidfd)
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
        members = P.snapshot_tree(P.read_identity(parent.pid), True)
        assert len(members) == 1
        report = P.stop_processes(members, signal.SIGTERM, 1.0, True, use_pidfd=use_pidfd)
        parent.wait(timeout=5)
        assert report['outcome'] == 'stopped_forced'
        assert len(report['pids']) == 2, report
        late = report['pids'][1]
        assert {'SIGKILL'} == set(s['signal'] for s in report['signals'] if s['pid'] == late)
        wait_for(lambda: not alive(late))

    def test_unproven_identity_is_never_signalled(self, procs, use_pidfd):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        impostor = P.Identity(ident.pid, ident.ppid, ident.start_ticks + 1, ident.exe, ident.name, 'S')
        report = P.stop_processes([impostor], signal.SIGKILL, 0.2, True, use_pidfd=use_pidfd)
        assert report['outcome'] == 'already_stopped'
        assert report['signals'] == []
        assert proc.poll() is None and alive(proc.pid)


# ---------------------------------------------------------------- drain and diagnostics


def test_drain_counts_established_connections(procs):
    proc = ready_process(procs, LISTENER)
    port = P.listening_ports(P.read_tcp(proc.pid), P.socket_inodes(proc.pid))[0]
    clients = [socket.create_connection(('127.0.0.1', port)) for dummy in range(2)]
    try:
        wait_for(lambda: len(P.client_connections(P.read_tcp(proc.pid), [port])) == 2)
        report = P.wait_drained(proc.pid, [port], 0.3, interval=0.05)
        assert report['connections_at_start'] == 2 and report['connections_left'] == 2 and report['timed_out']
    finally:
        for c in clients:
            c.close()
    report = P.wait_drained(proc.pid, [port], 5, interval=0.05)
    assert report['connections_left'] == 0 and not report['timed_out']


def test_port_released_after_stop(procs):
    proc = ready_process(procs, LISTENER)
    port = P.listening_ports(P.read_tcp(proc.pid), P.socket_inodes(proc.pid))[0]
    assert not P.wait_port_released([port], 0)
    P.stop_processes([P.read_identity(proc.pid)], signal.SIGTERM, 5, True)
    proc.wait(timeout=5)
    assert P.wait_port_released([port], 2)


def test_diagnostics_content(procs, tmp_path):
    proc = ready_process(procs, LISTENER)
    ident = P.read_identity(proc.pid)
    data = P.collect_diagnostics(ident, [ident])
    assert data['identity']['pid'] == proc.pid
    assert data['cmdline'][0] == sys.executable
    assert 'VmRSS' in data['status'] and 'Rss' in data['smaps_rollup']
    assert any(f['target'].startswith('socket:[') for f in data['fds'])
    assert any(c['state'] == P.TCP_LISTEN for c in data['connections'])
    assert data['threads'][0]['tid'] == proc.pid
    assert 'environ' not in data and 'environ' not in str(sorted(data))
    path = P.write_json_private(str(tmp_path / 'diag'), 'x.json', data)
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'
    assert oct(os.stat(str(tmp_path / 'diag')).st_mode & 0o777) == '0o700'


def test_netlink_and_proc_tables_agree(procs):
    proc = ready_process(procs, LISTENER)
    inodes = P.socket_inodes(proc.pid)
    port = P.listening_ports(P.read_tcp(proc.pid), inodes)[0]
    client = socket.create_connection(('127.0.0.1', port))
    try:
        wait_for(lambda: P.client_connections(P.read_tcp(proc.pid, state=P.TCP_ESTABLISHED, ports={port}), [port]))
        for state in (P.TCP_LISTEN, P.TCP_ESTABLISHED):
            via_netlink = sorted((e['local'], e['local_port'], e['state'], e['inode']) for e in P.tcp_table(state, proc.pid, {port}))
            via_proc = sorted((e['local'], e['local_port'], e['state'], e['inode']) for e in P.read_tcp(proc.pid, state=state, ports={port}))
            assert via_netlink == via_proc and via_netlink
    finally:
        client.close()


def test_drain_counts_connections_not_yet_accepted(procs):
    proc = ready_process(procs, '''
        import socket, time
        s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)
        print('READY', flush=True)
        time.sleep(60)
    ''')
    port = P.listening_ports(P.read_tcp(proc.pid), P.socket_inodes(proc.pid))[0]
    client = socket.create_connection(('127.0.0.1', port))
    try:
        report = P.wait_drained(proc.pid, [port], 0.2, interval=0.05)
        assert report['connections_at_start'] == 1 and report['connections_left'] == 1
    finally:
        client.close()


# ---------------------------------------------------------------- bounds and untrusted input (issue 11)


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


class TestBounds:
    @pytest.mark.parametrize('value', [float('nan'), float('inf'), float('-inf'), 1e10, 1e308, -1, -1e-9, 86400.001, True, None, 'x'])
    def test_duration_refused(self, value):
        with pytest.raises(P.ProcessError, match='drain_timeout must be a number of seconds from 0 to 86400'):
            P.check_duration(value, 'drain_timeout')

    @pytest.mark.parametrize('value', [0, 0.0, 0.5, 86400, '7'])
    def test_duration_accepted(self, value):
        assert P.check_duration(value) == float(value)

    @pytest.mark.parametrize('value', [0, -1, 65536, 70000, 2 ** 64, True, None])
    def test_port_refused(self, value):
        with pytest.raises(P.ProcessError, match='port must be a TCP port between 1 and 65535'):
            P.check_port(value)

    @pytest.mark.parametrize('value', [0, -1, PID_MAX, 2 ** 40, 2 ** 64, True, None])
    def test_pid_refused(self, value):
        with pytest.raises(P.ProcessError, match='pid must be a process ID between 1 and %d' % (PID_MAX - 1)):
            P.check_pid(value)

    def test_pid_max_from_garbage(self, tmp_path):
        (tmp_path / 'sys' / 'kernel').mkdir(parents=True)
        for content, expected in (('32768\n', 32768), ('', P.PID_MAX_LIMIT), ('9' * 50, P.PID_MAX_LIMIT), ('-5', P.PID_MAX_LIMIT),
                                  ('99999999', P.PID_MAX_LIMIT), ('\xff', P.PID_MAX_LIMIT)):
            (tmp_path / 'sys' / 'kernel' / 'pid_max').write_text(content)
            assert P.pid_max(str(tmp_path)) == expected
        (tmp_path / 'sys' / 'kernel' / 'pid_max').unlink()
        assert P.pid_max(str(tmp_path)) == P.PID_MAX_LIMIT

    @pytest.mark.parametrize('pattern', ['(', '[z-a]', '*', 'a{2,1}', '(' * 1500 + ')' * 1500, 'x' * 5000, ''])
    def test_bad_pattern(self, pattern):
        with pytest.raises(P.ProcessError, match='cmdline_pattern'):
            P.compile_pattern(pattern)

    @pytest.mark.parametrize('value', ['²', '١٥', '99999', '0', '-9', 'SIG_DFL', 'SIGNALS', 'NSIG', 'SIG\0TERM', '1' * 5000])
    def test_signal_number_hostile(self, value):
        with pytest.raises(P.ProcessError, match='unknown signal'):
            P.signal_number(value)

    @pytest.mark.parametrize('kwargs,expected', [
        ({'port': 0}, 'port must be a TCP port'),
        ({'port': 70000}, 'port must be a TCP port'),
        ({'pid': 2 ** 40}, 'pid must be a process ID'),
        ({'pid': 0}, 'pid must be a process ID'),
        ({'pid': 12345, 'cmdline_pattern': '('}, 'not a valid Python regular expression'),
        ({'pid': 12345, 'name': ''}, 'name must be a non-empty string'),
        ({'exe': 'relative/anqicms'}, 'exe must be an absolute path'),
    ])
    def test_resolve_refuses_instead_of_already_stopped(self, kwargs, expected):
        with pytest.raises(P.ProcessError, match=expected):
            P.resolve_target(**kwargs)


class TestPidfileUntrusted:
    @pytest.mark.parametrize('content', [b'\xd9\xa1\xd9\xa2\n', b'\xc2\xb2\n', b'\xff\xfe12', b'12\x00', b'\x00', b'+5', b'0x10', b'00'])
    def test_garbage_refused(self, tmp_path, content):
        path = tmp_path / 'x.pid'
        path.write_bytes(content)
        with pytest.raises(P.ProcessError, match='does not hold a PID'):
            P.read_pidfile(str(path))

    @pytest.mark.parametrize('content', [b'99999999999999999999\n', b'1' * 100000, ('%d\n' % PID_MAX).encode()])
    def test_huge_pid_refused(self, tmp_path, content):
        path = tmp_path / 'x.pid'
        path.write_bytes(content)
        with pytest.raises(P.ProcessError, match='above the highest PID'):
            P.read_pidfile(str(path))

    def test_leading_zeros_and_blanks(self, tmp_path):
        path = tmp_path / 'x.pid'
        path.write_bytes(b'  0042 \r\nignored\n')
        assert P.read_pidfile(str(path))[0] == 42

    def test_symlinked_pidfile_refused(self, tmp_path):
        real = tmp_path / 'real.pid'
        real.write_text('4242\n')
        link = tmp_path / 'link.pid'
        link.symlink_to(real)
        with pytest.raises(P.ProcessError, match='is a symbolic link'):
            P.read_pidfile(str(link))
        dangling = tmp_path / 'dangling.pid'
        dangling.symlink_to(tmp_path / 'nowhere')
        with pytest.raises(P.ProcessError, match='is a symbolic link'):
            P.read_pidfile(str(dangling))

    def test_symlinked_directory_is_followed(self, tmp_path):
        (tmp_path / 'run').mkdir()
        (tmp_path / 'run' / 'x.pid').write_text('4242\n')
        (tmp_path / 'var-run').symlink_to(tmp_path / 'run')
        assert P.read_pidfile(str(tmp_path / 'var-run' / 'x.pid'))[0] == 4242

    def test_fifo_and_directory_refused_without_blocking(self, tmp_path):
        fifo = str(tmp_path / 'fifo.pid')
        os.mkfifo(fifo)
        old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail('reading a FIFO pidfile blocked'))
        signal.alarm(5)
        try:
            with pytest.raises(P.ProcessError, match='not a regular file'):
                P.read_pidfile(fifo)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        with pytest.raises(P.ProcessError, match='not a regular file'):
            P.read_pidfile(str(tmp_path))
        with pytest.raises(P.ProcessError, match='not a regular file'):
            P.read_pidfile('/dev/zero')

    def test_nul_in_path_refused(self):
        with pytest.raises(P.ProcessError, match='NUL'):
            P.read_pidfile('/run/x\0.pid')


class TestStopBounded:
    @pytest.mark.parametrize('kwargs', [{'timeout': 1e10}, {'timeout': float('inf')}, {'timeout': float('nan')},
                                        {'kill_timeout': float('nan')}, {'kill_timeout': 1e10}, {'timeout': -1}])
    def test_absurd_wait_refused_before_sigterm(self, procs, tmp_path, kwargs):
        """Item 2: timeout=1e10/inf overflowed select() after SIGTERM; nan sent SIGKILL at once."""
        record = str(tmp_path / 'terms')
        proc = term_recorder(procs, record)
        args = dict({'timeout': 0.2, 'kill_timeout': 5}, **kwargs)
        with pytest.raises(P.ProcessError, match='must be a number of seconds'):
            P.stop_processes([P.read_identity(proc.pid)], signal.SIGTERM, args['timeout'], True, args['kill_timeout'])
        assert proc.poll() is None and terms(record) == 0

    def test_longest_wait_does_not_overflow(self, procs):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        tracked = [P.Tracked(ident)]
        os.kill(proc.pid, signal.SIGTERM)
        assert P.wait_gone(tracked, P.MAX_WAIT_SECONDS) == []
        proc.wait(timeout=5)

    def test_signals_known_after_a_fault(self, procs, tmp_path, monkeypatch):
        record = str(tmp_path / 'terms')
        proc = term_recorder(procs, record)

        def broken(*args, **kwargs):
            raise RuntimeError('fault')

        monkeypatch.setattr(P, 'wait_gone', broken)
        sent = []
        with pytest.raises(RuntimeError):
            P.stop_processes([P.read_identity(proc.pid)], signal.SIGTERM, 1, True, signals=sent)
        assert [(s['pid'], s['signal']) for s in sent] == [(proc.pid, 'SIGTERM')]
        wait_for(lambda: terms(record) == 1)


class TestDiagnosticsFile:
    def test_unwritable_directory_is_a_refusal(self, tmp_path):
        blocker = tmp_path / 'file'
        blocker.write_text('x')
        with pytest.raises(P.ProcessError, match='cannot write diagnostics'):
            P.write_json_private(str(blocker / 'diag'), 'x.json', {})

    @pytest.mark.parametrize('name', ['', '.', '..', 'a/b.json', '../x.json', 'x\0.json'])
    def test_bad_file_name_refused(self, tmp_path, name):
        with pytest.raises(P.ProcessError, match='not a plain file name'):
            P.write_json_private(str(tmp_path), name, {})

    def test_planted_symlink_is_replaced_not_followed(self, tmp_path):
        victim = tmp_path / 'victim'
        victim.write_text('keep')
        diag = tmp_path / 'diag'
        diag.mkdir()
        (diag / 'x.json.tmp').symlink_to(victim)
        (diag / 'x.json').symlink_to(victim)
        path = P.write_json_private(str(diag), 'x.json', {'a': 1})
        assert victim.read_text() == 'keep'
        assert not os.path.islink(path) and open(path).read().startswith('{')
        assert sorted(os.listdir(str(diag))) == ['x.json', 'x.json.tmp']
