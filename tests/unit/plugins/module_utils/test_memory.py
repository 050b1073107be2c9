# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory readers and verdicts over saved /proc and /sys/fs/cgroup trees (tests/unit/fixtures/memory/<case>)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import typing as t

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import memory

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'memory')
MIB = 1024 * 1024
KIB = 1024
BTIME = 1795775022


def root(case: str) -> str:
    return os.path.abspath(os.path.join(FIXTURES, case))


def thresholds(**over: float) -> dict[str, float]:
    th = dict(memory.DEFAULT_THRESHOLDS)
    th.update(over)
    return th


class SavedProcess:
    """One row of a saved process table, shaped like a psutil.Process yielded by process_iter(attrs)."""

    def __init__(self, pid: int, ppid: int, name: str, exe: str, rss: int, cmdline: list[str] | None = None) -> None:
        self.info = {'pid': pid, 'ppid': ppid, 'name': name, 'exe': exe, 'cmdline': cmdline or [exe],
                     'memory_info': type('mem', (), {'rss': rss})(), 'create_time': 1.0}


class SavedProcessTable:
    """A process table that cannot exist on this machine (other hosts' PIDs), replayed in place of psutil."""

    def __init__(self, rows: list[SavedProcess]) -> None:
        self.rows = rows

    def process_iter(self, attrs: list[str], ad_value: t.Any = None) -> t.Iterator[SavedProcess]:
        del attrs, ad_value
        return iter(self.rows)


def record(pid: int, name: str, exe: str, rss_mib: float, ppid: int = 1, unit: str | None = None,
           memory_path: str | None = None, cmdline: str = '') -> dict[str, t.Any]:
    cgroups: dict[str, str] = {}
    if unit:
        cgroups['systemd'] = '/system.slice/' + unit
    if memory_path:
        cgroups['memory'] = memory_path
    return {'pid': pid, 'ppid': ppid, 'name': name, 'exe': exe, 'cmdline': cmdline or exe, 'rss': int(rss_mib * MIB),
            'cgroups': cgroups, 'uss': None, 'pss': None, 'swap': None}


# ------------------------------------------------------------------ system and meminfo

def test_system_from_meminfo_matches_free_formulas() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_container'), notes))
    assert notes == []
    assert system['total'] == 24684084 * KIB
    assert system['available'] == 23001216 * KIB
    assert system['used'] == (24684084 - 23001216) * KIB
    assert system['cached'] == (2715328 + 180224) * KIB
    assert system['swap_total'] == 2097148 * KIB
    assert system['swap_used'] == (2097148 - 1048572) * KIB
    assert system['percent'] == pytest.approx(6.8, abs=0.05)


def test_meminfo_without_memavailable_falls_back_to_free_buffers_cached() -> None:
    system = memory.system_memory(memory.read_meminfo(root('old_kernel'), []))
    assert system['available'] == (100000 + 50000 + 150000) * KIB
    assert system['swap_total'] == 0 and system['swap_used'] == 0


def test_parse_keyed_ignores_garbage_lines() -> None:
    parsed = memory.parse_keyed('MemTotal: 10 kB\nnonsense\nKey: notanumber kB\noom_kill 4\n', scale_kb=True)
    assert parsed == {'MemTotal': 10 * KIB, 'oom_kill': 4}


def test_gather_refuses_a_proc_without_memtotal() -> None:
    with pytest.raises(ValueError, match='no MemTotal'):
        memory.gather(SavedProcessTable([]), thresholds(), root('garbage'))


# ------------------------------------------------------------------ cgroup limits

def test_v1_container_limit_is_the_namespace_root_not_meminfo() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_container'), notes))
    limit, cgroup = memory.effective_limit(root('v1_container'), system, notes)
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
    limit, _cgroup = memory.effective_limit(root('v1_invisible_ancestor'), system, notes)
    assert limit['source'] == 'cgroup v1'
    assert limit['bytes'] == 1024 * MIB
    assert limit['working_set_bytes'] == 250 * MIB
    assert any('above this namespace' in note for note in notes)


def test_v2_container_limit_high_swap_and_events() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), notes))
    limit, cgroup = memory.effective_limit(root('v2_container'), system, notes)
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
    limit, _cgroup = memory.effective_limit(root('v2_container'), system, notes, '/system.slice/app.service')
    assert limit['bytes'] == 200 * MIB
    assert limit['cgroup_path'] == '/system.slice/app.service'
    assert limit['working_set_bytes'] == 110 * MIB


def test_unknown_cgroup_is_a_clear_error() -> None:
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), []))
    with pytest.raises(ValueError, match=r'cgroup /nope\.service does not exist under .*cgroup v2.*for example'):
        memory.effective_limit(root('v2_container'), system, [], 'nope.service')


def test_no_cgroup_mounted_means_meminfo_with_a_note() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('bare_no_psi'), notes))
    limit, cgroup = memory.effective_limit(root('bare_no_psi'), system, notes)
    assert cgroup is None
    assert limit['source'] == 'meminfo'
    assert limit['bytes'] == system['total']
    assert limit['available_bytes'] == 1200000 * KIB
    assert any('No cgroup hierarchy' in note for note in notes)


