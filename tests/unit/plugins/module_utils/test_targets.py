# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Target resolution (plugins/module_utils/targets.py) on real processes spawned here, and pidfiles as untrusted input."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs, sockets, targets
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.process_helpers import (
    LISTENER,
    PID_MAX,
    SLEEP,
    ready_process,
    started,
)


class TestPidfile:
    def test_pidfile_reading(self, tmp_path):
        assert targets.read_pidfile(str(tmp_path / 'missing.pid')) == (None, None)
        good = tmp_path / 'good.pid'
        good.write_text('4242\n')
        assert targets.read_pidfile(str(good))[0] == 4242
        for content in ('', 'abc', '-5', '0', '12abc'):
            bad = tmp_path / 'bad.pid'
            bad.write_text(content)
            with pytest.raises(procfs.ProcessError, match='does not hold a PID'):
                targets.read_pidfile(str(bad))


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
        found = targets.resolve_target(pid=proc.pid, exe=os.path.realpath(SLEEP), name='sleep', cmdline_pattern=r'^\S+ 30$')
        assert found['running'] and found['identity'].pid == proc.pid

    @pytest.mark.parametrize('constraint,expected', [
        ({'exe': '/opt/anqicms/anqicms'}, 'its executable is'),
        ({'name': 'anqicms'}, 'its name is'),
        ({'cmdline_pattern': '-port 8001'}, 'does not match'),
    ])
    def test_pid_of_another_program_is_refused(self, procs, constraint, expected):
        proc = procs([SLEEP, '30'])
        started(proc)
        with pytest.raises(procfs.ProcessError, match=expected):
            targets.resolve_target(pid=proc.pid, **constraint)
        assert proc.poll() is None

    def test_missing_pid_is_stopped(self, procs):
        proc = procs([SLEEP, '0'])
        proc.wait()
        found = targets.resolve_target(pid=proc.pid)
        assert found == {'running': False, 'identity': None, 'reason': 'PID %d is not running' % proc.pid}

    def test_protected_pids_refused(self):
        for pid in (1, os.getpid(), os.getppid()):
            with pytest.raises(procfs.ProcessError, match='refused'):
                targets.resolve_target(pid=pid)

    def test_thread_id_refused(self, procs):
        proc = ready_process(procs, '''
            import threading, time
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            print('READY', flush=True)
            time.sleep(60)
        ''')
        tids = [int(t) for t in os.listdir('/proc/%d/task' % proc.pid) if int(t) != proc.pid]
        assert tids
        with pytest.raises(procfs.ProcessError, match='is a thread of PID %d' % proc.pid):
            targets.resolve_target(pid=tids[0])

    def test_pidfile_missing_is_stopped(self, tmp_path):
        found = targets.resolve_target(pidfile=str(tmp_path / 'none.pid'))
        assert not found['running'] and 'does not exist' in found['reason']

    def test_stale_pidfile_is_stopped(self, procs, tmp_path, two_binaries):
        proc = procs([two_binaries[0], '0'])
        proc.wait()
        pidfile = tmp_path / 'stale.pid'
        pidfile.write_text('%d\n' % proc.pid)
        found = targets.resolve_target(pidfile=str(pidfile), exe=two_binaries[0])
        assert not found['running'] and 'stale pidfile' in found['reason']

    def test_stale_pidfile_while_described_process_runs_elsewhere(self, procs, tmp_path, two_binaries):
        dead = procs([SLEEP, '0'])
        dead.wait()
        running = procs([two_binaries[0], '30'])
        started(running, two_binaries[0])
        pidfile = tmp_path / 'stale.pid'
        pidfile.write_text('%d\n' % dead.pid)
        with pytest.raises(procfs.ProcessError, match='is running: the target description does not fit'):
            targets.resolve_target(pidfile=str(pidfile), exe=two_binaries[0])
        assert running.poll() is None

    def test_pidfile_pointing_at_other_instance_refused(self, procs, tmp_path, two_binaries):
        other = procs([two_binaries[1], '30'])
        started(other, two_binaries[1])
        pidfile = tmp_path / 'site1.pid'
        pidfile.write_text('%d\n' % other.pid)
        with pytest.raises(procfs.ProcessError, match='stale pidfile or reused PID'):
            targets.resolve_target(pidfile=str(pidfile), exe=two_binaries[0])
        assert other.poll() is None

    def test_bare_pidfile_older_than_process_refused(self, procs, tmp_path):
        proc = procs([SLEEP, '30'])
        started(proc)
        pidfile = tmp_path / 'old.pid'
        pidfile.write_text('%d\n' % proc.pid)
        old = time.time() - 3600
        os.utime(str(pidfile), (old, old))
        with pytest.raises(procfs.ProcessError, match='PID\\s+was reused|was reused'):
            targets.resolve_target(pidfile=str(pidfile))
        assert proc.poll() is None

    def test_bare_pidfile_written_after_start_accepted(self, procs, tmp_path):
        proc = procs([SLEEP, '30'])
        started(proc)
        pidfile = tmp_path / 'fresh.pid'
        pidfile.write_text('%d\n' % proc.pid)
        assert targets.resolve_target(pidfile=str(pidfile))['identity'].pid == proc.pid

    def test_exe_picks_one_instance_among_two(self, procs, two_binaries):
        one = procs([two_binaries[0], '30'])
        two = procs([two_binaries[1], '30'])
        started(one, two_binaries[0])
        started(two, two_binaries[1])
        assert targets.resolve_target(exe=two_binaries[0])['identity'].pid == one.pid
        assert targets.resolve_target(exe=two_binaries[1])['identity'].pid == two.pid

    def test_exe_with_several_unrelated_processes_refused(self, procs, two_binaries):
        first = procs([two_binaries[0], '30'])
        second = procs([two_binaries[0], '31'])
        started(first, two_binaries[0])
        started(second, two_binaries[0])
        with pytest.raises(procfs.ProcessError, match='2 unrelated processes run'):
            targets.resolve_target(exe=two_binaries[0])
        # A cmdline_pattern tells them apart.
        assert targets.resolve_target(exe=two_binaries[0], cmdline_pattern=r' 31$')['identity'].pid == second.pid

    def test_exe_not_running_is_stopped(self, two_binaries):
        found = targets.resolve_target(exe=two_binaries[0])
        assert not found['running'] and 'no process runs' in found['reason']

    def test_port(self, procs):
        proc = ready_process(procs, LISTENER)
        ident = procfs.read_identity(proc.pid)
        entries = sockets.read_tcp(proc.pid)
        port = sockets.listening_ports(entries, sockets.socket_inodes(proc.pid))[0]
        found = targets.resolve_target(port=port, exe=ident.exe)
        assert found['identity'].pid == proc.pid
        with pytest.raises(procfs.ProcessError, match='its executable is'):
            targets.resolve_target(port=port, exe='/opt/anqicms/site1/anqicms')

    def test_port_without_listener_is_stopped(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        assert not targets.resolve_target(port=port)['running']


class TestBounds:
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
        with pytest.raises(procfs.ProcessError, match=expected):
            targets.resolve_target(**kwargs)


class TestPidfileUntrusted:
    @pytest.mark.parametrize('content', [b'\xd9\xa1\xd9\xa2\n', b'\xc2\xb2\n', b'\xff\xfe12', b'12\x00', b'\x00', b'+5', b'0x10', b'00'])
    def test_garbage_refused(self, tmp_path, content):
        path = tmp_path / 'x.pid'
        path.write_bytes(content)
        with pytest.raises(procfs.ProcessError, match='does not hold a PID'):
            targets.read_pidfile(str(path))

    @pytest.mark.parametrize('content', [b'99999999999999999999\n', b'1' * 100000, ('%d\n' % PID_MAX).encode()])
    def test_huge_pid_refused(self, tmp_path, content):
        path = tmp_path / 'x.pid'
        path.write_bytes(content)
        with pytest.raises(procfs.ProcessError, match='above the highest PID'):
            targets.read_pidfile(str(path))

    def test_leading_zeros_and_blanks(self, tmp_path):
        path = tmp_path / 'x.pid'
        path.write_bytes(b'  0042 \r\nignored\n')
        assert targets.read_pidfile(str(path))[0] == 42

    def test_symlinked_pidfile_refused(self, tmp_path):
        real = tmp_path / 'real.pid'
        real.write_text('4242\n')
        link = tmp_path / 'link.pid'
        link.symlink_to(real)
        with pytest.raises(procfs.ProcessError, match='is a symbolic link'):
            targets.read_pidfile(str(link))
        dangling = tmp_path / 'dangling.pid'
        dangling.symlink_to(tmp_path / 'nowhere')
        with pytest.raises(procfs.ProcessError, match='is a symbolic link'):
            targets.read_pidfile(str(dangling))

    def test_symlinked_directory_is_followed(self, tmp_path):
        (tmp_path / 'run').mkdir()
        (tmp_path / 'run' / 'x.pid').write_text('4242\n')
        (tmp_path / 'var-run').symlink_to(tmp_path / 'run')
        assert targets.read_pidfile(str(tmp_path / 'var-run' / 'x.pid'))[0] == 4242

    def test_fifo_and_directory_refused_without_blocking(self, tmp_path):
        fifo = str(tmp_path / 'fifo.pid')
        os.mkfifo(fifo)
        old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail('reading a FIFO pidfile blocked'))
        signal.alarm(5)
        try:
            with pytest.raises(procfs.ProcessError, match='not a regular file'):
                targets.read_pidfile(fifo)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        with pytest.raises(procfs.ProcessError, match='not a regular file'):
            targets.read_pidfile(str(tmp_path))
        with pytest.raises(procfs.ProcessError, match='not a regular file'):
            targets.read_pidfile('/dev/zero')

    def test_nul_in_path_refused(self):
        with pytest.raises(procfs.ProcessError, match='NUL'):
            targets.read_pidfile('/run/x\0.pid')
