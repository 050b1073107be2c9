# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory cgroups, pressure and OOM kills (plugins/module_utils/cgroups.py) over saved /proc and /sys/fs/cgroup trees."""

from __future__ import annotations

import os
import time
import typing as t

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import cgroups, memory, procfs
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.memory_helpers import (
    BTIME,
    KIB,
    MIB,
    root,
)


def test_v1_container_limit_is_the_namespace_root_not_meminfo() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_container'), notes))
    limit, cgroup = cgroups.effective_limit(root('v1_container'), system, notes)
    assert cgroup is not None and cgroup['version'] == 1
    assert cgroup['self_path'] == '/user.slice/user-0.slice/session-3.scope'
    assert limit['source'] == 'cgroup v1'
    assert limit['bytes'] == 512 * MIB
    assert limit['cgroup_path'] == '/'
    assert limit['usage_bytes'] == 470 * MIB
    assert limit['working_set_bytes'] == 460 * MIB
    assert limit['available_bytes'] == 52 * MIB
    assert limit['available_percent'] == pytest.approx(10.2, abs=0.05)
    assert limit['events'] == {'oom_kill': 1, 'under_oom': 0, 'oom_kill_disable': 0, 'failcnt': 17}
    assert limit['swap_bytes'] == 30 * MIB
    assert limit['swap_max_bytes'] == 512 * MIB
    assert limit['high_bytes'] is None


def test_v1_limit_set_above_the_namespace_comes_from_hierarchical_memory_limit() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_invisible_ancestor'), notes))
    limit, _cgroup = cgroups.effective_limit(root('v1_invisible_ancestor'), system, notes)
    assert limit['source'] == 'cgroup v1'
    assert limit['bytes'] == 1024 * MIB
    assert limit['working_set_bytes'] == 250 * MIB
    assert any('above this namespace' in note for note in notes)


def test_v2_container_limit_high_swap_and_events() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), notes))
    limit, cgroup = cgroups.effective_limit(root('v2_container'), system, notes)
    assert cgroup is not None and cgroup['version'] == 2
    assert limit['source'] == 'cgroup v2'
    assert limit['bytes'] == 1024 * MIB
    assert limit['high_bytes'] == 900 * MIB
    assert limit['working_set_bytes'] == 500 * MIB
    assert limit['available_bytes'] == 524 * MIB
    assert limit['swap_bytes'] == 64 * MIB and limit['swap_max_bytes'] == 256 * MIB
    assert limit['events']['oom_kill'] == 1 and limit['events']['high'] == 5


def test_explicit_cgroup_is_judged_with_its_own_limit() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), notes))
    limit, _cgroup = cgroups.effective_limit(root('v2_container'), system, notes, '/system.slice/app.service')
    assert limit['bytes'] == 200 * MIB
    assert limit['cgroup_path'] == '/system.slice/app.service'
    assert limit['working_set_bytes'] == 110 * MIB


def test_unknown_cgroup_is_a_clear_error() -> None:
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), []))
    with pytest.raises(ValueError, match=r'cgroup /nope\.service does not exist under .*cgroup v2.*for example'):
        cgroups.effective_limit(root('v2_container'), system, [], 'nope.service')


def test_no_cgroup_mounted_means_meminfo_with_a_note() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('bare_no_psi'), notes))
    limit, cgroup = cgroups.effective_limit(root('bare_no_psi'), system, notes)
    assert cgroup is None
    assert limit['source'] == 'meminfo'
    assert limit['bytes'] == system['total']
    assert limit['available_bytes'] == 1200000 * KIB
    assert any('No cgroup hierarchy' in note for note in notes)


def test_unit_of_and_relative_path_under_a_bind_mounted_subtree() -> None:
    assert procfs.unit_of({'systemd': '/system.slice/anqicms-a.service'}) == 'anqicms-a.service'
    assert procfs.unit_of({'unified': '/user.slice/user-0.slice/session-4.scope'}) == 'session-4.scope'
    assert procfs.unit_of({'unified': '/'}) is None
    hierarchy = {'version': 1, 'mount': '/sys/fs/cgroup/memory', 'mount_root': '/docker/abc'}
    assert cgroups.relative_cgroup(hierarchy, '/docker/abc') == '/'
    assert cgroups.relative_cgroup(hierarchy, '/docker/abc/sub') == '/sub'