@pytest.mark.parametrize('text, expected', [
    ('4:memory:/a/b\n9:name=systemd:/a/b/x.service\n0::/\n', {'memory': '/a/b', 'systemd': '/a/b/x.service', 'unified': '/'}),
    ('3:cpu,cpuacct,memory:/docker/abc\n', {'memory': '/docker/abc'}),
    ('0::/system.slice/nginx.service\n', {'unified': '/system.slice/nginx.service'}),
    ('garbage\n', {}),
])
def test_parse_proc_cgroup(text: str, expected: dict[str, str]) -> None:
    assert memory.parse_proc_cgroup(text) == expected


def test_unit_of_and_relative_path_under_a_bind_mounted_subtree() -> None:
    assert memory.unit_of({'systemd': '/system.slice/anqicms-a.service'}) == 'anqicms-a.service'
    assert memory.unit_of({'unified': '/user.slice/user-0.slice/session-4.scope'}) == 'session-4.scope'
    assert memory.unit_of({'unified': '/'}) is None
    hierarchy = {'version': 1, 'mount': '/sys/fs/cgroup/memory', 'mount_root': '/docker/abc'}
    assert memory.relative_cgroup(hierarchy, '/docker/abc') == '/'
    assert memory.relative_cgroup(hierarchy, '/docker/abc/sub') == '/sub'


# ------------------------------------------------------------------ pressure

def test_v2_pressure_comes_from_the_cgroup_not_the_host() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), notes))
    _limit, cgroup = memory.effective_limit(root('v2_container'), system, notes)
    pressure, note = memory.read_pressure(root('v2_container'), cgroup)
    assert pressure is not None and pressure['scope'] == 'cgroup'
    assert pressure['some'] == {'avg10': 3.2, 'avg60': 1.1, 'avg300': 0.3, 'total_usec': 4000}
    assert pressure['full']['avg10'] == 1.0
    assert 'cgroup /' in note


def test_v1_pressure_is_host_wide_and_says_so() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_container'), notes))
    _limit, cgroup = memory.effective_limit(root('v1_container'), system, notes)
    pressure, note = memory.read_pressure(root('v1_container'), cgroup)
    assert pressure is not None and pressure['scope'] == 'host'
    assert pressure['full']['avg10'] == 55.0
    assert 'not used for the verdict' in note


@pytest.mark.parametrize('case, reason', [('bare_no_psi', 'does not exist'), ('old_kernel', 'could not be read')])
def test_no_psi_is_null_with_a_reason(case: str, reason: str) -> None:
    pressure, note = memory.read_pressure(root(case), None)
    assert pressure is None
    assert reason in note and 'psi=1' in note


def test_parse_pressure_rejects_garbage() -> None:
    assert memory.parse_pressure('some avg10=x\n') is None
    assert memory.parse_pressure('') is None


# ------------------------------------------------------------------ OOM

def test_kmsg_oom_kills_with_victim_pid_time_and_constraint() -> None:
    with open(os.path.join(root('v1_container'), 'dev', 'kmsg'), encoding='utf-8') as handle:
        kills = memory.parse_kmsg(handle.read(), float(BTIME))
    assert [(k['victim'], k['pid']) for k in kills] == [('anqicms', 4242), ('mariadbd', 777)]
    first, second = kills
    assert first['constraint'] == 'CONSTRAINT_MEMCG'
    assert first['memcg'] == '/fleet/node1/system.slice/anqicms-a.service'
    assert first['anon_rss_bytes'] == 480000 * KIB
    assert first['time'] == time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(BTIME + 5))
    assert second['constraint'] == 'CONSTRAINT_NONE'
    assert second['seconds_since_boot'] == pytest.approx(7200.0001)


def test_dmesg_style_lines_are_understood() -> None:
    kills = memory.parse_kmsg('[ 12.500000] Out of memory: Killed process 99 (php-fpm8.2) total-vm:1kB, anon-rss:2048kB, file-rss:0kB\n',
                              None)
    assert kills == [{'pid': 99, 'victim': 'php-fpm8.2', 'anon_rss_bytes': 2048 * KIB, 'seconds_since_boot': 12.5,
                      'time': None, 'epoch': None, 'constraint': None, 'memcg': None}]


def test_oom_section_keeps_only_kills_in_the_window() -> None:
    notes: list[str] = []
    case = root('v1_container')
    limit = {'events': {'oom_kill': 1}}
    section = memory.oom_section(case, memory.read_vmstat(case, notes), limit, notes, window=900, now=BTIME + 7200 + 60)
    assert section['host_oom_kills'] == 3
    assert section['cgroup_oom_kills'] == 1
    assert len(section['messages']) == 2
    assert [k['victim'] for k in section['recent']] == ['mariadbd']


def test_kernel_log_is_not_read_when_no_kill_happened() -> None:
    notes: list[str] = []
    section = memory.oom_section(root('v1_container'), {'oom_kill': 0}, {'events': None}, notes, kmsg_path='/nonexistent/kmsg')
    assert section['messages'] == [] and notes == []


