# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process table reader (plugins/module_utils/procfs.py): parsing of saved files, identities and trees of real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs
from ansible_collections.opsguard.anqicms.tests.utils.wait import poll
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.process_helpers import (
    SLEEP,
    read_fixture,
    ready_process,
    started,
    wait_for,
)

MIB = 1024 * 1024


class TestParsing:
    def test_stat_plain(self):
        stat = procfs.parse_stat(read_fixture('stat_plain'))
        assert stat['comm'] == 'python3'
        assert stat['ppid'] == 10742
        assert stat['start_ticks'] == 57683

    def test_stat_comm_with_spaces_and_parentheses(self):
        stat = procfs.parse_stat(read_fixture('stat_weird_comm'))
        assert stat['comm'] == 'an) qi (cms)'
        assert stat['state'] == 'R'
        assert stat['ppid'] == 10742
        assert stat['start_ticks'] == 57683

    @pytest.mark.parametrize('text', ['', 'garbage', '12 (x) S 1 2'])
    def test_stat_garbage(self, text):
        with pytest.raises(ValueError):
            procfs.parse_stat(text)


class TestIdentity:
    def test_identity_of_real_process(self, procs):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        assert ident.exe == os.path.realpath(SLEEP)
        assert ident.ppid == os.getpid()
        assert ident.same(procfs.read_identity(proc.pid))
        assert procfs.read_cmdline(proc.pid) == [SLEEP, '30']
        assert abs(ident.start_epoch() - time.time()) < 60

    def test_zombie_and_gone_are_not_running(self, procs):
        proc = procs([SLEEP, '30'])
        started(proc)
        proc.kill()
        wait_for(lambda: procfs.read_identity(proc.pid) is None)  # zombie until reaped
        proc.wait()
        assert procfs.read_identity(proc.pid) is None

    def test_reused_pid_is_a_different_identity(self, procs):
        proc = procs([SLEEP, '30'])
        ident = started(proc)
        earlier = procfs.Identity(ident.pid, ident.ppid, ident.start_ticks - 1, ident.exe, ident.name, 'S')
        other_exe = procfs.Identity(ident.pid, ident.ppid, ident.start_ticks, '/usr/bin/other', ident.name, 'S')
        assert not earlier.same(ident)
        assert not other_exe.same(ident)

    def test_descendants_and_roots(self, procs):
        parent = ready_process(procs, '''
            import subprocess, sys
            kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']) for i in range(2)]
            print('READY', flush=True)
            import time; time.sleep(60)
        ''')
        table = procfs.scan_processes()
        kids = procfs.descendants(parent.pid, table)
        try:
            assert len(kids) == 2 and all(k.ppid == parent.pid for k in kids)
            assert procfs.reduce_to_roots([parent.pid] + [k.pid for k in kids], table) == [parent.pid]
            unrelated = procs([SLEEP, '30'])
            started(unrelated)
            table = procfs.scan_processes()
            assert procfs.reduce_to_roots([parent.pid, kids[0].pid, unrelated.pid], table) == sorted([parent.pid, unrelated.pid])
        finally:
            for kid in kids:  # the grandchildren are ours (children of our child): do not leave them behind
                if kid.ppid == parent.pid:
                    os.kill(kid.pid, signal.SIGKILL)


# ---------------------------------------------------------------- cgroups of a process


@pytest.mark.parametrize('text, expected', [
    ('4:memory:/a/b\n9:name=systemd:/a/b/x.service\n0::/\n', {'memory': '/a/b', 'systemd': '/a/b/x.service', 'unified': '/'}),
    ('3:cpu,cpuacct,memory:/docker/abc\n', {'memory': '/docker/abc'}),
    ('0::/system.slice/nginx.service\n', {'unified': '/system.slice/nginx.service'}),
    ('garbage\n', {}),
])
def test_parse_proc_cgroup(text: str, expected: dict[str, str]) -> None:
    assert procfs.parse_proc_cgroup(text) == expected


@pytest.mark.parametrize('paths, suffixes, expected', [
    ({'systemd': '/system.slice/anqicms-a.service'}, ('.service', '.scope'), 'anqicms-a.service'),
    ({'unified': '/user.slice/user-0.slice/session-4.scope'}, ('.service', '.scope'), 'session-4.scope'),
    ({'unified': '/user.slice/user-0.slice/session-4.scope'}, ('.service',), None),
    ({'unified': '/system.slice/nginx.service/worker.scope'}, ('.service',), 'nginx.service'),
    ({'systemd': '/system.slice/a.service', 'unified': '/system.slice/b.service'}, ('.service',), 'a.service'),
    ({'unified': '/'}, ('.service', '.scope'), None),
    ({}, ('.service',), None),
])
def test_unit_of(paths, suffixes, expected):
    assert procfs.unit_of(paths, suffixes) == expected


# ---------------------------------------------------------------- rows of a saved table