def test_v2_pressure_comes_from_the_cgroup_not_the_host() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), notes))
    _limit, cgroup = cgroups.effective_limit(root('v2_container'), system, notes)
    pressure, note = cgroups.read_pressure(root('v2_container'), cgroup)
    assert pressure is not None and pressure['scope'] == 'cgroup'
    assert pressure['some'] == {'avg10': 3.2, 'avg60': 1.1, 'avg300': 0.3, 'total_usec': 4000}
    assert pressure['full']['avg10'] == 1.0
    assert 'cgroup /' in note


def test_v1_pressure_is_host_wide_and_says_so() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_container'), notes))
    _limit, cgroup = cgroups.effective_limit(root('v1_container'), system, notes)
    pressure, note = cgroups.read_pressure(root('v1_container'), cgroup)
    assert pressure is not None and pressure['scope'] == 'host'
    assert pressure['full']['avg10'] == 55.0
    assert 'not used for the verdict' in note


@pytest.mark.parametrize('case, reason', [('bare_no_psi', 'does not exist'), ('old_kernel', 'could not be read')])
def test_no_psi_is_null_with_a_reason(case: str, reason: str) -> None:
    pressure, note = cgroups.read_pressure(root(case), None)
    assert pressure is None
    assert reason in note and 'psi=1' in note


def test_parse_pressure_rejects_garbage() -> None:
    assert cgroups.parse_pressure('some avg10=x\n') is None
    assert cgroups.parse_pressure('') is None


def test_kmsg_oom_kills_with_victim_pid_time_and_constraint() -> None:
    with open(os.path.join(root('v1_container'), 'dev', 'kmsg'), encoding='utf-8') as handle:
        kills = cgroups.parse_kmsg(handle.read(), float(BTIME))
    assert [(k['victim'], k['pid']) for k in kills] == [('anqicms', 4242), ('mariadbd', 777)]
    first, second = kills
    assert first['constraint'] == 'CONSTRAINT_MEMCG'
    assert first['memcg'] == '/fleet/node1/system.slice/anqicms-a.service'
    assert first['anon_rss_bytes'] == 480000 * KIB
    assert first['time'] == time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(BTIME + 5))
    assert second['constraint'] == 'CONSTRAINT_NONE'
    assert second['seconds_since_boot'] == pytest.approx(7200.0001)


def test_dmesg_style_lines_are_understood() -> None:
    kills = cgroups.parse_kmsg('[ 12.500000] Out of memory: Killed process 99 (php-fpm8.2) total-vm:1kB, anon-rss:2048kB, file-rss:0kB\n',
                               None)
    assert kills == [{'pid': 99, 'victim': 'php-fpm8.2', 'anon_rss_bytes': 2048 * KIB, 'seconds_since_boot': 12.5,
                      'time': None, 'epoch': None, 'constraint': None, 'memcg': None}]


def test_oom_section_keeps_only_kills_in_the_window() -> None:
    notes: list[str] = []
    case = root('v1_container')
    limit = {'events': {'oom_kill': 1}}
    section = cgroups.oom_section(case, memory.read_vmstat(case, notes), limit, notes, window=900, now=BTIME + 7200 + 60)
    assert section['host_oom_kills'] == 3
    assert section['cgroup_oom_kills'] == 1
    assert len(section['messages']) == 2
    assert [k['victim'] for k in section['recent']] == ['mariadbd']


def test_kernel_log_is_not_read_when_no_kill_happened() -> None:
    notes: list[str] = []
    section = cgroups.oom_section(root('v1_container'), {'oom_kill': 0}, {'events': None}, notes, kmsg_path='/nonexistent/kmsg')
    assert section['messages'] == [] and notes == []


def test_unreadable_kernel_log_is_a_note() -> None:
    notes: list[str] = []
    section = cgroups.oom_section(root('v1_container'), {'oom_kill': 2}, {'events': None}, notes, kmsg_path='/nonexistent/kmsg')
    assert section['messages'] == []
    assert any('not readable' in note for note in notes)