def test_unreadable_kernel_log_is_a_note() -> None:
    notes: list[str] = []
    section = memory.oom_section(root('v1_container'), {'oom_kill': 2}, {'events': None}, notes, kmsg_path='/nonexistent/kmsg')
    assert section['messages'] == []
    assert any('not readable' in note for note in notes)


@pytest.mark.skipif(not os.access('/dev/kmsg', os.R_OK), reason='needs a readable /dev/kmsg (root)')
def test_reading_the_real_kernel_log_does_not_block() -> None:
    notes: list[str] = []
    text = memory.read_kmsg('/dev/kmsg', notes)
    assert notes == []
    assert text.count(';') >= 1  # at least one record in prio,seq,usec,flags;message form


# ------------------------------------------------------------------ services

def test_matcher_errors_name_the_matcher_and_the_fix() -> None:
    with pytest.raises(ValueError, match='matcher shop matches nothing: give at least one of exe'):
        memory.compile_matchers([{'name': 'shop', 'kind': 'anqicms'}])
    with pytest.raises(ValueError, match='not a valid regular expression'):
        memory.compile_matchers([{'name': 'shop', 'cmdline': '('}])
    with pytest.raises(ValueError, match="kind 'java'"):
        memory.compile_matchers([{'name': 'shop', 'kind': 'java', 'exe': ['/x']}])
    with pytest.raises(ValueError, match=r'matchers\[0\] has no name'):
        memory.compile_matchers([{'exe': ['/x']}])


def test_services_are_grouped_per_install_directory_and_kind() -> None:
    procs = [
        record(10, 'anqicms', '/opt/a/anqicms', 300, memory_path='/system.slice/anqicms-a.service'),
        record(11, 'cwebp', '/opt/a/source/cwebp_linux_amd64', 20, ppid=10),
        record(20, 'anqicms', '/srv/b/anqicms', 40),
        record(30, 'mariadbd', '/usr/sbin/mariadbd', 90, unit='mariadb.service'),
        record(31, 'mysqld_helper', '/usr/bin/helper', 1, unit='mariadb.service'),
        record(40, 'nginx', '/usr/sbin/nginx', 5, unit='nginx.service'),
        record(41, 'nginx', '/usr/sbin/nginx', 6, ppid=40, unit='nginx.service'),
        record(50, 'php-fpm8.2', '/usr/sbin/php-fpm8.2', 30),
        record(60, 'redis-server', '/usr/bin/redis-server', 7),
        record(70, 'memcached', '/usr/bin/memcached', 8),
        record(80, 'sshd', '/usr/sbin/sshd', 9, unit='ssh.service'),
        record(81, 'sshd', '/usr/sbin/sshd', 3, unit='session-3.scope', ppid=80),
        record(90, 'java', '/usr/bin/java', 50, cmdline='/usr/bin/java -jar /srv/search/es.jar'),
    ]
    matchers = memory.compile_matchers([{'name': 'search', 'kind': 'other', 'cmdline': r'-jar \S*es\.jar'}])
    services = memory.group_services(procs, matchers, 512 * MIB)
    by_name = {s['name']: s for s in services}
    assert by_name['anqicms:/opt/a']['pids'] == [10, 11]
    assert by_name['anqicms:/opt/a']['rss_bytes'] == 320 * MIB
    assert by_name['anqicms:/opt/a']['install_dir'] == '/opt/a'
    assert by_name['anqicms:/opt/a']['share_of_limit'] == pytest.approx(62.5)
    assert by_name['anqicms:/srv/b']['pids'] == [20]
    assert by_name['mariadb']['kind'] == 'database' and by_name['mariadb']['pids'] == [30, 31]
    assert by_name['mariadb']['unit'] == 'mariadb.service'
    assert by_name['nginx']['pids'] == [40, 41]
    assert by_name['php-fpm']['kind'] == 'php-fpm'
    assert by_name['redis']['kind'] == 'redis' and by_name['memcached']['kind'] == 'memcached'
    assert by_name['search']['pids'] == [90]
    # unmatched processes: grouped by their service unit, else (sessions, scopes) by process name
    assert by_name['ssh.service']['kind'] == 'other' and by_name['ssh.service']['pids'] == [80]
    assert by_name['sshd']['pids'] == [81]
    assert services[0]['name'] == 'anqicms:/opt/a'
    top = memory.top_processes(procs, services, 3)
    assert [(p['pid'], p['service']) for p in top] == [(10, 'anqicms:/opt/a'), (30, 'mariadb'), (90, 'search')]


def test_a_service_with_its_own_v1_limit_gets_it_and_its_share() -> None:
    notes: list[str] = []
    case = root('v1_container')
    system = memory.system_memory(memory.read_meminfo(case, notes))
    hierarchy = memory.locate_hierarchy(case, notes)
    limit, cgroup = memory.effective_limit(case, system, notes, hierarchy=hierarchy)
    procs = [record(4242, 'anqicms', '/opt/a/anqicms', 245, memory_path='/system.slice/anqicms-a.service'),
             record(777, 'mariadbd', '/usr/sbin/mariadbd', 80, memory_path='/system.slice/mariadb.service')]
    services = memory.group_services(procs, memory.compile_matchers(None), limit['bytes'], hierarchy, cgroup)
    by_name = {s['name']: s for s in services}
    own = by_name['anqicms:/opt/a']['cgroup']
    assert own['path'] == '/system.slice/anqicms-a.service'
    assert own['limit_bytes'] == 256 * MIB
    assert own['working_set_bytes'] == 250 * MIB
    assert own['share'] == pytest.approx(97.7, abs=0.05)
    assert own['oom_kills'] == 1
    assert by_name['mariadb']['cgroup'] is None  # only the host's limit applies to it


