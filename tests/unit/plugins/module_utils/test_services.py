# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processes grouped into services, their own limits and growth (plugins/module_utils/services.py)."""

from __future__ import annotations

import fnmatch
import typing as t

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils import cgroups, memory
from ansible_collections.opsguard.anqicms.plugins.module_utils import services as svc
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.memory_helpers import (
    KIB,
    MIB,
    record,
    root,
)


def test_matcher_errors_name_the_matcher_and_the_fix() -> None:
    with pytest.raises(ValueError, match='matcher shop matches nothing: give at least one of exe'):
        svc.compile_matchers([{'name': 'shop', 'kind': 'anqicms'}])
    with pytest.raises(ValueError, match='not a valid regular expression'):
        svc.compile_matchers([{'name': 'shop', 'cmdline': '('}])
    with pytest.raises(ValueError, match="kind 'java'"):
        svc.compile_matchers([{'name': 'shop', 'kind': 'java', 'exe': ['/x']}])
    with pytest.raises(ValueError, match=r'matchers\[0\] has no name'):
        svc.compile_matchers([{'exe': ['/x']}])


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
    matchers = svc.compile_matchers([{'name': 'search', 'kind': 'other', 'cmdline': r'-jar \S*es\.jar'}])
    services = svc.group_services(procs, matchers, 512 * MIB)
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
    top = svc.top_processes(procs, services, 3)
    assert [(p['pid'], p['service']) for p in top] == [(10, 'anqicms:/opt/a'), (30, 'mariadb'), (90, 'search')]


def test_a_service_with_its_own_v1_limit_gets_it_and_its_share() -> None:
    notes: list[str] = []
    case = root('v1_container')
    system = memory.system_memory(memory.read_meminfo(case, notes))
    hierarchy = cgroups.locate_hierarchy(case, notes)
    limit, cgroup = cgroups.effective_limit(case, system, notes, hierarchy=hierarchy)
    procs = [record(4242, 'anqicms', '/opt/a/anqicms', 245, memory_path='/system.slice/anqicms-a.service'),
             record(777, 'mariadbd', '/usr/sbin/mariadbd', 80, memory_path='/system.slice/mariadb.service')]
    services = svc.group_services(procs, svc.compile_matchers(None), limit['bytes'], hierarchy, cgroup)
    by_name = {s['name']: s for s in services}
    own = by_name['anqicms:/opt/a']['cgroup']
    assert own['path'] == '/system.slice/anqicms-a.service'
    assert own['limit_bytes'] == 256 * MIB
    assert own['working_set_bytes'] == 250 * MIB
    assert own['share'] == pytest.approx(97.7, abs=0.05)
    assert own['oom_kills'] == 1
    assert by_name['mariadb']['cgroup'] is None  # only the host's limit applies to it


def _samples(series: dict[str, list[int]], step: float = 10.0) -> list[tuple[float, dict[str, int]]]:
    count = len(next(iter(series.values())))
    return [(i * step, {name: values[i] for name, values in series.items()}) for i in range(count)]


def test_trend_flags_sustained_growth_only() -> None:
    samples = _samples({
        'anqicms:/opt/a': [100 * MIB, 140 * MIB, 181 * MIB, 220 * MIB, 262 * MIB],  # ~240 MiB/min, every step up
        'mariadb': [90 * MIB, 90 * MIB, 90 * MIB, 90 * MIB, 90 * MIB],
        'gc-sawtooth': [100 * MIB, 150 * MIB, 60 * MIB, 120 * MIB, 170 * MIB],      # grows overall, but shrinks
    })
    trend = svc.compute_trend(samples, {'anqicms:/opt/a': 'anqicms'}, 4.0, limit_bytes=512 * MIB)
    by_name = {e['name']: e for e in trend['services']}
    assert trend['leak_suspected'] is True and trend['suspects'] == ['anqicms:/opt/a']
    assert by_name['anqicms:/opt/a']['growth_bytes_per_minute'] == pytest.approx(242.4 * MIB, rel=0.01)
    assert by_name['anqicms:/opt/a']['minutes_to_limit'] == pytest.approx((512 - 262) / 242.4, abs=0.1)
    assert by_name['mariadb']['growth_bytes_per_minute'] == 0 and not by_name['mariadb']['leak_suspected']
    assert not by_name['gc-sawtooth']['leak_suspected']
    assert trend['samples'] == 5 and trend['seconds'] == 40.0


def test_a_fast_rate_from_a_tiny_growth_is_not_a_leak() -> None:
    samples = _samples({'x': [100 * MIB, 100 * MIB + 300 * KIB, 100 * MIB + 600 * KIB, 100 * MIB + 900 * KIB]}, step=1.0)
    trend = svc.compute_trend(samples, {}, 4.0)
    assert trend['services'][0]['growth_bytes_per_minute'] > 4 * MIB
    assert trend['leak_suspected'] is False


def test_slow_growth_under_the_threshold_is_not_a_leak() -> None:
    samples = _samples({'x': [100 * MIB, 100 * MIB + 100 * KIB, 100 * MIB + 200 * KIB, 100 * MIB + 300 * KIB]})
    trend = svc.compute_trend(samples, {}, 4.0)
    assert trend['services'][0]['growth_bytes_per_minute'] > 0
    assert trend['leak_suspected'] is False


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
        svc.compile_matchers(matchers)


@settings(max_examples=300, deadline=None)
@given(patterns=st.lists(st.one_of(st.text(alphabet='ab*?[]!-/.', max_size=6), st.sampled_from(['*/anqicms', 'php*-fpm.service', 'nginx'])),
                         min_size=1, max_size=4),
       value=st.one_of(st.text(alphabet='ab*?[]!-/.', max_size=6), st.sampled_from(['/opt/a/anqicms', 'php8.2-fpm.service', 'nginx'])))
def test_glob_sets_match_exactly_like_fnmatchcase(patterns: list[str], value: str) -> None:
    assert svc.GlobSet(patterns).match(value) == any(fnmatch.fnmatchcase(value, p) for p in patterns)