@pytest.mark.skipif(not os.access('/dev/kmsg', os.R_OK), reason='needs a readable /dev/kmsg (root)')
def test_reading_the_real_kernel_log_does_not_block() -> None:
    notes: list[str] = []
    text = cgroups.read_kmsg('/dev/kmsg', notes)
    assert notes == []
    assert text.count(';') >= 1  # at least one record in prio,seq,usec,flags;message form


def test_an_explicit_cgroup_limits_the_processes_to_its_subtree() -> None:
    hierarchy = {'version': 2, 'mount': '/sys/fs/cgroup', 'mount_root': '/'}
    procs = [{'pid': 1, 'cgroups': {'unified': '/system.slice/app.service'}},
             {'pid': 2, 'cgroups': {'unified': '/system.slice/app.service/worker'}},
             {'pid': 3, 'cgroups': {'unified': '/system.slice/app.service2'}},
             {'pid': 4, 'cgroups': {}}]
    assert [p['pid'] for p in cgroups.in_cgroup(procs, hierarchy, '/system.slice/app.service')] == [1, 2]
    # a process whose cgroup is unknown cannot be shown to be charged to any cgroup, not even the root
    assert [p['pid'] for p in cgroups.in_cgroup(procs, hierarchy, '/')] == [1, 2, 3]


@pytest.mark.parametrize('mount_root, path, expected', [
    ('/', '/a/b', '/a/b'),
    ('/', '//a/./b/', '/a/b'),
    ('/', '/', '/'),
    ('/', '/../../other', None),          # above the cgroup namespace
    ('/', '/a/../../proc', None),         # untrusted text never walks out of the mount
    ('/', 'a/b', None),
    ('/', '', None),
    ('/', None, None),
    ('/', '/a\0b', None),
    ('/docker/ct1', '/docker/ct1/app', '/app'),
    ('/docker/ct1', '/docker/ct1', '/'),
    ('/docker/ct1', '/docker/ct10/app', None),  # outside the bind-mounted subtree, despite the common prefix
    ('/docker/ct1', '/system.slice/x', None),
])
def test_cgroup_under_mount(mount_root: str, path: str | None, expected: str | None) -> None:
    hierarchy = {'version': 2, 'mount': '/sys/fs/cgroup', 'mount_root': mount_root}
    assert cgroups.cgroup_under_mount(hierarchy, path) == expected


def test_processes_outside_a_bind_mounted_subtree_or_above_the_namespace_are_outside() -> None:
    hierarchy = {'version': 1, 'mount': '/sys/fs/cgroup/memory', 'mount_root': '/docker/ct1'}
    procs = [{'pid': 1, 'cgroups': {'memory': '/docker/ct1/app'}},
             {'pid': 2, 'cgroups': {'memory': '/docker/ct10/app'}},
             {'pid': 3, 'cgroups': {'memory': '/../x'}},
             {'pid': 4, 'cgroups': {'memory': '/app'}}]  # as written outside the mount's root: a different cgroup
    inside, outside = cgroups.split_by_cgroup(procs, hierarchy, '/')
    assert [p['pid'] for p in inside] == [1]
    assert [p['pid'] for p in outside] == [2, 3, 4]


@pytest.mark.parametrize('value, message', [
    ('../../../../proc', 'contains ".."'),
    ('/system.slice/../../../proc', 'contains ".."'),
    ('', 'is empty'),
    ('   ', 'is empty'),
    ('/a\0b', 'control characters'),
    ('/a\nb', 'control characters'),
    ('/' + 'a' * 5000, 'at most 4096'),
])
def test_bad_cgroup_options_are_refused(value: str, message: str) -> None:
    error = cgroups.check_cgroup_option(value)
    assert error is not None and message in error
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), []))
    with pytest.raises(ValueError, match=message.replace('"', '.').replace('(', '.')):
        cgroups.effective_limit(root('v2_container'), system, [], value)