def test_scan_processes_sees_a_real_child_with_its_memory() -> None:
    import psutil  # pylint: disable=import-outside-toplevel  # a requirement of the unit tests (tests/unit/requirements.txt)
    code = 'import sys; b = bytearray(48 * 1024 * 1024); sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.read()'
    with subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == 'ready\n'
            procs = {p['pid']: p for p in memory.scan_processes(psutil, '/', detailed=True)}
            mine = procs[child.pid]
            assert mine['exe'] == os.path.realpath(sys.executable)
            assert mine['rss'] >= 48 * MIB
            assert mine['ppid'] == os.getpid()
            assert '-c' in mine['cmdline']
            if os.access('/proc/%d/smaps_rollup' % child.pid, os.R_OK):
                assert mine['uss'] >= 48 * MIB and mine['pss'] >= 48 * MIB
            assert set(mine['cgroups']) & {'memory', 'unified'}
        finally:
            child.communicate('', timeout=30)


# ------------------------------------------------------------------ trend

def _samples(series: dict[str, list[int]], step: float = 10.0) -> list[tuple[float, dict[str, int]]]:
    count = len(next(iter(series.values())))
    return [(i * step, {name: values[i] for name, values in series.items()}) for i in range(count)]


def test_trend_flags_sustained_growth_only() -> None:
    samples = _samples({
        'anqicms:/opt/a': [100 * MIB, 140 * MIB, 181 * MIB, 220 * MIB, 262 * MIB],  # ~240 MiB/min, every step up
        'mariadb': [90 * MIB, 90 * MIB, 90 * MIB, 90 * MIB, 90 * MIB],
        'gc-sawtooth': [100 * MIB, 150 * MIB, 60 * MIB, 120 * MIB, 170 * MIB],      # grows overall, but shrinks
    })
    trend = memory.compute_trend(samples, {'anqicms:/opt/a': 'anqicms'}, 4.0, limit_bytes=512 * MIB)
    by_name = {e['name']: e for e in trend['services']}
    assert trend['leak_suspected'] is True and trend['suspects'] == ['anqicms:/opt/a']
    assert by_name['anqicms:/opt/a']['growth_bytes_per_minute'] == pytest.approx(242.4 * MIB, rel=0.01)
    assert by_name['anqicms:/opt/a']['minutes_to_limit'] == pytest.approx((512 - 262) / 242.4, abs=0.1)
    assert by_name['mariadb']['growth_bytes_per_minute'] == 0 and not by_name['mariadb']['leak_suspected']
    assert not by_name['gc-sawtooth']['leak_suspected']
    assert trend['samples'] == 5 and trend['seconds'] == 40.0


def test_a_fast_rate_from_a_tiny_growth_is_not_a_leak() -> None:
    samples = _samples({'x': [100 * MIB, 100 * MIB + 300 * KIB, 100 * MIB + 600 * KIB, 100 * MIB + 900 * KIB]}, step=1.0)
    trend = memory.compute_trend(samples, {}, 4.0)
    assert trend['services'][0]['growth_bytes_per_minute'] > 4 * MIB
    assert trend['leak_suspected'] is False


def test_slow_growth_under_the_threshold_is_not_a_leak() -> None:
    samples = _samples({'x': [100 * MIB, 100 * MIB + 100 * KIB, 100 * MIB + 200 * KIB, 100 * MIB + 300 * KIB]})
    trend = memory.compute_trend(samples, {}, 4.0)
    assert trend['services'][0]['growth_bytes_per_minute'] > 0
    assert trend['leak_suspected'] is False


# ------------------------------------------------------------------ verdicts end to end over saved trees

def _v1_table() -> SavedProcessTable:
    return SavedProcessTable([
        SavedProcess(4242, 1, 'anqicms', '/opt/a/anqicms', 245 * MIB),
        SavedProcess(777, 1, 'mariadbd', '/usr/sbin/mariadbd', 80 * MIB),
        SavedProcess(900, 1, 'anqicms', '/opt/b/anqicms', 60 * MIB),
    ])


def test_gather_v1_container_service_at_its_own_limit_is_critical() -> None:
    facts = memory.gather(_v1_table(), thresholds(), root('v1_container'), kernel_messages=False)
    assert facts['verdict'] == 'critical'
    assert facts['limit']['source'] == 'cgroup v1'
    assert facts['culprit']['name'] == 'anqicms:/opt/a'
    assert facts['culprit']['pids'] == [4242]
    assert any('anqicms:/opt/a uses 250 MiB of its own 256 MiB limit (97.7 %' in r for r in facts['reasons'])
    assert any('52 MiB (10.2 %)' in r and 'critical below 15' in r for r in facts['reasons'])
    # machine-wide PSI (55 % full) is reported but must not drive the verdict of a v1 container
    assert not any('PSI' in r for r in facts['reasons'])
    services = {s['name']: s for s in facts['services']}
    assert services['anqicms:/opt/a']['uss_bytes'] == 237000 * KIB
    assert services['anqicms:/opt/a']['swap_bytes'] == 512 * KIB
    assert services['anqicms:/opt/b']['uss_bytes'] is None