def _saved_proc(tmp_path, entries: dict) -> str:
    """A /proc tree: {pid: {file: text, 'exe': link target}}; 'stat' defaults to a sleeping process of that pid."""
    proc = tmp_path / 'proc'
    for pid, files in entries.items():
        base = proc / str(pid)
        base.mkdir(parents=True)
        for name, text in files.items():
            if name == 'exe':
                os.symlink(text, str(base / 'exe'))
            else:
                (base / name).write_text(text)
    (proc / 'stat').write_text('cpu 1 2 3\nbtime 1795775022\nprocesses 9\n')
    return str(proc)


def _stat(pid: int, comm: str, state: str = 'S', ppid: int = 1) -> str:
    return '%d (%s) %s %d %d %s 1 0 555 0\n' % (pid, comm, state, ppid, pid, ' '.join(['0'] * 14))


def test_process_rows_of_a_saved_table(tmp_path):
    page = procfs.PAGE_SIZE
    proc = _saved_proc(tmp_path, {
        10: {'stat': _stat(10, 'anqicms'), 'statm': '900 256 0 0 0 0 0', 'cmdline': './anqicms\0-port\x008001\0',
             'exe': '/opt/a/anqicms (deleted)', 'cgroup': '0::/system.slice/anqicms-a.service\n'},
        11: {'stat': _stat(11, 'kworker/0:1', ppid=2), 'statm': '0 0 0 0 0 0 0', 'cmdline': ''},      # kernel thread
        12: {'stat': _stat(12, 'anqicms', state='Z', ppid=10), 'statm': '0 0 0 0 0 0 0'},          # zombie
        13: {'stat': _stat(13, 'php-fpm: pool w', ppid=10), 'statm': '10 4 0 0 0 0 0',               # another user's: no exe
             'cmdline': 'php-fpm: pool www'},
        14: {'stat': _stat(14, 'averyveryverylo'), 'statm': '10 2 0 0 0 0 0', 'exe': '/usr/bin/averyveryverylongname',
             'cmdline': '/usr/bin/averyveryverylongname\0--x\0'},
        15: {'statm': '10 2 0 0 0 0 0'},                                                            # vanished: no stat
        16: {'stat': 'garbage', 'statm': '10 2 0 0 0 0 0'},
    })
    rows = {r['pid']: r for r in procfs.process_rows(proc)}
    assert sorted(rows) == [10, 13, 14]
    assert rows[10] == {'pid': 10, 'ppid': 1, 'name': 'anqicms', 'exe': '/opt/a/anqicms', 'cmdline': './anqicms -port 8001',
                        'rss': 256 * page, 'cgroups': {'unified': '/system.slice/anqicms-a.service'}}
    assert rows[13]['exe'] == '' and rows[13]['rss'] == 4 * page and rows[13]['ppid'] == 10
    assert rows[13]['name'] == 'php-fpm: pool w'  # argv[0] "php-fpm:" does not extend the truncated comm
    assert rows[14]['name'] == 'averyveryverylongname' and rows[14]['cgroups'] == {}
    without = {r['pid']: r for r in procfs.process_rows(proc, cmdline=False, exclude=(13,))}
    assert sorted(without) == [10, 14]
    assert without[10]['cmdline'] == '' and without[14]['name'] == 'averyveryverylongname'
    assert procfs.pids_by_exe('/opt/a/anqicms', proc) == [10]
    assert procfs.boot_time(proc) == 1795775022.0


@pytest.mark.parametrize('comm, cmdline, expected', [
    ('anqicms', ['/opt/a/anqicms'], 'anqicms'),
    ('mariadbd-safe-h', ['/usr/bin/mariadbd-safe-helper', '--x'], 'mariadbd-safe-helper'),
    ('mariadbd-safe-h', ['/usr/bin/other'], 'mariadbd-safe-h'),
    ('nginx: worker p', ['nginx: worker process'], 'nginx: worker p'),
    ('averyveryverylo', ['/x/averyveryverylongname --flag'], 'averyveryverylongname'),
    ('averyveryverylo', [], 'averyveryverylo'),
])
def test_display_name_extends_a_truncated_comm_like_ps(comm, cmdline, expected):
    assert procfs.display_name(comm, cmdline) == expected


def test_boot_time_of_a_tree_without_proc_stat_is_none_with_a_note(tmp_path):
    notes = []
    assert procfs.boot_time(str(tmp_path), notes) is None
    assert notes == ['%s does not exist.' % os.path.join(str(tmp_path), 'stat')]


# ---------------------------------------------------------------- rows of this machine


def test_process_rows_see_a_real_child_with_its_memory():
    code = 'import sys; b = bytearray(48 * 1024 * 1024); sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.read()'
    with subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == 'ready\n'
            rows = {p['pid']: p for p in procfs.process_rows()}
            mine = rows[child.pid]
            assert mine['exe'] == os.path.realpath(sys.executable)
            assert mine['rss'] >= 48 * MIB
            assert mine['ppid'] == os.getpid()
            assert '-c' in mine['cmdline']
            assert set(mine['cgroups']) & {'memory', 'unified'}
            smaps = procfs.read_smaps_rollup(child.pid)
            if os.access('/proc/%d/smaps_rollup' % child.pid, os.R_OK):
                assert smaps['uss'] >= 48 * MIB and smaps['pss'] >= 48 * MIB
        finally:
            child.communicate('', timeout=30)