def test_a_cgroup_that_resolves_outside_the_hierarchy_is_refused(tmp_path: t.Any) -> None:
    import shutil  # pylint: disable=import-outside-toplevel
    case = str(tmp_path / 'case')
    shutil.copytree(root('v2_container'), case, symlinks=True)
    os.symlink(os.path.join(case, 'proc'), os.path.join(case, 'sys/fs/cgroup/escape'))
    system = memory.system_memory(memory.read_meminfo(case, []))
    with pytest.raises(ValueError, match='outside the memory hierarchy'):
        cgroups.effective_limit(case, system, [], '/escape')
    limit, _cgroup = cgroups.effective_limit(case, system, [], 'system.slice//app.service/')
    assert limit['cgroup_path'] == '/system.slice/app.service'


@pytest.mark.parametrize('text', [
    'some avg10=1.2.3 avg60=0.00 avg300=0.00 total=1\nfull avg10=. avg60=0.00 avg300=0.00 total=1',
    'full avg10=999.00 avg60=0.00 avg300=0.00 total=1',
    'full avg10=nan avg60=inf avg300=-1 total=-5',
    'full avg10=1' + '0' * 400 + ' avg60=0 avg300=0 total=1',
])
def test_garbage_pressure_is_no_pressure(text: str) -> None:
    assert cgroups.parse_pressure(text) is None


@pytest.mark.parametrize('text', [
    '6,1,%d,-;Killed process 77 (x) total-vm:1kB, anon-rss:1kB' % (10 ** 30),
    '[%s.5] Killed process 77 (x)' % ('9' * 400),
    '6,1,5,-;Killed process %s (x)' % ('7' * 5000),
    '6,1,5,-;oom-kill:constraint=CONSTRAINT_MEMCG,pid=\u00b2\n6,1,6,-;Killed process 78 (y)',
    '\x00\xff;;;,,,;Killed process (x)',
])
def test_garbage_kernel_log_lines_do_not_crash(text: str) -> None:
    kills = cgroups.parse_kmsg(text, boot=float(2 ** 63))
    assert all(k['time'] is None or k['time'].endswith('Z') for k in kills)


def test_negative_and_absurd_numbers_in_kernel_files_are_ignored() -> None:
    parsed = procfs.parse_keyed('MemTotal: -5 kB\nMemFree: %d kB\nBuffers: 7 kB\nCached: nan kB' % (2 ** 70), scale_kb=True)
    assert parsed == {'Buffers': 7 * KIB}
    assert cgroups.int_or_none('-1') is None
    assert cgroups.int_or_none('NaN') is None
    assert cgroups.mib(10 ** 400) == 'unknown'


@pytest.mark.parametrize('part, whole, expected', [
    (300, 256, 100.0), (-5, 256, 0.0), (128, 256, 50.0), (1, 0, None), (1, -1, None), (None, 5, None),
    (10 ** 400, 1, 100.0), (float('nan'), 1, None), (float('inf'), 1, 100.0), (1, float('nan'), None),
    (10 ** 400, 10 ** 401, 10.0), (1, 3, 33.3), (2, 3, 66.7),
])
def test_percent_of_is_within_0_and_100(part: t.Any, whole: t.Any, expected: float | None) -> None:
    assert cgroups.percent_of(part, whole) == expected


# A container (like a test-fleet host) that mounted its cgroup hierarchy afresh over the inherited one.
STACKED_MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
53 30 0:32 /../../../.. /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
95 25 0:40 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw
101 95 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""


def test_a_hierarchy_mounted_over_an_inherited_one_is_the_one_used(tmp_path):
    (tmp_path / 'proc' / 'self').mkdir(parents=True)
    (tmp_path / 'proc' / 'self' / 'mountinfo').write_text(STACKED_MOUNTINFO)
    hierarchy = cgroups.locate_hierarchy(str(tmp_path), [])
    assert hierarchy['version'] == 1 and hierarchy['mount_root'] == '/'
    assert cgroups.cgroup_under_mount(hierarchy, '/system.slice/mariadb.service') == '/system.slice/mariadb.service'
    # Only the inherited mount (what the code saw before): every process would be outside it.
    only_inherited = {'version': 1, 'mount': '/x', 'mount_root': '/../../../..'}
    assert cgroups.cgroup_under_mount(only_inherited, '/system.slice/mariadb.service') is None