def test_gather_v2_pressure_is_critical_and_names_the_largest() -> None:
    table = SavedProcessTable([SavedProcess(5, 1, 'mariadbd', '/usr/sbin/mariadbd', 700 * MIB),
                               SavedProcess(6, 1, 'nginx', '/usr/sbin/nginx', 10 * MIB)])
    facts = memory.gather(table, thresholds(), root('v2_pressure'))
    assert facts['verdict'] == 'critical'
    assert any('PSI full avg10' in r and '45.0 %' in r for r in facts['reasons'])
    assert facts['culprit']['kind'] == 'database'


def test_gather_v2_container_is_ok() -> None:
    table = SavedProcessTable([SavedProcess(100, 1, 'anqicms', '/opt/a/anqicms', 100 * MIB)])
    facts = memory.gather(table, thresholds(), root('v2_container'))
    assert facts['verdict'] == 'ok', facts['reasons']
    assert facts['culprit'] is None
    assert facts['reasons'][0].startswith('524 MiB (51.2 %) of the cgroup v2 limit of / (1024 MiB) is available')


def test_gather_bare_machine_low_memory_is_critical() -> None:
    table = SavedProcessTable([SavedProcess(100, 1, 'anqicms', '/opt/a/anqicms', 100 * MIB)])
    facts = memory.gather(table, thresholds(), root('bare_no_psi'))
    assert facts['verdict'] == 'critical'
    assert facts['pressure'] is None and 'psi=1' in facts['pressure_note']
    assert facts['limit']['source'] == 'meminfo'
    assert any('the machine\'s RAM' in r for r in facts['reasons'])


def test_gather_swap_thresholds_use_the_cgroup_swap() -> None:
    table = SavedProcessTable([])
    facts = memory.gather(table, thresholds(swap_warning=20.0, swap_critical=30.0), root('v2_container'))
    assert facts['verdict'] == 'warning'
    assert any(r.startswith('Swap is 25.0 % used (64 MiB of 256 MiB)') for r in facts['reasons'])


def test_gather_with_sampling_uses_the_given_sleep() -> None:
    slept: list[float] = []
    facts = memory.gather(_v1_table(), thresholds(), root('v1_container'), sample_seconds=3, samples=4,
                          kernel_messages=False, sleep=slept.append)
    assert slept == [1.0, 1.0, 1.0]
    assert facts['trend']['samples'] == 4
    assert facts['trend']['leak_suspected'] is False  # the saved table does not change between samples


@pytest.mark.parametrize('over, message', [
    ({'available_critical': 30.0}, 'available_critical=30.0 must be below available_warning=25.0'),
    ({'service_limit_critical': 80.0}, 'service_limit_critical=80.0 must be above service_limit_warning=85.0'),
    ({'psi_warning': 50.0}, 'psi_critical=40.0 must be above psi_warning=50.0'),
    ({'swap_warning': 120.0, 'swap_critical': 130.0}, 'swap_warning=120.0 is not a percentage'),
    ({'leak_mib_per_minute': 0.0}, 'leak_mib_per_minute=0.0 must be above 0'),
])
def test_contradictory_thresholds_are_reported(over: dict[str, float], message: str) -> None:
    errors = memory.check_thresholds(thresholds(**over))
    assert any(message in e for e in errors), errors


def test_defaults_are_consistent() -> None:
    assert memory.check_thresholds(thresholds()) == []


def test_only_kills_of_this_scope_make_a_warning() -> None:
    memcg = {'victim': 'anqicms', 'pid': 1, 'time': 't', 'constraint': 'CONSTRAINT_MEMCG'}
    global_kill = {'victim': 'mariadbd', 'pid': 2, 'time': 't', 'constraint': 'CONSTRAINT_NONE'}
    machine = {'source': 'meminfo'}
    container = {'source': 'cgroup v1'}
    assert memory.relevant_kills({'recent': [memcg, global_kill]}, machine) == [global_kill]
    assert memory.relevant_kills({'recent': [memcg, global_kill], 'cgroup_oom_kills': 0}, container) == []
    assert memory.relevant_kills({'recent': [memcg, global_kill], 'cgroup_oom_kills': 2}, container) == [memcg]


def test_a_recent_oom_kill_on_the_machine_is_a_warning_with_the_victim() -> None:
    case = root('v1_container')
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(case, notes))
    limit = {'source': 'meminfo', 'bytes': system['total'], 'available_bytes': system['available'], 'available_percent': 93.2,
             'cgroup_path': None, 'events': None}
    oom = memory.oom_section(case, {'oom_kill': 3}, limit, notes, now=BTIME + 7200 + 60)
    level, reasons, _culprit = memory.verdict({'limit': limit, 'system': system, 'services': [], 'oom': oom}, thresholds())
    assert level == 'warning'
    assert reasons == ['The kernel OOM-killed 1 process(es) in the last 900 s: mariadbd (pid 777, %s).'
                       % time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(BTIME + 7200.0001))]