def _settled(pid: int) -> bool:
    """True when the process sleeps and its RSS did not change over 100 ms."""
    def sample() -> tuple[str, str]:
        with open('/proc/%d/stat' % pid, encoding='ascii') as stat, open('/proc/%d/statm' % pid, encoding='ascii') as statm:
            return stat.read().rsplit(')', 1)[1].split()[0], statm.read().split()[1]
    first = sample()
    time.sleep(0.1)
    return first[0] == 'S' and sample() == first


def test_process_rows_agree_with_psutil():
    """The reader gives what psutil gave memory_facts: same processes, names, executables, parents, arguments and RSS."""
    psutil = pytest.importorskip('psutil')  # a test requirement only (tests/unit/requirements.txt), never a module's
    code = 'import sys; b = bytearray(24 * 1024 * 1024); sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.read()'
    with subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == 'ready\n'
            # After "ready" the child still touches a page or two on its way into read() (seen once in CI: 4096 bytes
            # between our pass and psutil's): wait until it sleeps in read() with the same RSS twice in a row.
            assert poll(lambda: _settled(child.pid), 10, 0.05), 'the child never settled into read()'
            before = {p['pid']: p for p in procfs.process_rows()}
            theirs = {}
            for proc in psutil.process_iter(['pid', 'ppid', 'name', 'exe', 'memory_info', 'cmdline'], ad_value=None):
                info = proc.info
                rss = info['memory_info'].rss if info.get('memory_info') is not None else 0
                exe = procfs.strip_deleted(info.get('exe') or '')
                if exe or rss:
                    theirs[info['pid']] = {'ppid': info['ppid'], 'name': info['name'] or '', 'exe': exe,
                                           'cmdline': ' '.join(info.get('cmdline') or []), 'rss': rss}
            after = {p['pid']: p for p in procfs.process_rows()}
            # processes that did not change while psutil read the table (other jobs start, exec and exit meanwhile)
            keys = ('ppid', 'name', 'exe', 'cmdline')
            ours = {pid: row for pid, row in before.items() if pid in after and all(after[pid][k] == row[k] for k in keys)}
            both = set(ours) & set(theirs)
            # a process may start or end between the two passes, never many
            assert len(both) >= 0.8 * max(len(ours), len(theirs)), (sorted(set(ours) ^ set(theirs)))
            assert child.pid in both
            for pid in both:
                for key in keys:
                    assert ours[pid][key] == theirs[pid][key], (pid, key, ours[pid][key], theirs[pid][key])
            assert ours[child.pid]['rss'] == theirs[child.pid]['rss']  # an idle process: the same pages
        finally:
            child.communicate('', timeout=30)


def test_a_short_read_is_not_the_end_of_the_file(tmp_path):
    """/proc files made of records (mountinfo on a host with many mounts) return less than asked while more follows:
    the reader must read to end of file, or the memory cgroup mount is lost and every service looks outside it."""
    fifo = str(tmp_path / 'records')
    os.mkfifo(fifo)
    first, second = b'a' * 3000 + b'\n', b'b' * 3000 + b'\n'

    def writer():
        with open(fifo, 'wb', buffering=0) as handle:
            handle.write(first)
            time.sleep(0.2)
            handle.write(second)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert procfs._read_raw(fifo) == (first + second).decode()
    finally:
        thread.join(10)


def test_the_raw_reader_reads_what_open_reads():
    for path in ('/proc/self/mountinfo', '/proc/self/cgroup', '/proc/self/limits'):
        with open(path, encoding='utf-8', errors='surrogateescape') as handle:
            expected = handle.read()
        assert procfs._read_raw(path) == expected


def test_a_one_record_file_is_read_whole_in_one_read():
    """stat, statm and cgroup of a process come out whole from one read (a stopped child: nothing changes between
    the two readers), and they are what a buffered reader sees."""
    child = subprocess.Popen(['sleep', '60'])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(0.05)
        for name in ('stat', 'statm', 'cgroup'):
            path = '/proc/%d/%s' % (child.pid, name)
            with open(path, encoding='utf-8', errors='surrogateescape') as handle:
                expected = handle.read()
            assert procfs._read_single_record(path) == expected, name
    finally:
        child.kill()
        child.wait()


def test_a_record_larger_than_the_buffer_is_read_to_the_end(tmp_path):
    path = tmp_path / 'big'
    text = ''.join('line %06d\n' % i for i in range(procfs.SINGLE_RECORD_BUFFER // 5))
    path.write_text(text)
    assert len(text) > 2 * procfs.SINGLE_RECORD_BUFFER
    assert procfs._read_single_record(str(path)) == text