def test_an_explicit_cgroup_limits_the_processes_to_its_subtree() -> None:
    hierarchy = {'version': 2, 'mount': '/sys/fs/cgroup', 'mount_root': '/'}
    procs = [{'pid': 1, 'cgroups': {'unified': '/system.slice/app.service'}},
             {'pid': 2, 'cgroups': {'unified': '/system.slice/app.service/worker'}},
             {'pid': 3, 'cgroups': {'unified': '/system.slice/app.service2'}},
             {'pid': 4, 'cgroups': {}}]
    assert [p['pid'] for p in memory.in_cgroup(procs, hierarchy, '/system.slice/app.service')] == [1, 2]
    # a process whose cgroup is unknown cannot be shown to be charged to any cgroup, not even the root
    assert [p['pid'] for p in memory.in_cgroup(procs, hierarchy, '/')] == [1, 2, 3]


def test_unreadable_executables_are_a_note_with_the_fix() -> None:
    table = SavedProcessTable([SavedProcess(100, 1, 'anqicms', '', 100 * MIB), SavedProcess(101, 1, 'anqicms', '', 90 * MIB)])
    facts = memory.gather(table, thresholds(), root('v2_container'))
    assert [s['name'] for s in facts['services']] == ['anqicms']
    assert any('pids 100, 101' in n and 'become: true' in n for n in facts['notes'])


# ------------------------------------------------------------------ issue 11: only the limiting cgroup's subtree counts

def _sibling_table(site1_mib: float = 205) -> SavedProcessTable:
    """site1 inside the module's 256 MiB cgroup; bigger AnQiCMS instances outside it in every way a process can be."""
    return SavedProcessTable([
        SavedProcess(101, 1, 'anqicms', '/srv/site1/anqicms', int(site1_mib * MIB)),   # /site1.slice/...: inside
        SavedProcess(202, 1, 'anqicms', '/srv/site2/anqicms', 400 * MIB),              # /site2.slice: a sibling
        SavedProcess(303, 1, 'anqicms', '/srv/site3/anqicms', 600 * MIB),              # /../../other: above the namespace
        SavedProcess(404, 1, 'anqicms', '/srv/site4/anqicms', 700 * MIB),              # no /proc/404/cgroup: unknown
        SavedProcess(505, 1, 'anqicms', '/srv/site5/anqicms', 300 * MIB),              # /site1.slicex: a name prefix only
    ])


@pytest.mark.parametrize('case, source', [('v1_sibling_outside', 'cgroup v1'), ('v2_sibling_outside', 'cgroup v2')])
def test_the_culprit_is_never_outside_the_limiting_cgroup(case: str, source: str) -> None:
    facts = memory.gather(_sibling_table(), thresholds(), root(case), kernel_messages=False)
    assert facts['limit']['source'] == source
    assert facts['limit']['bytes'] == 256 * MIB and facts['limit']['cgroup_path'] == '/site1.slice'
    assert facts['counted_cgroup'] == '/site1.slice'
    assert facts['verdict'] == 'critical', facts['reasons']
    assert facts['culprit']['name'] == 'anqicms:/srv/site1'
    assert facts['culprit']['pids'] == [101]
    assert facts['culprit']['share_of_limit'] == pytest.approx(80.1, abs=0.05)
    assert [s['name'] for s in facts['services']] == ['anqicms:/srv/site1']
    assert [p['pid'] for p in facts['top']] == [101]
    assert facts['process_count'] == 1
    outside = {s['name']: s for s in facts['outside_limit']}
    assert set(outside) == {'anqicms:/srv/site%d' % n for n in (2, 3, 4, 5)}
    assert all(s['in_limit'] is False and s['share_of_limit'] is None and s['cgroup'] is None for s in outside.values())
    assert not any('site2' in r or 'site3' in r or 'site4' in r or 'site5' in r for r in facts['reasons'])
    assert any('Largest: anqicms:/srv/site1 with 205 MiB (80.1 %)' in r for r in facts['reasons'])
    assert any('outside cgroup /site1.slice' in n and 'never blamed' in n for n in facts['notes'])


@pytest.mark.parametrize('case', ['v1_sibling_outside', 'v2_sibling_outside'])
def test_a_share_of_the_limit_is_never_above_100_percent(case: str) -> None:
    # RSS counts shared pages once per process, so the RSS of a cgroup's processes can exceed its limit
    facts = memory.gather(_sibling_table(site1_mib=300), thresholds(), root(case), kernel_messages=False)
    assert facts['culprit']['name'] == 'anqicms:/srv/site1'
    assert facts['culprit']['share_of_limit'] == 100.0
    assert facts['services'][0]['share_of_limit'] == 100.0
    assert any('(100.0 %)' in r for r in facts['reasons'])


def test_with_a_machine_limit_every_process_counts() -> None:
    table = SavedProcessTable([SavedProcess(100, 1, 'anqicms', '/opt/a/anqicms', 100 * MIB),
                               SavedProcess(999, 1, 'anqicms', '/opt/z/anqicms', 50 * MIB)])  # no cgroup file
    facts = memory.gather(table, thresholds(), root('bare_no_psi'))
    assert facts['counted_cgroup'] is None and facts['outside_limit'] == []
    assert [s['name'] for s in facts['services']] == ['anqicms:/opt/a', 'anqicms:/opt/z']
    assert all(s['in_limit'] is True for s in facts['services'])


def test_the_verdict_never_blames_a_service_marked_outside_the_limit() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_sibling_outside'), notes))
    limit, _cgroup = memory.effective_limit(root('v1_sibling_outside'), system, notes)
    outsider = {'name': 'anqicms:/srv/site2', 'kind': 'anqicms', 'rss_bytes': 400 * MIB, 'share_of_limit': None,
                'cgroup': None, 'in_limit': False, 'pids': [202]}
    level, reasons, culprit = memory.verdict({'limit': limit, 'system': system, 'services': [outsider]}, thresholds())
    assert level == 'critical' and culprit is None
    assert not any('site2' in r for r in reasons)


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
    assert memory.cgroup_under_mount(hierarchy, path) == expected


def test_processes_outside_a_bind_mounted_subtree_or_above_the_namespace_are_outside() -> None:
    hierarchy = {'version': 1, 'mount': '/sys/fs/cgroup/memory', 'mount_root': '/docker/ct1'}
    procs = [{'pid': 1, 'cgroups': {'memory': '/docker/ct1/app'}},
             {'pid': 2, 'cgroups': {'memory': '/docker/ct10/app'}},
             {'pid': 3, 'cgroups': {'memory': '/../x'}},
             {'pid': 4, 'cgroups': {'memory': '/app'}}]  # as written outside the mount's root: a different cgroup
    inside, outside = memory.split_by_cgroup(procs, hierarchy, '/')
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
    error = memory.check_cgroup_option(value)
    assert error is not None and message in error
    system = memory.system_memory(memory.read_meminfo(root('v2_container'), []))
    with pytest.raises(ValueError, match=message.replace('"', '.').replace('(', '.')):
        memory.effective_limit(root('v2_container'), system, [], value)


def test_a_cgroup_that_resolves_outside_the_hierarchy_is_refused(tmp_path: t.Any) -> None:
    import shutil  # pylint: disable=import-outside-toplevel
    case = str(tmp_path / 'case')
    shutil.copytree(root('v2_container'), case, symlinks=True)
    os.symlink(os.path.join(case, 'proc'), os.path.join(case, 'sys/fs/cgroup/escape'))
    system = memory.system_memory(memory.read_meminfo(case, []))
    with pytest.raises(ValueError, match='outside the memory hierarchy'):
        memory.effective_limit(case, system, [], '/escape')
    limit, _cgroup = memory.effective_limit(case, system, [], 'system.slice//app.service/')
    assert limit['cgroup_path'] == '/system.slice/app.service'


# ------------------------------------------------------------------ issue 11: kernel files are untrusted input

@pytest.mark.parametrize('text', [
    'some avg10=1.2.3 avg60=0.00 avg300=0.00 total=1\nfull avg10=. avg60=0.00 avg300=0.00 total=1',
    'full avg10=999.00 avg60=0.00 avg300=0.00 total=1',
    'full avg10=nan avg60=inf avg300=-1 total=-5',
    'full avg10=1' + '0' * 400 + ' avg60=0 avg300=0 total=1',
])
def test_garbage_pressure_is_no_pressure(text: str) -> None:
    assert memory.parse_pressure(text) is None


@pytest.mark.parametrize('text', [
    '6,1,%d,-;Killed process 77 (x) total-vm:1kB, anon-rss:1kB' % (10 ** 30),
    '[%s.5] Killed process 77 (x)' % ('9' * 400),
    '6,1,5,-;Killed process %s (x)' % ('7' * 5000),
    '6,1,5,-;oom-kill:constraint=CONSTRAINT_MEMCG,pid=\u00b2\n6,1,6,-;Killed process 78 (y)',
    '\x00\xff;;;,,,;Killed process (x)',
])
def test_garbage_kernel_log_lines_do_not_crash(text: str) -> None:
    kills = memory.parse_kmsg(text, boot=float(2 ** 63))
    assert all(k['time'] is None or k['time'].endswith('Z') for k in kills)


def test_negative_and_absurd_numbers_in_kernel_files_are_ignored() -> None:
    parsed = memory.parse_keyed('MemTotal: -5 kB\nMemFree: %d kB\nBuffers: 7 kB\nCached: nan kB' % (2 ** 70), scale_kb=True)
    assert parsed == {'Buffers': 7 * KIB}
    assert memory._int_or_none('-1') is None  # pylint: disable=protected-access
    assert memory._int_or_none('NaN') is None  # pylint: disable=protected-access
    assert memory.mib(10 ** 400) == 'unknown'


@pytest.mark.parametrize('part, whole, expected', [
    (300, 256, 100.0), (-5, 256, 0.0), (128, 256, 50.0), (1, 0, None), (1, -1, None), (None, 5, None),
    (10 ** 400, 1, 100.0), (float('nan'), 1, None), (float('inf'), 1, 100.0), (1, float('nan'), None),
    (10 ** 400, 10 ** 401, 10.0), (1, 3, 33.3), (2, 3, 66.7),
])
def test_percent_of_is_within_0_and_100(part: t.Any, whole: t.Any, expected: float | None) -> None:
    assert memory.percent_of(part, whole) == expected


def test_garbage_cgroup_files_give_no_share_above_100(tmp_path: t.Any) -> None:
    import shutil  # pylint: disable=import-outside-toplevel
    case = str(tmp_path / 'case')
    shutil.copytree(root('v1_sibling_outside'), case)
    slice_dir = os.path.join(case, 'sys/fs/cgroup/memory/site1.slice')
    for name, text in (('memory.usage_in_bytes', '999999999999'), ('memory.stat', 'total_inactive_file -77\n'),
                       ('memory.memsw.limit_in_bytes', '1'), ('memory.memsw.usage_in_bytes', '5')):
        with open(os.path.join(slice_dir, name), 'w', encoding='ascii') as handle:
            handle.write(text)
    facts = memory.gather(_sibling_table(), thresholds(), case, kernel_messages=False)
    assert facts['limit']['available_bytes'] == 0 and facts['limit']['available_percent'] == 0.0
    assert facts['limit']['swap_max_bytes'] == 0 and facts['limit']['swap_bytes'] == 0
    assert facts['culprit']['name'] == 'anqicms:/srv/site1'
    assert all(0 <= s['share_of_limit'] <= 100 for s in facts['services'])


@pytest.mark.parametrize('over, message', [
    ({'available_warning': float('nan')}, 'available_warning=nan is not a percentage'),
    ({'psi_critical': float('inf')}, 'psi_critical=inf is not a percentage'),
    ({'leak_mib_per_minute': float('nan')}, 'leak_mib_per_minute=nan must be above 0 and at most'),
    ({'leak_mib_per_minute': 1e308}, 'leak_mib_per_minute=1e+308 must be above 0 and at most'),
    ({'oom_window': float(2 ** 64)}, 'oom_window=1.8446744073709552e+19 must be between 0 and'),
    ({'oom_window': -1.0}, 'oom_window=-1.0 must be between 0 and'),
])
def test_non_finite_and_huge_thresholds_are_refused(over: dict[str, float], message: str) -> None:
    errors = memory.check_thresholds(thresholds(**over))
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize('args, message', [
    ((float('nan'), 4, 10), 'sample_seconds=nan must be between 0 and 3600'),
    ((float('inf'), 4, 10), 'sample_seconds=inf must be between 0 and 3600'),
    ((-0.5, 4, 10), 'sample_seconds=-0.5'),
    ((0.0, 2 ** 64, 10), 'samples=18446744073709551616: use between 3'),
    ((0.0, -1, 10), 'samples=-1: use between 3'),
    ((0.0, 4, 2 ** 64), 'top=18446744073709551616 must be between 0 and 10000'),
    ((0.0, 4, -1), 'top=-1 must be between 0 and 10000'),
])
def test_sampling_and_listing_options_are_bounded(args: tuple[float, int, int], message: str) -> None:
    assert any(message in e for e in memory.check_options(*args))
    assert memory.check_options(0.0, 4, 10) == [] and memory.check_options(3600.0, 60, 10000) == []


@pytest.mark.parametrize('matchers, message', [
    ([{'name': 'x', 'cmdline': 'a{4294967296}'}], 'not a valid regular expression'),
    ([{'name': 'x', 'cmdline': '(' * 2000 + ')' * 2000}], 'cmdline must be a regular expression of at most 1024'),
    ([{'name': 'x', 'cmdline': '(' * 500 + ')' * 500}], 'not a valid regular expression'),
    ([{'name': 'x', 'exe': ['/a\0b']}], 'without NUL bytes'),
    ([{'name': 'x', 'exe': ['*'] * 65}], 'at most 64 patterns'),
    ([{'name': 'x', 'exe': '/srv/x'}], 'must be a list'),
    ([{'name': 'a\0b', 'exe': ['/x']}], 'printable characters'),
    ([{'name': 'n' * 129, 'exe': ['/x']}], 'at most 128 printable characters'),
    ([{'name': 'x', 'exe': ['/x']}] * 101, 'at most 100 are allowed'),
    (['x'], 'not a dictionary'),
])
def test_hostile_matchers_are_refused_with_the_fix(matchers: list[t.Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace('(', '.')):
        memory.compile_matchers(matchers)


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
    hierarchy = memory.locate_hierarchy(str(tmp_path), [])
    assert hierarchy['version'] == 1 and hierarchy['mount_root'] == '/'
    assert memory.cgroup_under_mount(hierarchy, '/system.slice/mariadb.service') == '/system.slice/mariadb.service'
    # Only the inherited mount (what the code saw before): every process would be outside it.
    only_inherited = {'version': 1, 'mount': '/x', 'mount_root': '/../../../..'}
    assert memory.cgroup_under_mount(only_inherited, '/system.slice/mariadb.service') is None
